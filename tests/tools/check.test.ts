import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { UsageError } from "../../src/errors.ts";
import { readChunkBytes } from "../../src/limits.ts";
import { checkFiles } from "../../src/tools/check.ts";

const RECORD = 100;
const KEY = 10;
/** check reads in chunks of this many records: disorder and duplicates placed here test the carry-over. */
const chunkRecords = readChunkBytes / RECORD;
let dir: string;
let fileCount = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-check-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `n` random records, one Buffer each (test data made without the code under test). */
function randomRecords(n: number): Buffer[] {
  const all = Buffer.alloc(n * RECORD);
  for (let o = 0; o < all.length; o += 65_536)
    crypto.getRandomValues(all.subarray(o, Math.min(all.length, o + 65_536)));
  return Array.from({ length: n }, (_, i) => all.subarray(i * RECORD, (i + 1) * RECORD));
}

function byKey(a: Buffer, b: Buffer): number {
  return Buffer.compare(a.subarray(0, KEY), b.subarray(0, KEY));
}

function sortedRecords(n: number): Buffer[] {
  return randomRecords(n).sort(byKey);
}

function write(records: Buffer[] | Buffer): string {
  fileCount++;
  const file = path.join(dir, `f${fileCount}`);
  fs.writeFileSync(file, Array.isArray(records) ? Buffer.concat(records) : records);
  return file;
}

/** A copy of `r` with a new key, so two records can share a key but not a value. */
function withKey(r: Buffer, key: Buffer): Buffer {
  const copy = Buffer.from(r);
  key.copy(copy, 0, 0, KEY);
  return copy;
}

describe("checkFiles: order", () => {
  test("a sorted file is valid", async () => {
    const file = write(sortedRecords(1000));
    const result = await checkFiles([file]);
    expect(result).toMatchObject({
      records: 1000,
      duplicates: 0,
      sorted: true,
      firstDisorder: null,
      valid: true,
    });
    expect(result.inputsMatch).toBeNull();
    expect(result.checksums.inputs).toBeNull();
  });

  test("an unsorted file: the first out-of-order record is found", async () => {
    const recs = sortedRecords(1000);
    [recs[500], recs[700]] = [recs[700], recs[500]];
    const file = write(recs);
    const result = await checkFiles([file]);
    expect(result.sorted).toBe(false);
    expect(result.valid).toBe(false);
    // recs[500] now holds a larger key, so record 501 is the first smaller than its predecessor.
    expect(result.firstDisorder).toEqual({ file, fileIndex: 0, record: 501, overallRecord: 501 });
  });

  test("disorder exactly at a read-chunk boundary is found", async () => {
    const recs = sortedRecords(chunkRecords + 100);
    const boundary = chunkRecords;
    recs[boundary] = withKey(recs[boundary], Buffer.alloc(KEY, 0));
    const file = write(recs);
    const result = await checkFiles([file]);
    expect(result.firstDisorder?.record).toBe(boundary);
  }, 20_000);

  test("files sorted each, but out of order across files", async () => {
    const recs = sortedRecords(600);
    const a = write(recs.slice(0, 300));
    const b = write(recs.slice(300));
    expect((await checkFiles([a, b])).valid).toBe(true);
    const result = await checkFiles([b, a]);
    expect(result.sorted).toBe(false);
    expect(result.firstDisorder).toEqual({ file: a, fileIndex: 1, record: 0, overallRecord: 300 });
    expect(result.fileRecords).toEqual([300, 300]);
  });

  test("duplicate keys are counted within chunks, across chunks and across files", async () => {
    const recs = sortedRecords(chunkRecords + 50);
    // A key 3 times in a row inside the file: +2.
    recs[11] = withKey(recs[11], recs[10]);
    recs[12] = withKey(recs[12], recs[10]);
    // A pair straddling the read-chunk boundary: +1.
    recs[chunkRecords] = withKey(recs[chunkRecords], recs[chunkRecords - 1]);
    const first = write(recs);
    // The next file starts with the last key of the first: +1.
    const [a, b] = randomRecords(2);
    const next = [withKey(a, recs[recs.length - 1]), withKey(b, Buffer.alloc(KEY, 0xff))];
    const second = write(next);
    const result = await checkFiles([first, second]);
    expect(result.duplicates).toBe(4);
    expect(result.sorted).toBe(true);
    expect(result.records).toBe(recs.length + next.length);
  }, 20_000);

  test("equal keys with different values are sorted (only keys are compared)", async () => {
    const key = Buffer.alloc(KEY, 7);
    const recs = randomRecords(5).map((r) => withKey(r, key));
    const result = await checkFiles([write(recs)]);
    expect(result).toMatchObject({ sorted: true, duplicates: 4 });
  });

  test("empty files are valid, also between others", async () => {
    const empty = write([]);
    expect(await checkFiles([empty])).toMatchObject({ records: 0, duplicates: 0, sorted: true, valid: true });
    const recs = sortedRecords(20);
    const result = await checkFiles([write(recs.slice(0, 10)), empty, write(recs.slice(10))]);
    expect(result).toMatchObject({ records: 20, sorted: true, fileRecords: [10, 0, 10] });
  });
});

