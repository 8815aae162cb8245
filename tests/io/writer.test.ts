import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError, UsageError } from "../../src/errors.ts";
import { DurableWriter, type PositionalWrite, removeLiveTempFiles } from "../../src/io/writer.ts";
import { directBufferBytes, writebackBytes, writeChunkBytes } from "../../src/limits.ts";
import { prng } from "../helpers.ts";

let root: string;
let dirCount = 0;
const MiB = 1024 * 1024;

/** Why files in `dir` cannot be opened with O_DIRECT (probed by opening one), or null when they can. */
function directProblem(dir: string): string | null {
  const flag = fs.constants.O_DIRECT;
  if (flag === undefined) return "no O_DIRECT on this platform";
  const probe = path.join(dir, `.direct-probe-${process.pid}`);
  try {
    fs.closeSync(fs.openSync(probe, fs.constants.O_WRONLY | fs.constants.O_CREAT | flag, 0o644));
    return null;
  } catch (error) {
    return `${dir} refuses O_DIRECT (${(error as NodeJS.ErrnoException).code})`;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** Probed once: where the temp dir refuses O_DIRECT, the writer falls back and the tests that need direct mode are skipped. */
const noDirect = directProblem(os.tmpdir());
if (noDirect !== null) console.warn(`[skipped] direct-mode tests: ${noDirect}`);

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-writer-test-"));
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fresh empty directory per test, so "no other file left behind" is easy to check. */
function freshDir(): string {
  dirCount++;
  const dir = path.join(root, `d${dirCount}`);
  fs.mkdirSync(dir);
  return dir;
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

/**
 * Unnamed (O_TMPFILE) where this system has it, and the named fallback, forced;
 * each with O_DIRECT where the file system takes it, and the page cache, forced.
 */
const modes = [
  { name: "unnamed, direct", unnamed: true, direct: true },
  { name: "unnamed, page cache", unnamed: true, direct: false },
  { name: "named fallback, direct", unnamed: false, direct: true },
  { name: "named fallback, page cache", unnamed: false, direct: false },
] as const;

describe.each(modes)("DurableWriter ($name)", ({ unnamed, direct }) => {
  const open = (out: string) => new DurableWriter(out, { unnamed, direct });

  test("write + prepare + commit gives exactly the bytes written and leaves no temp file", async () => {
    const dir = freshDir();
    const out = path.join(dir, "sorted.bin");
    // Pieces around writeChunkBytes, so the two staging pieces both fill and wrap.
    const parts = [
      bytes(100, 1),
      new Uint8Array(0),
      bytes(250_000, 2),
      bytes(1, 3),
      bytes(writeChunkBytes + 77, 4),
      bytes(writeChunkBytes, 5),
    ];
    const total = parts.reduce((n, p) => n + p.length, 0);
    const w = open(out);
    expect(w.unnamed).toBe(unnamed && process.platform === "linux");
    expect(w.direct).toBe(direct && noDirect === null);
    expect(path.dirname(w.tempPath)).toBe(dir);
    expect(w.tempPath).not.toBe(out);
    for (const p of parts) await w.write(p);
    expect(w.bytes).toBe(total);
    // The output path never holds a partial file.
    expect(fs.existsSync(out)).toBe(false);
    await w.prepare();
    expect(fs.existsSync(out)).toBe(false);
    if (w.unnamed)
      expect(fs.readdirSync(dir)).toEqual([]); // no name at all until commit
    else expect(fs.statSync(w.tempPath).size).toBe(total);
    await w.commit();
    expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["sorted.bin"]);
    // discard after commit keeps the output.
    w.discard();
    expect(fs.existsSync(out)).toBe(true);
  });

  test("long outputs keep every byte; through the page cache they start writeback as they go", async () => {
    const dir = freshDir();
    const out = path.join(dir, "long.bin");
    const piece = bytes(3 * 1024 * 1024 + 7, 5);
    const w = open(out);
    for (let i = 0; i < 7; i++) await w.write(piece);
    const total = 7 * piece.length;
    await w.prepare();
    if (w.direct) {
      expect(w.writebackBytes).toBe(0); // a direct write is on the device when it returns
    } else {
      // Early writeback covered part of the file (one at a time, so not all of it), never more than was written.
      expect(w.writebackBytes).toBeGreaterThanOrEqual(writebackBytes);
      expect(w.writebackBytes).toBeLessThanOrEqual(total);
    }
    await w.commit();
    const back = fs.readFileSync(out);
    expect(back.length).toBe(total);
    for (let i = 0; i < 7; i++) {
      expect(back.subarray(i * piece.length, (i + 1) * piece.length).equals(piece)).toBe(true);
    }
  });

  test("an empty output is a real, empty file", async () => {
    const dir = freshDir();
    const out = path.join(dir, "empty.bin");
    const w = open(out);
    await w.prepare();
    await w.commit();
    expect(fs.statSync(out).size).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(["empty.bin"]);
  });

  test("commit replaces an existing output file whole", async () => {
    const dir = freshDir();
    const out = path.join(dir, "out.bin");
    fs.writeFileSync(out, Buffer.alloc(5000, 0xee));
    const w = open(out);
    await w.write(bytes(300, 9));
    // Until commit, the old file is untouched.
    expect(fs.statSync(out).size).toBe(5000);
    await w.prepare();
    expect(fs.statSync(out).size).toBe(5000);
    await w.commit();
    expect(fs.readFileSync(out).equals(Buffer.from(bytes(300, 9)))).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["out.bin"]);
  });

  test("discard, when open or when prepared, leaves no file at all; twice is fine", async () => {
    for (const prepared of [false, true]) {
      const dir = freshDir();
      const w = open(path.join(dir, "out.bin"));
      await w.write(bytes(writeChunkBytes + 1000, 4)); // more than one piece
      if (prepared) await w.prepare();
      w.discard();
      w.discard();
      expect(fs.readdirSync(dir)).toEqual([]);
    }
  });

  test("discard while a write runs on the thread pool: the write stops, nothing is left", async () => {
    const dir = freshDir();
    const w = open(path.join(dir, "out.bin"));
    const writing = w.write(bytes(4 * writeChunkBytes, 6));
    w.discard(); // the failure path: the mesh failed while the sort was writing
    await expect(writing).rejects.toThrow(`output ${path.join(dir, "out.bin")}: discarded`);
    await Bun.sleep(50); // the descriptor is closed once the write has ended
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("discard does not remove an existing output it never replaced", async () => {
    const dir = freshDir();
    const out = path.join(dir, "keep.bin");
    fs.writeFileSync(out, "previous run");
    const w = open(out);
    await w.write(bytes(100, 5));
    w.discard();
    expect(fs.readFileSync(out, "utf8")).toBe("previous run");
    expect(fs.readdirSync(dir)).toEqual(["keep.bin"]);
  });

  test("removeLiveTempFiles removes temp files of unfinished writers, not committed outputs", async () => {
    const dir = freshDir();
    const done = open(path.join(dir, "done.bin"));
    await done.write(bytes(100, 6));
    await done.prepare();
    await done.commit();
    const live = open(path.join(dir, "live.bin"));
    await live.write(bytes(100, 7));
    expect(fs.existsSync(live.tempPath)).toBe(!live.unnamed);
    removeLiveTempFiles();
    expect(fs.readdirSync(dir)).toEqual(["done.bin"]);
    live.discard();
    expect(fs.readdirSync(dir)).toEqual(["done.bin"]);
  });

  test("calls out of order are bugs (assertions)", async () => {
    const w = open(path.join(freshDir(), "o.bin"));
    await expect(w.commit()).rejects.toThrow("assertion failed");
    await w.prepare();
    await expect(w.write(bytes(1, 0))).rejects.toThrow("assertion failed");
    await expect(w.prepare()).rejects.toThrow("assertion failed");
    w.discard();
  });

  test("identity, isInPlace and removeCommitted: only our own file at the output path", async () => {
    const dir = freshDir();
    const out = path.join(dir, "mine.bin");
    const w = open(out);
    await w.write(bytes(1000, 8));
    await w.prepare();
    expect(w.isInPlace()).toBe(false);
    w.removeCommitted(); // not committed: nothing to remove
    await w.commit();
    const st = fs.statSync(out, { bigint: true });
    expect({ dev: st.dev, ino: st.ino }).toEqual(w.identity);
    expect(w.isInPlace()).toBe(true);
    // Another file took the path (another run, another peer): ours is not there, keep theirs.
    fs.writeFileSync(`${out}.other`, "theirs");
    fs.renameSync(`${out}.other`, out);
    expect(w.isInPlace()).toBe(false);
    w.removeCommitted();
    expect(fs.readFileSync(out, "utf8")).toBe("theirs");
    // Our file back in place: removed.
    const w2 = open(out);
    await w2.write(bytes(10, 9));
    await w2.prepare();
    await w2.commit();
    expect(w2.isInPlace()).toBe(true);
    w2.removeCommitted();
    expect(fs.existsSync(out)).toBe(false);
    expect(w2.isInPlace()).toBe(false);
  });

  test("output in a missing directory: UsageError (exit 2) before any data", () => {
    const missingDir = path.join(root, "no-such-dir");
    const out = path.join(missingDir, "out.bin");
    const error = thrown(() => open(out)) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT_USAGE);
    expect(error.message).toBe(`output ${out}: cannot write in ${missingDir} (directory does not exist)`);
    expect(fs.existsSync(missingDir)).toBe(false);
  });

  test("output path that is a directory: UsageError (exit 2), nothing created", () => {
    const dir = freshDir();
    const target = path.join(dir, "sub");
    fs.mkdirSync(target);
    const error = thrown(() => open(target)) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT_USAGE);
    expect(error.message).toBe(`output ${target}: is a directory`);
    expect(fs.readdirSync(dir)).toEqual(["sub"]);
  });

  /**
   * A child that writes 64 KiB to `out` under `ulimit -f <fileKiB>` and prints
   * what was thrown. Bun ignores SIGXFSZ, so past the limit the write fails with
   * EFBIG, which takes the same path as ENOSPC. Cheap, and needs no special filesystem.
   */
  function writeUnderFileLimit(
    out: string,
    fileKiB: number,
  ): { name: string; exitCode: number; message: string } {
    const script = path.join(root, `child-${++dirCount}.ts`);
    const writerModule = path.resolve(import.meta.dir, "../../src/io/writer.ts");
    fs.writeFileSync(
      script,
      `import { DurableWriter } from ${JSON.stringify(writerModule)};
const w = new DurableWriter(${JSON.stringify(out)}, { unnamed: ${unnamed}, direct: ${direct} });
try {
  await w.write(new Uint8Array(64 * 1024));
  await w.prepare();
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  w.discard();
  console.log(JSON.stringify({ name: e.name, exitCode: e.exitCode, message: e.message }));
}
`,
    );
    const child = Bun.spawnSync({
      cmd: ["bash", "-c", `ulimit -f ${fileKiB} && exec "${process.execPath}" "${script}"`],
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000,
    });
    expect(child.stderr.toString()).toBe("");
    return JSON.parse(child.stdout.toString());
  }

  test("a failing write (file size limit, like a full disk) is NetsortError exit 1 naming the output", () => {
    // 8 KiB: a whole number of direct blocks, so a direct write stops short there
    // and the next one reports why; 1 KiB through the page cache.
    const fileKiB = direct ? 8 : 1;
    const dir = freshDir();
    const out = path.join(dir, "big.bin");
    const result = writeUnderFileLimit(out, fileKiB);
    // The name tells the class apart: a write error is a NetsortError, not a UsageError.
    expect(result.name).toBe(new NetsortError("x").name);
    expect(result.exitCode).toBe(EXIT_RUNTIME);
    expect(result.message).toBe(`output ${out}: write failed after ${fileKiB * 1024} bytes (file too large)`);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.skipIf(!direct || noDirect !== null)(
    "direct: a write the kernel cuts short off a 4096-byte boundary is a NetsortError saying so",
    () => {
      // 1 KiB: the kernel takes 1024 of the 64 KiB direct write; O_DIRECT cannot go on from there.
      const dir = freshDir();
      const out = path.join(dir, "big.bin");
      const result = writeUnderFileLimit(out, 1);
      expect(result.name).toBe(new NetsortError("x").name);
      expect(result.exitCode).toBe(EXIT_RUNTIME);
      expect(result.message).toBe(
        `output ${out}: write failed after 1024 bytes (short direct write: the kernel took 1024 of 65536 bytes at offset 0)`,
      );
      expect(fs.readdirSync(dir)).toEqual([]);
    },
  );

  test("random sizes, many odd-length writes: the file is exactly their concatenation", async () => {
    const rand = prng(direct ? 11 : 12);
    const cases: number[][] = [
      [], // nothing at all
      [100], // one record
      [4095],
      [4097, 1],
      [directBufferBytes], // exactly one staging buffer
      [directBufferBytes - 1, 2, directBufferBytes + 1],
      // several MiB in odd lengths, from 1 byte to more than a staging buffer
      Array.from({ length: 40 }, () => 1 + Math.floor(rand() ** 3 * 1.5 * directBufferBytes)),
    ];
    for (const [c, lengths] of cases.entries()) {
      const dir = freshDir();
      const out = path.join(dir, "r.bin");
      const parts = lengths.map((n, i) => bytes(n, c * 100 + i));
      const total = parts.reduce((n, p) => n + p.length, 0);
      const w = open(out);
      for (const p of parts) await w.write(p);
      expect(w.bytes).toBe(total);
      await w.prepare();
      await w.commit();
      expect(fs.statSync(out).size).toBe(total);
      expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
      expect(fs.readdirSync(dir)).toEqual(["r.bin"]);
    }
  }, 30_000);
});

/** Open flags of descriptor `fd` of this process (from /proc/self/fdinfo; octal there). */
function openFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
  return Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(info)?.[1] ?? "x", 8);
}

/** The real write (fs.write on the thread pool), as the writer makes it. */
const realWrite: PositionalWrite = (fd, buf, offset, length, position) =>
  new Promise((resolve, reject) =>
    fs.write(fd, buf, offset, length, position, (error, n) => (error ? reject(error) : resolve(n))),
  );

/**
 * A pwrite for the writer that holds every write until the test releases it
 * (then does it for real), so "has a device write ended?" is the test's decision,
 * not a matter of timing.
 */
function heldWrites() {
  const calls: {
    fd: number;
    length: number;
    position: number | null;
    release: () => void;
    result: Promise<number>;
  }[] = [];
  let releaseAll = false;
  const pwrite: PositionalWrite = (fd, buf, offset, length, position) => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const result = gate.then(() => realWrite(fd, buf, offset, length, position));
    calls.push({ fd, length, position, release, result });
    if (releaseAll) release();
    return result;
  };
  return {
    calls,
    pwrite,
    /** Let every held write and every later one go. */
    releaseAll() {
      releaseAll = true;
      for (const c of calls) c.release();
    },
  };
}

