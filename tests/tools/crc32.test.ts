import { describe, expect, test } from "bun:test";
import { crc32Bytes, crc32RecordWords, maxRecordsPerCrcSum, sumRecordCrcs } from "../../src/tools/crc32.ts";

/** Reference: Bun's zlib-compatible CRC-32, one record at a time. */
function referenceSum(buf: Uint8Array, offset: number, count: number): number {
  let sum = 0;
  for (let r = 0; r < count; r++)
    sum += Bun.hash.crc32(buf.subarray(offset + r * 100, offset + r * 100 + 100));
  return sum;
}

describe("record CRC-32", () => {
  test("known values: zlib crc32 of '123456789' and of zeros", () => {
    expect(crc32Bytes(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32Bytes(new Uint8Array(100))).toBe(Bun.hash.crc32(new Uint8Array(100)));
    expect(crc32Bytes(new Uint8Array(0))).toBe(0);
  });

  test("word-wise record CRC equals Bun.hash.crc32 on random records", () => {
    const buf = crypto.getRandomValues(new Uint8Array(100 * 500));
    const words = new Uint32Array(buf.buffer);
    for (let r = 0; r < 500; r++) {
      expect(crc32RecordWords(words, r * 25)).toBe(Bun.hash.crc32(buf.subarray(r * 100, r * 100 + 100)));
    }
  });

  test("sumRecordCrcs at every alignment, across the scratch-buffer batches", () => {
    const count = 1500;
    const buf = crypto.getRandomValues(new Uint8Array(count * 100 + 8));
    for (const offset of [0, 1, 2, 3, 4, 7]) {
      expect(sumRecordCrcs(buf, offset, count)).toBe(referenceSum(buf, offset, count));
    }
    const view = buf.subarray(3); // unaligned byteOffset, offset 0
    expect(sumRecordCrcs(view, 0, 10)).toBe(referenceSum(view, 0, 10));
    expect(sumRecordCrcs(buf, 0, 0)).toBe(0);
  });

  test("refuses counts whose sum could lose precision or run past the buffer", () => {
    const buf = new Uint8Array(1000);
    expect(() => sumRecordCrcs(buf, 0, 11)).toThrow();
    expect(() => sumRecordCrcs(buf, 1, 10)).toThrow();
    expect(() => sumRecordCrcs(buf, 0, maxRecordsPerCrcSum + 1)).toThrow();
  });
});
