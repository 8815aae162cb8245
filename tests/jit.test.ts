import { describe, expect, test } from "bun:test";
import { tuneJit } from "../src/jit.ts";
import { ftlMinInputBytes } from "../src/limits.ts";
import { sortRecords } from "../src/sort/radix.ts";

describe("tuneJit", () => {
  test("large inputs keep every tier", () => {
    expect(tuneJit(ftlMinInputBytes)).toBe(0);
    expect(tuneJit(64 * ftlMinInputBytes)).toBe(0);
  });

  test("small inputs keep the hot loops out of FTL, and they still sort", () => {
    // Partition route, store add + addAligned, and the radix sort's functions.
    expect(tuneJit(ftlMinInputBytes - 1)).toBeGreaterThanOrEqual(1 + 2 + 5);
    expect(tuneJit(0)).toBe(tuneJit(100));
    const count = 5000;
    const records = new Uint8Array(count * 100);
    let s = 12345;
    for (let i = 0; i < records.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      records[i] = s >>> 24;
    }
    sortRecords(records, count, new Uint8Array(records.length));
    for (let r = 1; r < count; r++) {
      const a = records.subarray((r - 1) * 100, (r - 1) * 100 + 10);
      const b = records.subarray(r * 100, r * 100 + 10);
      expect(Buffer.compare(a, b)).toBeLessThanOrEqual(0);
    }
  });
});
