import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RECORD_BYTES } from "../../src/record.ts";
import { fileRunSource, mergeSorted, piecesSource, type SortedSource } from "../../src/sort/merge.ts";
import { ScratchFile } from "../../src/sort/scratch.ts";
import { prng } from "../helpers.ts";

/** Sorting a few thousand records per case with a JS reference: generous, for a loaded 2-core machine. */
const slowTimeoutMs = 60_000;
const dir = mkdtempSync(join(tmpdir(), "netsort-merge-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Shape = "uniform" | "equalKeys" | "samePrefix" | "identical" | "fewValues";

/** Random records; the shapes stress ties at the 4-byte prefix, the key and the whole record. */
function makeRecords(random: () => number, count: number, shape: Shape): Uint8Array {
  const data = new Uint8Array(count * RECORD_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (random() * 256) | 0;
  for (let r = 0; r < count; r++) {
    const o = r * RECORD_BYTES;
    if (shape === "equalKeys") data.fill(0x42, o, o + 10);
    if (shape === "samePrefix") data.fill(0x07, o, o + 4);
    if (shape === "identical") data.copyWithin(o, 0, RECORD_BYTES);
    if (shape === "fewValues") {
      data.fill((random() * 2) | 0, o, o + 10);
      data.fill((random() * 2) | 0, o + 10, o + RECORD_BYTES - 1);
      data[o + RECORD_BYTES - 1] = (random() * 3) | 0; // ties decided by the very last byte
    }
  }
  return data;
}

/** Independent reference: whole records compared with Buffer.compare (memcmp). */
function referenceSort(data: Uint8Array): Buffer {
  const records: Buffer[] = [];
  for (let o = 0; o < data.length; o += RECORD_BYTES)
    records.push(Buffer.from(data.subarray(o, o + RECORD_BYTES)));
  records.sort(Buffer.compare);
  return Buffer.concat(records, data.length);
}

/** Split data into `k` random parts, each sorted by the reference. */
function sortedParts(random: () => number, data: Uint8Array, k: number): Buffer[] {
  const parts: number[][] = Array.from({ length: k }, () => []);
  for (let r = 0; r < data.length / RECORD_BYTES; r++) parts[(random() * k) | 0].push(r);
  return parts.map((rows) => {
    const part = new Uint8Array(rows.length * RECORD_BYTES);
    for (let i = 0; i < rows.length; i++) {
      part.set(data.subarray(rows[i] * RECORD_BYTES, (rows[i] + 1) * RECORD_BYTES), i * RECORD_BYTES);
    }
    return referenceSort(part);
  });
}

/** A source handing out a sorted part in random-sized pieces, each in a fresh aligned buffer that is scribbled over afterwards. */
function randomPieces(random: () => number, part: Uint8Array): SortedSource {
  let at = 0;
  let last: Uint8Array | null = null;
  return {
    next() {
      last?.fill(0xcc); // the merge must be done with the previous piece
      if (at >= part.length) return null;
      const records = 1 + ((random() * 40) | 0);
      const end = Math.min(part.length, at + records * RECORD_BYTES);
      last = new Uint8Array(end - at);
      last.set(part.subarray(at, end));
      at = end;
      return last;
    },
  };
}

function drain(chunks: Iterable<Uint8Array>, maxChunkBytes: number): Buffer {
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    expect(chunk.length).toBeGreaterThan(0);
    expect(chunk.length).toBeLessThanOrEqual(maxChunkBytes);
    expect(chunk.length % RECORD_BYTES).toBe(0);
    out.push(Buffer.from(chunk));
  }
  return Buffer.concat(out);
}

describe("mergeSorted: the merge of sorted parts equals a memcmp sort of all records", () => {
  for (const shape of ["uniform", "equalKeys", "samePrefix", "identical", "fewValues"] as const) {
    test(
      `${shape}, fan-in 1..9 and 16`,
      () => {
        for (const k of [1, 2, 3, 4, 5, 7, 9, 16]) {
          const random = prng(k * 31 + shape.length);
          const data = makeRecords(random, 1500 + k * 13, shape);
          const parts = sortedParts(random, data, k);
          const outRecords = 1 + ((random() * 60) | 0);
          const out = new Uint8Array(outRecords * RECORD_BYTES);
          const merged = drain(
            mergeSorted(
              parts.map((p) => randomPieces(random, p)),
              out,
            ),
            out.length,
          );
          expect(merged.equals(referenceSort(data))).toBe(true);
        }
      },
      slowTimeoutMs,
    );
  }

  test("empty sources, all empty, and one record", () => {
    const random = prng(7);
    const data = makeRecords(random, 300, "uniform");
    const parts = sortedParts(random, data, 3);
    const empty = (): SortedSource => ({ next: () => null });
    const out = new Uint8Array(64 * RECORD_BYTES);
    const sources = [empty(), ...parts.map((p) => randomPieces(random, p)), empty()];
    expect(drain(mergeSorted(sources, out), out.length).equals(referenceSort(data))).toBe(true);
    expect(drain(mergeSorted([empty(), empty()], out), out.length).length).toBe(0);
    const one = data.subarray(0, RECORD_BYTES);
    expect(
      drain(mergeSorted([empty(), randomPieces(random, one)], out), out.length).equals(Buffer.from(one)),
    ).toBe(true);
  });

  test("piecesSource skips empty pieces", () => {
    const random = prng(8);
    const part = referenceSort(makeRecords(random, 50, "uniform"));
    const pieces = [new Uint8Array(0), part.subarray(0, 1000), new Uint8Array(0), part.subarray(1000)];
    const out = new Uint8Array(7 * RECORD_BYTES);
    const merged = drain(mergeSorted([piecesSource(pieces[Symbol.iterator]())], out), out.length);
    expect(merged.equals(part)).toBe(true);
  });
});

describe("fileRunSource: runs read back from scratch files through a small buffer", () => {
  test("three spilled runs merge to the reference, and the files leave nothing in the directory", () => {
    const random = prng(9);
    const data = makeRecords(random, 4000, "fewValues");
    const parts = sortedParts(random, data, 3);
    const files = parts.map((p) => {
      const f = new ScratchFile(dir);
      f.append(p.subarray(0, 1700));
      f.append(p.subarray(1700));
      return f;
    });
    expect(readdirSync(dir)).toEqual([]);
    const sources = files.map((f) => fileRunSource(f, new Uint8Array(3 * RECORD_BYTES)));
    const out = new Uint8Array(50 * RECORD_BYTES);
    expect(drain(mergeSorted(sources, out), out.length).equals(referenceSort(data))).toBe(true);
    for (const f of files) f.close();
  });
});

describe("mergeSorted: misuse is an assertion failure", () => {
  test("no sources, an output that is not whole records, a piece that is not whole records", () => {
    expect(() => mergeSorted([], new Uint8Array(RECORD_BYTES)).next()).toThrow("assertion failed");
    const one: SortedSource = { next: () => null };
    expect(() => mergeSorted([one], new Uint8Array(150)).next()).toThrow("assertion failed");
    const broken: SortedSource = { next: () => new Uint8Array(150) };
    expect(() => mergeSorted([broken], new Uint8Array(RECORD_BYTES)).next()).toThrow("assertion failed");
  });
});
