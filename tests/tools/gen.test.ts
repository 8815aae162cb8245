import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { UsageError } from "../../src/errors.ts";
import { dupsKeyCount, generate, roundUpToRecords, skewPrefixBytes, skewShare } from "../../src/tools/gen.ts";

const RECORD = 100;
let dir: string;
let fileCount = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-gen-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function tempPath(): string {
  fileCount++;
  return path.join(dir, `f${fileCount}`);
}

async function gen(bytes: number, seed?: number, kind?: "uniform" | "skew" | "dups"): Promise<Buffer> {
  const file = tempPath();
  const result = await generate({ file, bytes, seed, kind });
  const data = fs.readFileSync(file);
  expect(data.length).toBe(result.bytes);
  expect(result.records * RECORD).toBe(data.length);
  return data;
}

/** Count records by the hex of bytes [start, end) of each record. */
function countBy(data: Buffer, start: number, end: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let o = 0; o < data.length; o += RECORD) {
    const k = data.toString("hex", o + start, o + end);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

describe("generate", () => {
  test("same seed, size and kind give byte-identical files", async () => {
    for (const kind of ["uniform", "skew", "dups"] as const) {
      const a = await gen(123_400, 42, kind);
      const b = await gen(123_400, 42, kind);
      expect(a.equals(b)).toBe(true);
    }
  });

  test("different seeds and kinds give different files", async () => {
    const a = await gen(50_000, 1);
    const b = await gen(50_000, 2);
    const c = await gen(50_000, 1, "skew");
    expect(a.equals(b)).toBe(false);
    expect(a.equals(c)).toBe(false);
    // Not just a few bytes: independent random streams differ almost everywhere.
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
    expect(same / a.length).toBeLessThan(0.02);
  });

  test("the default seed is fixed", async () => {
    const a = await gen(10_000);
    const b = await gen(10_000, 1);
    expect(a.equals(b)).toBe(true);
  });

  test("a smaller file is a prefix of a larger one, across the internal chunk size", async () => {
    // 9 MB crosses the 8 MiB write buffer: chunking must not change the bytes.
    const big = await gen(9_000_000, 7, "dups");
    const small = await gen(3_000_000, 7, "dups");
    expect(big.subarray(0, small.length).equals(small)).toBe(true);
  }, 20_000);

  test("sizes are rounded up to whole records", async () => {
    expect(roundUpToRecords(0)).toBe(0);
    expect(roundUpToRecords(1)).toBe(100);
    expect(roundUpToRecords(100)).toBe(100);
    expect(roundUpToRecords(250)).toBe(300);
    expect((await gen(0)).length).toBe(0);
    expect((await gen(1)).length).toBe(100);
    expect((await gen(250)).length).toBe(300);
    expect((await gen(10 * 1024 * 1024)).length).toBe(10_485_800);
  });

  test("uniform: every byte value about equally common, keys spread over 256 first bytes", async () => {
    const data = await gen(2_000_000, 3);
    const counts = new Array(256).fill(0);
    for (const b of data) counts[b]++;
    const expected = data.length / 256;
    for (const c of counts) expect(Math.abs(c - expected) / expected).toBeLessThan(0.05);
    const firstBytes = countBy(data, 0, 1);
    expect(firstBytes.size).toBe(256);
    expect(countBy(data, 0, 10).size).toBe(data.length / RECORD);
  });

  test("skew and dups: files made with different seeds share the prefix and the key set", async () => {
    const [a, b] = await Promise.all([gen(100_000, 7, "skew"), gen(100_000, 8, "skew")]);
    const top = (d: Buffer) =>
      [...countBy(d, 0, skewPrefixBytes).entries()].sort((x, y) => y[1] - x[1])[0][0];
    expect(top(a)).toBe(top(b));
    const [c, d] = await Promise.all([gen(2_000_000, 7, "dups"), gen(2_000_000, 8, "dups")]);
    const keysC = new Set(countBy(c, 0, 10).keys());
    const shared = [...countBy(d, 0, 10).keys()].filter((k) => keysC.has(k)).length;
    expect(shared).toBeGreaterThan(dupsKeyCount * 0.9);
  });

  test("skew: about 90% of records share the first 6 key bytes, the rest do not", async () => {
    const data = await gen(3_000_000, 5, "skew");
    const records = data.length / RECORD;
    const prefixes = [...countBy(data, 0, skewPrefixBytes).values()].sort((x, y) => y - x);
    expect(prefixes[0] / records).toBeGreaterThan(skewShare - 0.01);
    expect(prefixes[0] / records).toBeLessThan(skewShare + 0.01);
    // The other ~10% are uniform: essentially all distinct prefixes.
    expect(prefixes[1] ?? 0).toBeLessThan(3);
    // Full keys stay distinct: the last 4 key bytes are random.
    expect(countBy(data, 0, 10).size).toBeGreaterThan(records - 3);
  });

  test("dups: keys come from a small set, values stay random", async () => {
    const data = await gen(2_000_000, 9, "dups");
    const records = data.length / RECORD;
    const keys = countBy(data, 0, 10);
    expect(keys.size).toBeLessThanOrEqual(dupsKeyCount);
    expect(keys.size).toBeGreaterThan(dupsKeyCount * 0.99);
    for (const n of keys.values()) expect(n).toBeGreaterThan(0);
    expect(countBy(data, 10, RECORD).size).toBe(records);
  });

  test("a bad directory is a usage error and leaves nothing behind", async () => {
    const file = path.join(dir, "missing-dir", "out");
    await expect(generate({ file, bytes: 1000 })).rejects.toBeInstanceOf(UsageError);
    expect(fs.existsSync(path.dirname(file))).toBe(false);
  });

  test("bad seeds and sizes are usage errors", async () => {
    const file = tempPath();
    await expect(generate({ file, bytes: 100, seed: -1 })).rejects.toBeInstanceOf(UsageError);
    await expect(generate({ file, bytes: 100, seed: 2 ** 32 })).rejects.toBeInstanceOf(UsageError);
    await expect(generate({ file, bytes: 1.5 })).rejects.toBeInstanceOf(UsageError);
    expect(fs.existsSync(file)).toBe(false);
  });

  test("no temporary file is left beside the output", async () => {
    const sub = fs.mkdtempSync(path.join(dir, "clean-"));
    await generate({ file: path.join(sub, "out"), bytes: 5000 });
    expect(fs.readdirSync(sub)).toEqual(["out"]);
  });

  test("a target that is a directory fails cleanly", async () => {
    const sub = fs.mkdtempSync(path.join(dir, "isdir-"));
    fs.mkdirSync(path.join(sub, "out"));
    await expect(generate({ file: path.join(sub, "out"), bytes: 5000 })).rejects.toThrow("cannot write");
    expect(fs.readdirSync(sub)).toEqual(["out"]);
  });
});