describe("checkFiles: bad input", () => {
  test("a size that is not a multiple of 100 names the file and its size", async () => {
    const file = write(Buffer.alloc(250));
    await expect(checkFiles([file])).rejects.toBeInstanceOf(UsageError);
    await expect(checkFiles([file])).rejects.toThrow(`${file} is 250 bytes`);
    const good = write(sortedRecords(3));
    await expect(checkFiles([good], [file])).rejects.toThrow(`${file} is 250 bytes`);
  });

  test("a missing file or none at all is a usage error", async () => {
    await expect(checkFiles([path.join(dir, "nope")])).rejects.toBeInstanceOf(UsageError);
    await expect(checkFiles([])).rejects.toBeInstanceOf(UsageError);
    const good = write(sortedRecords(3));
    await expect(checkFiles([good], [path.join(dir, "nope")])).rejects.toThrow("nope");
  });
});

describe("checkFiles: outputs against inputs", () => {
  const recs = sortedRecords(3000);
  /** Shuffled inputs spread over three files of different sizes. */
  const shuffled = [...recs].sort(() => Math.random() - 0.5);
  let inputs: string[];
  beforeAll(() => {
    inputs = [write(shuffled.slice(0, 1000)), write(shuffled.slice(1000, 1100)), write(shuffled.slice(1100))];
  });

  test("a valid multi-file result matches", async () => {
    const outputs = [write(recs.slice(0, 1234)), write(recs.slice(1234, 2000)), write(recs.slice(2000))];
    const result = await checkFiles(outputs, inputs);
    expect(result).toMatchObject({
      records: 3000,
      inputRecords: 3000,
      sorted: true,
      inputsMatch: true,
      valid: true,
    });
    expect(result.checksums.outputs).toBe(result.checksums.inputs!);
    expect(result.checksums.outputs).toMatch(/^[0-9a-f]+$/);
  });

  test("a missing record is found", async () => {
    const result = await checkFiles([write(recs.filter((_, i) => i !== 1777))], inputs);
    expect(result).toMatchObject({
      records: 2999,
      inputRecords: 3000,
      sorted: true,
      inputsMatch: false,
      valid: false,
    });
    expect(result.checksums.outputs).not.toBe(result.checksums.inputs!);
  });

  test("an extra record is found", async () => {
    const extra = [...recs.slice(0, 50), recs[50], ...recs.slice(50)];
    const result = await checkFiles([write(extra)], inputs);
    expect(result).toMatchObject({
      records: 3001,
      sorted: true,
      duplicates: 1,
      inputsMatch: false,
      valid: false,
    });
  });

  test("a modified value (order kept, count kept) is found", async () => {
    const changed = recs.map((r) => Buffer.from(r));
    changed[2222][99] ^= 0x01;
    const result = await checkFiles([write(changed)], inputs);
    expect(result).toMatchObject({ records: 3000, inputRecords: 3000, sorted: true, inputsMatch: false });
    expect(result.valid).toBe(false);
  });

  test("a record swapped for another from outside the inputs is found", async () => {
    const other = sortedRecords(1)[0];
    const swapped = [...recs.slice(0, 2999), other].sort(byKey);
    const result = await checkFiles([write(swapped)], inputs);
    expect(result).toMatchObject({ records: 3000, sorted: true, inputsMatch: false, valid: false });
  });

  test("unsorted but the same records: inputs match, still invalid", async () => {
    const result = await checkFiles([write(shuffled)], inputs);
    expect(result).toMatchObject({ sorted: false, inputsMatch: true, valid: false });
  });
});
