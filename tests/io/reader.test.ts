import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError, UsageError } from "../../src/errors.ts";
import { checkInputFile, chunkBuffer, fileVersion, readChunks, readUnits } from "../../src/io/reader.ts";
import { RECORD_BYTES } from "../../src/record.ts";

let dir: string;
let fileCount = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-reader-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A file of `bytes` bytes whose every byte depends on its position, so misplaced bytes show. */
function inputFile(bytes: number): { file: string; data: Buffer } {
  fileCount++;
  const file = path.join(dir, `in${fileCount}`);
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 7 + Math.floor(i / 251)) & 0xff;
  fs.writeFileSync(file, data);
  return { file, data };
}

async function thrown(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

describe("checkInputFile", () => {
  test("returns the size of a file of whole records, including an empty one", () => {
    for (const bytes of [0, RECORD_BYTES, 37 * RECORD_BYTES]) {
      expect(checkInputFile(inputFile(bytes).file)).toBe(bytes);
    }
  });

  test("a missing file: UsageError naming it", async () => {
    const missing = path.join(dir, "does-not-exist");
    const error = (await thrown(() => checkInputFile(missing))) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT_USAGE);
    expect(error.message).toBe(`input ${missing}: no such file`);
  });

  test("a directory: UsageError naming it", async () => {
    const error = (await thrown(() => checkInputFile(dir))) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT_USAGE);
    expect(error.message).toBe(`input ${dir}: is a directory`);
  });

  test("not a regular file (a character device)", async () => {
    const error = (await thrown(() => checkInputFile("/dev/null"))) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toBe("input /dev/null: is not a regular file");
  });

  test("a size that is not a multiple of 100 names the file, the size and the stray bytes", async () => {
    for (const bytes of [1, 99, 150, 12_345]) {
      const { file } = inputFile(bytes);
      const error = (await thrown(() => checkInputFile(file))) as UsageError;
      expect(error).toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(EXIT_USAGE);
      expect(error.message).toContain(`input ${file}: size ${bytes} bytes is not a multiple of 100`);
      expect(error.message).toContain(`${Math.floor(bytes / 100)} records and ${bytes % 100} stray bytes`);
    }
  });

  // Root reads a chmod 000 file, and this process cannot drop the capability for one call;
  // tests/mesh/faults.test.ts covers the same message through a peer run without it.
  const asRoot = process.getuid?.() === 0;
  test.skipIf(asRoot)(
    `an unreadable file: permission denied${asRoot ? " (skipped: running as root)" : ""}`,
    async () => {
      const { file } = inputFile(RECORD_BYTES);
      fs.chmodSync(file, 0o000);
      const error = (await thrown(() => checkInputFile(file))) as UsageError;
      expect(error).toBeInstanceOf(UsageError);
      expect(error.message).toBe(`input ${file}: permission denied`);
    },
  );
});

describe("readChunks", () => {
  /** Read the whole file, copying each chunk (views are reused) and checking its shape. */
  async function readAll(file: string, expected: number, chunkBytes?: number): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const chunk of readChunks(file, expected, chunkBuffer(expected, chunkBytes))) {
      expect(chunk.length).toBeGreaterThan(0);
      expect(chunk.length % RECORD_BYTES).toBe(0);
      if (chunkBytes !== undefined) expect(chunk.length).toBeLessThanOrEqual(chunkBytes);
      chunks.push(Buffer.from(chunk));
    }
    return chunks;
  }

  const chunkRecords = 7;
  const chunkBytes = chunkRecords * RECORD_BYTES;
  const sizes = [
    0,
    RECORD_BYTES,
    (chunkRecords - 1) * RECORD_BYTES,
    chunkBytes,
    (chunkRecords + 1) * RECORD_BYTES,
    2 * chunkBytes,
    53 * chunkBytes + 3 * RECORD_BYTES,
  ];

  for (const bytes of sizes) {
    test(`yields exactly the file's ${bytes} bytes in whole-record chunks of at most ${chunkBytes}`, async () => {
      const { file, data } = inputFile(bytes);
      const chunks = await readAll(file, bytes, chunkBytes);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      // Full chunks until the last one: the reader does not hand out needless small pieces.
      expect(chunks.length).toBe(Math.ceil(bytes / chunkBytes));
      for (const c of chunks.slice(0, -1)) expect(c.length).toBe(chunkBytes);
    });
  }

  test("the default chunk size reads a small file in one chunk", async () => {
    const { file, data } = inputFile(1234 * RECORD_BYTES);
    const chunks = await readAll(file, data.length);
    expect(chunks.length).toBe(1);
    expect(chunks[0].equals(data)).toBe(true);
  });

  test("a one-record chunk size still works", async () => {
    const { file, data } = inputFile(9 * RECORD_BYTES);
    const chunks = await readAll(file, data.length, RECORD_BYTES);
    expect(chunks.length).toBe(9);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });

  test("a chunk size that is not whole records is a bug (assertion)", async () => {
    const { file } = inputFile(RECORD_BYTES);
    const error = (await thrown(async () => {
      for await (const _ of readChunks(file, RECORD_BYTES, chunkBuffer(RECORD_BYTES, 150))) {
        // consume
      }
    })) as Error;
    expect(error.message).toContain("assertion failed");
  });

  test("a file that shrank or grew since it was checked is a run-time error (exit 1)", async () => {
    const { file } = inputFile(10 * RECORD_BYTES);
    for (const expected of [12 * RECORD_BYTES, 5 * RECORD_BYTES, 0]) {
      const error = (await thrown(() => readAll(file, expected, 3 * RECORD_BYTES))) as NetsortError;
      expect(error).toBeInstanceOf(NetsortError);
      expect(error).not.toBeInstanceOf(UsageError);
      expect(error.exitCode).toBe(EXIT_RUNTIME);
      expect(error.message).toContain(`input ${file}`);
      expect(error.message).toMatch(/changed while being read|grew while being read/);
    }
  });
});

