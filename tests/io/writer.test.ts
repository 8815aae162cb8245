import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError, UsageError } from "../../src/errors.ts";
import { DurableWriter, removeLiveTempFiles } from "../../src/io/writer.ts";
import { writebackBytes, writeChunkBytes } from "../../src/limits.ts";

let root: string;
let dirCount = 0;

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

/** Unnamed (O_TMPFILE) where this system has it, and the named fallback, forced. */
const modes = [
  { name: "unnamed", unnamed: true },
  { name: "named fallback", unnamed: false },
] as const;

describe.each(modes)("DurableWriter ($name)", ({ unnamed }) => {
  const open = (out: string) => new DurableWriter(out, { unnamed });

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

  test("long outputs start writeback as they go, and keep every byte", async () => {
    const dir = freshDir();
    const out = path.join(dir, "long.bin");
    const piece = bytes(3 * 1024 * 1024 + 7, 5);
    const w = open(out);
    for (let i = 0; i < 7; i++) await w.write(piece);
    const total = 7 * piece.length;
    await w.prepare();
    // Early writeback covered part of the file (one at a time, so not all of it), never more than was written.
    expect(w.writebackBytes).toBeGreaterThanOrEqual(writebackBytes);
    expect(w.writebackBytes).toBeLessThanOrEqual(total);
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

  test("a failing write (file size limit, like a full disk) is NetsortError exit 1 naming the output", () => {
    // A child with `ulimit -f 1` (1 KiB): Bun ignores SIGXFSZ, so the write fails with EFBIG,
    // which takes the same path as ENOSPC. Cheap, and needs no special filesystem.
    const dir = freshDir();
    const out = path.join(dir, "big.bin");
    const script = path.join(root, `child-${dirCount}.ts`);
    const writerModule = path.resolve(import.meta.dir, "../../src/io/writer.ts");
    fs.writeFileSync(
      script,
      `import { DurableWriter } from ${JSON.stringify(writerModule)};
const w = new DurableWriter(${JSON.stringify(out)}, { unnamed: ${unnamed} });
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
      cmd: ["bash", "-c", `ulimit -f 1 && exec "${process.execPath}" "${script}"`],
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000,
    });
    expect(child.stderr.toString()).toBe("");
    const result = JSON.parse(child.stdout.toString());
    // The name tells the class apart: a write error is a NetsortError, not a UsageError.
    expect(result.name).toBe(new NetsortError("x").name);
    expect(result.exitCode).toBe(EXIT_RUNTIME);
    expect(result.message).toBe(`output ${out}: write failed after 1024 bytes (file too large)`);
    expect(result.message).toContain("file too large");
    expect(fs.readdirSync(dir)).toEqual([]);
  });
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
