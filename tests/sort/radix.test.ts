import { describe, expect, test } from "bun:test";
import { RECORD_BYTES } from "../../src/record.ts";
import { sortRecords, sortRecordsInto } from "../../src/sort/radix.ts";
import { prng } from "../helpers.ts";

function randomBytes(random: () => number, buf: Uint8Array): void {
  let word = 0;
  for (let i = 0; i < buf.length; i++) {
    if ((i & 3) === 0) word = random() * 2 ** 32;
    buf[i] = word >>> ((i & 3) * 8);
  }
}

/** Independent reference: whole records compared with Buffer.compare (memcmp). */
function referenceSort(data: Uint8Array, count: number): Buffer {
  const records: Buffer[] = [];
  for (let r = 0; r < count; r++) {
    records.push(Buffer.from(data.subarray(r * RECORD_BYTES, (r + 1) * RECORD_BYTES)));
  }
  records.sort(Buffer.compare);
  return Buffer.concat(records, count * RECORD_BYTES);
}

type Shape = (random: () => number, count: number) => Uint8Array;

const shapes: Record<string, Shape> = {
  random: (random, count) => {
    const data = new Uint8Array(count * RECORD_BYTES);
    randomBytes(random, data);
    return data;
  },
  duplicateHeavy: (random, count) => {
    // 5 distinct keys, 3 distinct values: many identical records, many equal keys.
    const keys = Array.from({ length: 5 }, () => Array.from({ length: 10 }, () => (random() * 256) | 0));
    const values = Array.from({ length: 3 }, () => Array.from({ length: 90 }, () => (random() * 4) | 0));
    const data = new Uint8Array(count * RECORD_BYTES);
    for (let r = 0; r < count; r++) {
      data.set(keys[(random() * keys.length) | 0], r * RECORD_BYTES);
      data.set(values[(random() * values.length) | 0], r * RECORD_BYTES + 10);
    }
    return data;
  },
  allEqualKeys: (random, count) => {
    const data = new Uint8Array(count * RECORD_BYTES);
    randomBytes(random, data);
    for (let r = 0; r < count; r++) data.fill(0xa7, r * RECORD_BYTES, r * RECORD_BYTES + 10);
    return data;
  },
  allIdentical: (random, count) => {
    const one = new Uint8Array(RECORD_BYTES);
    randomBytes(random, one);
    const data = new Uint8Array(count * RECORD_BYTES);
    for (let r = 0; r < count; r++) data.set(one, r * RECORD_BYTES);
    return data;
  },
  skewed: (random, count) => {
    // 90% share a 6-byte prefix, the rest are random.
    const data = new Uint8Array(count * RECORD_BYTES);
    randomBytes(random, data);
    for (let r = 0; r < count; r++) {
      if (random() < 0.9) data.set([0x80, 0, 0xff, 0x12, 0, 0x01], r * RECORD_BYTES);
    }
    return data;
  },
  lateDifferences: (random, count) => {
    // Identical but for the last key byte and the last value byte: the deepest levels.
    const data = new Uint8Array(count * RECORD_BYTES);
    for (let r = 0; r < count; r++) {
      data[r * RECORD_BYTES + 9] = (random() * 3) | 0;
      data[r * RECORD_BYTES + 99] = (random() * 256) | 0;
    }
    return data;
  },
  extremes: (random, count) => {
    // Only 0x00 and 0xff bytes: catches signed comparisons.
    const data = new Uint8Array(count * RECORD_BYTES);
    for (let i = 0; i < data.length; i++) data[i] = random() < 0.5 ? 0 : 0xff;
    return data;
  },
};

function checkSort(data: Uint8Array, count: number, srcShift = 0, scratchShift = 0): void {
  const expected = referenceSort(data, count);
  const src = new Uint8Array(count * RECORD_BYTES + srcShift + 7).subarray(srcShift);
  src.set(data.subarray(0, count * RECORD_BYTES));
  const scratch = new Uint8Array(count * RECORD_BYTES + scratchShift).subarray(scratchShift);
  sortRecords(src, count, scratch);
  const got = Buffer.from(src.buffer, src.byteOffset, count * RECORD_BYTES);
  expect(got.equals(expected)).toBe(true);
}