/** True when `p` settles within `ms` (a write that waits for a held device write never does). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const timeout = Bun.sleep(ms).then(() => "timeout" as const);
  return (await Promise.race([p.then(() => "settled" as const), timeout])) === "settled";
}

/** Run a command; throws with its output when it fails. */
function run(cmd: string[]): void {
  const r = Bun.spawnSync({ cmd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString()}`);
}

/**
 * Why a file system of `type` cannot be mounted here (not root, a locked-down
 * container), or, with `direct`, why it refuses O_DIRECT: decided before the
 * tests run, so those tests are skipped with the reason.
 */
function mountProblem(type: string, direct: boolean): string | null {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-mount-probe-"));
  try {
    try {
      run(["mount", "-t", type, "-o", "size=64k", type, probe]);
    } catch (error) {
      return `mount -t ${type} fails here: ${(error as Error).message.trim()}`;
    }
    try {
      return direct ? directProblem(probe) : null;
    } finally {
      run(["umount", probe]);
    }
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

/** Unmount `dir`, retrying a moment: a descriptor closed a little late (discard waits for running writes) keeps it busy. */
async function unmount(dir: string): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      run(["umount", dir]);
      return;
    } catch (error) {
      if (tries >= 50) throw error;
      await Bun.sleep(20);
    }
  }
}

/** A fresh directory with a file system of `type` mounted on it, for `body`; unmounted after, whatever happens. */
async function withMount(type: string, options: string, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = freshDir();
  run(["mount", "-t", type, "-o", options, type, dir]);
  try {
    await body(dir);
  } finally {
    await unmount(dir);
  }
}

const noTmpfsDirect = mountProblem("tmpfs", true);
const noRamfs = mountProblem("ramfs", false);
for (const [what, why] of [
  ["full file system in direct mode", noTmpfsDirect],
  ["file system without O_DIRECT", noRamfs],
] as const) {
  if (why !== null) console.warn(`[skipped] ${what}: ${why}`);
}

describe("direct mode", () => {
  test.skipIf(noDirect !== null)(
    `is used where the file system takes it: the descriptor has O_DIRECT${noDirect === null ? "" : ` (skipped: ${noDirect})`}`,
    async () => {
      const held = heldWrites();
      held.releaseAll();
      for (const unnamed of [true, false]) {
        const w = new DurableWriter(path.join(freshDir(), "d.bin"), { unnamed, pwrite: held.pwrite });
        expect(w.direct).toBe(true);
        await w.write(bytes(5000, 1));
        await w.prepare();
        const fd = held.calls.at(-1)?.fd ?? -1;
        expect(openFlags(fd) & (fs.constants.O_DIRECT ?? 0)).not.toBe(0);
        // The padded last block (8192 bytes written) is cut to the bytes handed over.
        expect(held.calls.at(-1)?.length).toBe(8192);
        expect(fs.fstatSync(fd).size).toBe(5000);
        w.discard();
      }
      // Forced off: the page cache, no O_DIRECT on the descriptor.
      const w = new DurableWriter(path.join(freshDir(), "b.bin"), { direct: false, pwrite: held.pwrite });
      expect(w.direct).toBe(false);
      await w.write(bytes(5000, 1));
      expect(openFlags(held.calls.at(-1)?.fd ?? -1) & (fs.constants.O_DIRECT ?? 0)).toBe(0);
      w.discard();
    },
  );

  test.skipIf(noDirect !== null)(
    "write() resolves once its bytes are copied: the device write runs behind it, and it waits only when both buffers are busy",
    async () => {
      const dir = freshDir();
      const out = path.join(dir, "o.bin");
      const held = heldWrites();
      const w = new DurableWriter(out, { pwrite: held.pwrite });
      expect(w.direct).toBe(true);
      const parts = [
        bytes(100, 1),
        bytes(directBufferBytes - 100 + 5, 2),
        bytes(directBufferBytes, 3),
        bytes(7, 4),
      ];
      // Less than a staging buffer: no device write even starts.
      expect(await settlesWithin(w.write(parts[0]), 5_000)).toBe(true);
      expect(held.calls.length).toBe(0);
      // The first buffer fills: its write starts, and is held, but write() resolves (the other buffer is free).
      expect(await settlesWithin(w.write(parts[1]), 5_000)).toBe(true);
      expect(held.calls.map((c) => [c.length, c.position])).toEqual([[directBufferBytes, 0]]);
      // The second buffer fills and its last 5 bytes need the first, whose write is held: write() waits.
      const third = w.write(parts[2]);
      expect(await settlesWithin(third, 200)).toBe(false);
      // ...with one device write in flight: the second buffer's write queues behind the first.
      expect(held.calls.length).toBe(1);
      held.calls[0].release();
      expect(await settlesWithin(third, 5_000)).toBe(true);
      expect(held.calls.map((c) => [c.length, c.position])).toEqual([
        [directBufferBytes, 0],
        [directBufferBytes, directBufferBytes],
      ]);
      expect(await settlesWithin(w.write(parts[3]), 5_000)).toBe(true);
      held.releaseAll();
      await w.prepare();
      await w.commit();
      expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
    },
  );

  test.skipIf(noDirect !== null)(
    "discard while a direct write runs: the descriptor is closed only after it ends (no EBADF, no reuse)",
    async () => {
      const dir = freshDir();
      const out = path.join(dir, "o.bin");
      const held = heldWrites();
      const w = new DurableWriter(out, { pwrite: held.pwrite });
      await w.write(bytes(directBufferBytes, 5)); // one full buffer: its write starts and is held
      expect(held.calls.length).toBe(1);
      const { fd } = held.calls[0];
      w.discard();
      const ours = () => {
        try {
          const st = fs.fstatSync(fd, { bigint: true });
          return st.dev === w.identity.dev && st.ino === w.identity.ino;
        } catch {
          return false;
        }
      };
      // Still open, so the number cannot be handed to another open meanwhile.
      expect(ours()).toBe(true);
      const other = fs.openSync(path.join(root, `other-${dirCount}.bin`), "w");
      expect(other).not.toBe(fd);
      fs.closeSync(other);
      held.calls[0].release();
      expect(await held.calls[0].result).toBe(directBufferBytes); // the write found its descriptor open
      for (let i = 0; i < 100 && ours(); i++) await Bun.sleep(10);
      expect(ours()).toBe(false); // ...and it is closed once the write has ended
      expect(held.calls.length).toBe(1); // nothing more was written after discard
      expect(fs.readdirSync(dir)).toEqual([]);
    },
  );

  test.skipIf(noDirect !== null)(
    "a short direct write goes on from a 4096-byte boundary; off one it is a NetsortError naming the output",
    async () => {
      // The kernel takes 4096 bytes of the first write: the writer goes on from there.
      let first = true;
      const shortOnce: PositionalWrite = (fd, buf, offset, length, position) => {
        const cut = first && length > 4096 ? 4096 : length;
        first = false;
        return realWrite(fd, buf, offset, cut, position);
      };
      const out = path.join(freshDir(), "s.bin");
      const parts = [bytes(directBufferBytes + 3, 6), bytes(10_000, 7)];
      const w = new DurableWriter(out, { pwrite: shortOnce });
      for (const p of parts) await w.write(p);
      await w.prepare();
      await w.commit();
      expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);

      // The kernel "takes" 1000 bytes (pretended): O_DIRECT cannot go on from there.
      const out2 = path.join(freshDir(), "t.bin");
      const w2 = new DurableWriter(out2, { pwrite: async () => 1000 });
      await w2.write(bytes(5000, 8));
      const error = await w2.prepare().then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(NetsortError);
      expect((error as NetsortError).message).toBe(
        `output ${out2}: write failed after 1000 bytes (short direct write: the kernel took 1000 of 8192 bytes at offset 0)`,
      );
      w2.discard();
      expect(fs.readdirSync(path.dirname(out2))).toEqual([]);
    },
  );

  test.skipIf(noDirect !== null)(
    "a file system that takes O_DIRECT at open but refuses the writes (EINVAL): the same file again, through the page cache",
    async () => {
      let refused = 0;
      const fds: number[] = [];
      const refuseDirect: PositionalWrite = (fd, buf, offset, length, position) => {
        fds.push(fd);
        if (openFlags(fd) & (fs.constants.O_DIRECT ?? 0)) {
          refused++;
          return Promise.reject(Object.assign(new Error("EINVAL"), { code: "EINVAL" }));
        }
        return realWrite(fd, buf, offset, length, position);
      };
      for (const unnamed of [true, false]) {
        const dir = freshDir();
        const out = path.join(dir, "e.bin");
        const parts = [bytes(directBufferBytes + 4097, 9), bytes(123, 10)];
        const w = new DurableWriter(out, { unnamed, pwrite: refuseDirect });
        expect(w.direct).toBe(true);
        for (const p of parts) await w.write(p);
        await w.prepare();
        expect(w.direct).toBe(false);
        await w.commit();
        expect(fs.statSync(out).size).toBe(directBufferBytes + 4097 + 123);
        expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
        expect(fs.readdirSync(dir)).toEqual(["e.bin"]);
        expect(new Set(fds).size).toBe(2); // the O_DIRECT descriptor, then the other one
        fds.length = 0;
      }
      expect(refused).toBe(2); // once per writer
    },
  );

  test.skipIf(noTmpfsDirect !== null)(
    `a full file system in direct mode is NetsortError exit 1 naming the output${noTmpfsDirect === null ? "" : ` (skipped: ${noTmpfsDirect})`}`,
    async () => {
      await withMount("tmpfs", "size=1m", async (dir) => {
        const out = path.join(dir, "full.bin");
        const w = new DurableWriter(out);
        expect(w.direct).toBe(true);
        let error: unknown = null;
        try {
          for (let i = 0; i < 3; i++) await w.write(bytes(MiB, 11 + i));
          await w.prepare();
        } catch (e) {
          error = e;
        }
        w.discard();
        expect(error).toBeInstanceOf(NetsortError);
        expect((error as NetsortError).exitCode).toBe(EXIT_RUNTIME);
        const match = /^output (.+): write failed after (\d+) bytes \(no space left on device\)$/.exec(
          (error as Error).message,
        );
        expect(match?.[1]).toBe(out);
        expect(Number(match?.[2])).toBeLessThanOrEqual(MiB);
        expect(fs.readdirSync(dir)).toEqual([]);
      });
    },
  );

  test.skipIf(noRamfs !== null)(
    `a file system without O_DIRECT (ramfs): the page cache, silently${noRamfs === null ? "" : ` (skipped: ${noRamfs})`}`,
    async () => {
      await withMount("ramfs", "mode=755", async (dir) => {
        for (const unnamed of [true, false]) {
          const out = path.join(dir, `r-${unnamed}.bin`);
          const parts = [bytes(directBufferBytes + 1, 12), bytes(99, 13)];
          const w = new DurableWriter(out, { unnamed });
          expect(w.direct).toBe(false);
          expect(w.unnamed).toBe(unnamed);
          for (const p of parts) await w.write(p);
          await w.prepare();
          await w.commit();
          expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
          fs.rmSync(out);
        }
        expect(fs.readdirSync(dir)).toEqual([]);
      });
    },
  );
});

describe("SIGKILL", () => {
  /** Start a child that writes `out` through a writer, wait until it has written and fsynced, SIGKILL it. */
  async function killWhileWriting(out: string, unnamed: boolean): Promise<void> {
    const script = path.join(root, `kill-child-${++dirCount}.ts`);
    const writerModule = path.resolve(import.meta.dir, "../../src/io/writer.ts");
    fs.writeFileSync(
      script,
      `import { DurableWriter } from ${JSON.stringify(writerModule)};
const w = new DurableWriter(${JSON.stringify(out)}, { unnamed: ${unnamed} });
await w.write(new Uint8Array(3 * 1024 * 1024).fill(7));
await w.prepare();
console.log("prepared", w.unnamed);
setInterval(() => {}, 1000);
`,
    );
    const child = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    try {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toBe(`prepared ${unnamed}\n`);
      child.kill("SIGKILL");
      await child.exited;
      expect(child.signalCode).toBe("SIGKILL");
    } finally {
      child.kill("SIGKILL");
    }
  }

  test.skipIf(process.platform !== "linux")(
    "a writer killed after writing and fsyncing leaves no directory entry (unnamed file)",
    async () => {
      const dir = freshDir();
      fs.writeFileSync(path.join(dir, "input.dat"), "unrelated");
      await killWhileWriting(path.join(dir, "out.dat"), true);
      expect(fs.readdirSync(dir)).toEqual(["input.dat"]);
    },
    20_000,
  );

  test("the named fallback does leave its temp file (the next run removes it: see below)", async () => {
    const dir = freshDir();
    await killWhileWriting(path.join(dir, "out.dat"), false);
    expect(fs.readdirSync(dir)).toEqual([expect.stringMatching(/^\.out\.dat\.netsort-\d+\.tmp$/)]);
    const next = new DurableWriter(path.join(dir, "out.dat"));
    next.discard();
    expect(fs.readdirSync(dir)).toEqual([]);
  }, 20_000);
});

describe("stale temp files", () => {
  test("a temp file of a dead process for the same output is removed; a live one's and other outputs' stay", () => {
    const { existsSync, writeFileSync } = fs;
    const { join } = path;
    const dir = fs.mkdtempSync(join(os.tmpdir(), "netsort-stale-"));
    try {
      const dead = Bun.spawnSync(["true"]).pid; // exited: its pid is (almost surely) free now
      const staleSame = join(dir, `.out.dat.netsort-${dead}.tmp`);
      const liveSame = join(dir, `.out.dat.netsort-${process.ppid}.tmp`);
      const staleOther = join(dir, `.other.dat.netsort-${dead}.tmp`);
      for (const f of [staleSame, liveSame, staleOther]) writeFileSync(f, "x");
      const w = new DurableWriter(join(dir, "out.dat"));
      w.discard();
      expect([existsSync(staleSame), existsSync(liveSame), existsSync(staleOther)]).toEqual([
        false,
        true,
        true,
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