describe("readUnits", () => {
  /** Every run's bytes (copied: the buffer is reused) and the trailing partial count. */
  function runs(file: string, bufferBytes: number, unitBytes: number): { runs: Buffer[]; partial: number } {
    const fd = fs.openSync(file, "r");
    try {
      const buffer = new Uint8Array(bufferBytes);
      const out: Buffer[] = [];
      const chunks = readUnits(fd, buffer, unitBytes);
      for (;;) {
        const next = chunks.next();
        if (next.done) return { runs: out, partial: next.value };
        out.push(Buffer.from(buffer.subarray(0, next.value)));
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  // Units that are not records (valsort reads 280-byte summaries with the same loop).
  const unit = 280;
  for (const bytes of [0, 1, unit - 1, unit, 3 * unit, 3 * unit + 17, 10 * unit + unit - 1]) {
    test(`a ${bytes}-byte file: full buffers of whole units, then the rest, then the partial count`, () => {
      const { file, data } = inputFile(bytes);
      const got = runs(file, 2 * unit, unit);
      const whole = bytes - (bytes % unit);
      expect(got.partial).toBe(bytes % unit);
      expect(Buffer.concat(got.runs).equals(data.subarray(0, whole))).toBe(true);
      expect(got.runs.length).toBe(Math.ceil(whole / (2 * unit)));
      for (const run of got.runs.slice(0, -1)) expect(run.length).toBe(2 * unit);
      for (const run of got.runs) expect(run.length % unit).toBe(0);
    });
  }

  test("read errors are thrown as they come (a directory: EISDIR)", () => {
    expect(() => runs(dir, RECORD_BYTES, RECORD_BYTES)).toThrow(expect.objectContaining({ code: "EISDIR" }));
  });

  test("a buffer that is not whole units is a bug (assertion)", () => {
    const { file } = inputFile(RECORD_BYTES);
    expect(() => runs(file, 150, RECORD_BYTES)).toThrow("assertion failed");
  });
});

describe("fileVersion", () => {
  test("stays the same while the file is only read, and changes when it is rewritten in place at the same size", async () => {
    const { file, data } = inputFile(10 * RECORD_BYTES);
    const before = fileVersion(file);
    for await (const _chunk of readChunks(file, data.length)) {
      // reading changes nothing
    }
    expect(fileVersion(file)).toBe(before);
    // The same size, one byte different, written in place (no new inode).
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, Buffer.from([data[5] ^ 0xff]), 0, 1, 5);
    fs.closeSync(fd);
    expect(fs.statSync(file).size).toBe(data.length);
    expect(fileVersion(file)).not.toBe(before);
  });

  test("changes when the path is replaced by another file (a new inode)", () => {
    const { file, data } = inputFile(4 * RECORD_BYTES);
    const before = fileVersion(file);
    const other = `${file}.new`;
    fs.writeFileSync(other, data);
    fs.renameSync(other, file);
    expect(fileVersion(file)).not.toBe(before);
  });
});