const counts = [0, 1, 2, 3, 5, 24, 25, 26, 100, 257, 2_000, 20_000];

describe("sortRecords matches a memcmp reference", () => {
  for (const [name, shape] of Object.entries(shapes)) {
    test(name, () => {
      for (const count of counts) {
        const seed = count * 31 + name.length;
        checkSort(shape(prng(seed), count), count);
      }
    });
  }

  test("unaligned src or scratch (byte moves)", () => {
    for (const [name, shape] of Object.entries(shapes)) {
      for (const count of [0, 1, 7, 30, 600, 3_000]) {
        const data = shape(prng(count + name.length), count);
        checkSort(data, count, 1, 0);
        checkSort(data, count, 0, 3);
        checkSort(data, count, 2, 2);
      }
    }
  });

  test("many random sizes and seeds", () => {
    const random = prng(12345);
    const names = Object.keys(shapes);
    for (let round = 0; round < 60; round++) {
      const count = (random() * 400) | 0;
      const shape = shapes[names[round % names.length]];
      checkSort(shape(prng(round), count), count);
    }
  });

  test("knownBits: records sharing their first bits", () => {
    const random = prng(99);
    for (const knownBits of [1, 7, 8, 13, 32, 47, 80, 100]) {
      const count = 3_000;
      const data = shapes.random(random, count);
      // Force the first knownBits bits of every record to those of record 0.
      for (let r = 1; r < count; r++) {
        for (let bit = 0; bit < knownBits; bit++) {
          const byte = bit >>> 3;
          const mask = 0x80 >>> (bit & 7);
          const o = r * RECORD_BYTES + byte;
          data[o] = (data[o] & ~mask) | (data[byte] & mask);
        }
      }
      const expected = referenceSort(data, count);
      const scratch = new Uint8Array(count * RECORD_BYTES);
      sortRecords(data, count, scratch, knownBits);
      expect(Buffer.from(data.buffer, 0, count * RECORD_BYTES).equals(expected)).toBe(true);
    }
  });

  test("large counts of every shape stay fast", () => {
    // 100k records (10 MB) per shape: a quadratic corner would take minutes.
    const count = 100_000;
    const scratch = new Uint8Array(count * RECORD_BYTES);
    for (const [name, shape] of Object.entries(shapes)) {
      const data = shape(prng(name.length), count);
      const expected = referenceSort(data, count);
      const started = performance.now();
      sortRecords(data, count, scratch);
      const ms = performance.now() - started;
      expect(Buffer.from(data.buffer, 0, count * RECORD_BYTES).equals(expected)).toBe(true);
      expect(ms).toBeLessThan(2_000);
    }
  }, 60_000);

  test("bad arguments are assertion failures", () => {
    const buf = new Uint8Array(200);
    expect(() => sortRecords(buf, 3, new Uint8Array(300))).toThrow(/assertion failed/);
    expect(() => sortRecords(new Uint8Array(300), 3, buf)).toThrow(/assertion failed/);
    expect(() => sortRecords(buf, 1.5, buf)).toThrow(/assertion failed/);
    const shared = new Uint8Array(400);
    expect(() => sortRecords(shared.subarray(0, 200), 2, shared.subarray(100))).toThrow(/overlap/);
  });
});

/**
 * Records made to tie at every level of the key sort: few distinct keys (so the
 * 32-bit key words tie), values that differ only in a few late bytes, and some
 * exact duplicates; `sharedBits` leading bits equal in every record.
 */
