import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError, UsageError } from "../../src/errors.ts";
import { DurableWriter, removeLiveTempFiles } from "../../src/io/writer.ts";
import { libc } from "../../src/libc.ts";
import { writebackBytes } from "../../src/limits.ts";

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

describe("DurableWriter", () => {
  test("write + prepare + commit gives exactly the bytes written and leaves no temp file", () => {
    const dir = freshDir();
    const out = path.join(dir, "sorted.bin");
    const parts = [bytes(100, 1), new Uint8Array(0), bytes(250_000, 2), bytes(1, 3)];
    const w = new DurableWriter(out);
    expect(path.dirname(w.tempPath)).toBe(dir);
    expect(w.tempPath).not.toBe(out);
    for (const p of parts) w.write(p);
    expect(w.bytes).toBe(250_101);
    // The output path never holds a partial file.
    expect(fs.existsSync(out)).toBe(false);
    w.prepare();
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.statSync(w.tempPath).size).toBe(250_101);
    w.commit();
    expect(fs.readFileSync(out).equals(Buffer.concat(parts))).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["sorted.bin"]);
    // discard after commit keeps the output.
    w.discard();
    expect(fs.existsSync(out)).toBe(true);
  });

  test("long outputs ask the kernel to start writeback as they go, and keep every byte", () => {
    const dir = freshDir();
    const out = path.join(dir, "long.bin");
    const piece = bytes(3 * 1024 * 1024 + 7, 5);
    const w = new DurableWriter(out);
    for (let i = 0; i < 7; i++) w.write(piece);
    const total = 7 * piece.length;
    // Requests cover whole multiples of the step, never more than was written.
    expect(w.writebackBytes).toBeLessThanOrEqual(total);
    if (libc() !== null) expect(w.writebackBytes).toBeGreaterThanOrEqual(total - writebackBytes);
    else expect(w.writebackBytes).toBe(0);
    w.prepare();
    w.commit();
    const back = fs.readFileSync(out);
    expect(back.length).toBe(total);
    for (let i = 0; i < 7; i++) {
      expect(back.subarray(i * piece.length, (i + 1) * piece.length).equals(piece)).toBe(true);
    }
  });

  test("an empty output is a real, empty file", () => {
    const dir = freshDir();
    const out = path.join(dir, "empty.bin");
    const w = new DurableWriter(out);
    w.prepare();
    w.commit();
    expect(fs.statSync(out).size).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(["empty.bin"]);
  });

  test("commit replaces an existing output file whole", () => {
    const dir = freshDir();
    const out = path.join(dir, "out.bin");
    fs.writeFileSync(out, Buffer.alloc(5000, 0xee));
    const w = new DurableWriter(out);
    w.write(bytes(300, 9));
    // Until commit, the old file is untouched.
    expect(fs.statSync(out).size).toBe(5000);
    w.prepare();
    w.commit();
    expect(fs.readFileSync(out).equals(Buffer.from(bytes(300, 9)))).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["out.bin"]);
  });

  test("discard, when open or when prepared, leaves no file at all; twice is fine", () => {
    for (const prepared of [false, true]) {
      const dir = freshDir();
      const w = new DurableWriter(path.join(dir, "out.bin"));
      w.write(bytes(1000, 4));
      if (prepared) w.prepare();
      w.discard();
      w.discard();
      expect(fs.readdirSync(dir)).toEqual([]);
    }
  });

  test("discard does not remove an existing output it never replaced", () => {
    const dir = freshDir();
    const out = path.join(dir, "keep.bin");
    fs.writeFileSync(out, "previous run");
    const w = new DurableWriter(out);
    w.write(bytes(100, 5));
    w.discard();
    expect(fs.readFileSync(out, "utf8")).toBe("previous run");
    expect(fs.readdirSync(dir)).toEqual(["keep.bin"]);
  });

  test("removeLiveTempFiles removes temp files of unfinished writers, not committed outputs", () => {
    const dir = freshDir();
    const done = new DurableWriter(path.join(dir, "done.bin"));
    done.write(bytes(100, 6));
    done.prepare();
    done.commit();
    const live = new DurableWriter(path.join(dir, "live.bin"));
    live.write(bytes(100, 7));
    expect(fs.existsSync(live.tempPath)).toBe(true);
    removeLiveTempFiles();
    expect(fs.readdirSync(dir)).toEqual(["done.bin"]);
    live.discard();
    expect(fs.readdirSync(dir)).toEqual(["done.bin"]);
  });

  test("calls out of order are bugs (assertions)", () => {
    const w = new DurableWriter(path.join(freshDir(), "o.bin"));
    expect(() => w.commit()).toThrow("assertion failed");
    w.prepare();
    expect(() => w.write(bytes(1, 0))).toThrow("assertion failed");
    expect(() => w.prepare()).toThrow("assertion failed");
    w.discard();
  });

  test("output in a missing directory: UsageError (exit 2) before any data", () => {
    const missingDir = path.join(root, "no-such-dir");
    const out = path.join(missingDir, "out.bin");
    const error = thrown(() => new DurableWriter(out)) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT_USAGE);
    expect(error.message).toBe(`output ${out}: cannot write in ${missingDir} (directory does not exist)`);
    expect(fs.existsSync(missingDir)).toBe(false);
  });

  test("output path that is a directory: UsageError (exit 2), nothing created", () => {
    const dir = freshDir();
    const target = path.join(dir, "sub");
    fs.mkdirSync(target);
    const error = thrown(() => new DurableWriter(target)) as UsageError;
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
const w = new DurableWriter(${JSON.stringify(out)});
try {
  w.write(new Uint8Array(64 * 1024));
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
    expect(result.message).toContain(`output ${out}: write failed after`);
    expect(result.message).toContain("file too large");
    expect(fs.readdirSync(dir)).toEqual([]);
  });
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