function tieHeavy(random: () => number, count: number, sharedBits: number): Uint8Array {
  const distinctKeys = 1 + ((random() * 6) | 0);
  const keys = Array.from({ length: distinctKeys }, () => {
    const key = new Uint8Array(10);
    for (let i = 0; i < 10; i++) key[i] = random() < 0.5 ? 0 : (random() * 256) | 0;
    return key;
  });
  const data = new Uint8Array(count * RECORD_BYTES);
  for (let r = 0; r < count; r++) {
    const o = r * RECORD_BYTES;
    data.set(keys[(random() * distinctKeys) | 0], o);
    // Value bytes: mostly equal, a few positions with 2-3 values each.
    for (const at of [10, 11, 47, 90, 99]) data[o + at] = (random() * 3) | 0;
    if (random() < 0.1 && r > 0) data.copyWithin(o, o - RECORD_BYTES, o); // exact duplicate
  }
  for (let r = 1; r < count; r++) {
    for (let bit = 0; bit < sharedBits; bit++) {
      const byte = bit >>> 3;
      const mask = 0x80 >>> (bit & 7);
      const o = r * RECORD_BYTES + byte;
      data[o] = (data[o] & ~mask) | (data[byte] & mask);
    }
  }
  return data;
}

describe("sortRecordsInto: keys sorted, records gathered once", () => {
  test("property: duplicate-heavy keys, ties in value bytes, any knownBits and alignment", () => {
    const random = prng(777);
    for (let round = 0; round < 150; round++) {
      const count = round < 10 ? round : (random() * (round % 10 === 0 ? 6_000 : 600)) | 0;
      const knownBits = [0, 3, 8, 17, 40, 80, 83][round % 7];
      const data = round % 3 === 0 ? shapes.random(random, count) : tieHeavy(random, count, knownBits);
      if (round % 3 === 0) {
        // Random records only share what we force.
        const forced = tieHeavy(random, count, 0);
        for (let r = 0; r < count; r++)
          data.set(forced.subarray(r * RECORD_BYTES, r * RECORD_BYTES + 1), r * RECORD_BYTES);
      }
      const expected = referenceSort(data, count);
      const srcShift = round % 4 === 1 ? 1 : 0;
      const dstShift = round % 4 === 2 ? 3 : 0;
      const src = new Uint8Array(count * RECORD_BYTES + srcShift).subarray(srcShift);
      src.set(data.subarray(0, count * RECORD_BYTES));
      const dst = new Uint8Array(count * RECORD_BYTES + dstShift + 5).subarray(dstShift);
      dst.fill(0xcc);
      const known = round % 3 === 0 ? 0 : knownBits;
      sortRecordsInto(src, count, dst, known);
      const got = Buffer.from(dst.buffer, dst.byteOffset, count * RECORD_BYTES);
      expect(got.equals(expected)).toBe(true);
      // src is only read, and nothing is written past the records.
      expect(
        Buffer.from(src.buffer, src.byteOffset, count * RECORD_BYTES).equals(
          data.subarray(0, count * RECORD_BYTES),
        ),
      ).toBe(true);
      expect(dst.subarray(count * RECORD_BYTES).every((b) => b === 0xcc)).toBe(true);
    }
  }, 30_000);

  test("20k records with one key and values differing only in their last byte stay fast", () => {
    const count = 20_000;
    const random = prng(5);
    const data = new Uint8Array(count * RECORD_BYTES);
    for (let r = 0; r < count; r++) {
      data.fill(0x42, r * RECORD_BYTES, r * RECORD_BYTES + 99);
      data[r * RECORD_BYTES + 99] = (random() * 256) | 0;
    }
    const expected = referenceSort(data, count);
    const dst = new Uint8Array(count * RECORD_BYTES);
    const started = performance.now();
    sortRecordsInto(data, count, dst);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(Buffer.from(dst.buffer).equals(expected)).toBe(true);
  });

  test("overlapping src and dst are an assertion failure", () => {
    const shared = new Uint8Array(400);
    expect(() => sortRecordsInto(shared.subarray(0, 200), 2, shared.subarray(100))).toThrow(/overlap/);
    expect(() => sortRecordsInto(new Uint8Array(300), 3, new Uint8Array(200))).toThrow(/assertion failed/);
  });
});
