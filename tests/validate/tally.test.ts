import { describe, expect, test } from "bun:test";
import { RecordTally, type Summary } from "../../src/validate/tally.ts";
import { prng } from "../helpers.ts";

const R = 100;

/**
 * Records whose keys come from a tiny alphabet ('A', 'a', 0x00, 0xff), so equal
 * keys, keys equal but for case and neighbours that first differ in the last key
 * byte all occur often.
 */
function makeRecords(count: number, seed: number, sortedKeys: boolean): Uint8Array {
  const random = prng(seed);
  const alphabet = [0x41, 0x61, 0x00, 0xff];
  const keys: number[][] = [];
  for (let i = 0; i < count; i++) {
    keys.push(Array.from({ length: 10 }, (_, b) => (b < 7 ? 0x41 : alphabet[Math.floor(random() * 4)])));
  }
  if (sortedKeys) keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const out = new Uint8Array(count * R);
  for (let i = 0; i < count; i++) {
    out.set(keys[i], i * R);
    for (let b = 10; b < R; b++) out[i * R + b] = 0x20 + Math.floor(random() * 90);
  }
  return out;
}

/** valsort's rules written plainly: neighbour compares, first index, CRC-32 sum. */
function reference(bytes: Uint8Array, caseInsensitive: boolean): Summary | null {
  const n = bytes.length / R;
  if (n === 0) return null;
  const fold = (c: number) => (c >= 0x41 && c <= 0x5a ? c + 32 : c);
  const compare = (i: number, j: number): number => {
    if (!caseInsensitive)
      return Buffer.compare(bytes.subarray(i * R, i * R + 10), bytes.subarray(j * R, j * R + 10));
    for (let b = 0; b < R; b++) {
      const d = fold(bytes[i * R + b]) - fold(bytes[j * R + b]);
      if (d !== 0) return d;
      if (bytes[i * R + b] === 0) return 0;
    }
    return 0;
  };
  let firstUnordered = 0n;
  let unordered = 0n;
  let dups = 0n;
  let checksum = 0n;
  for (let i = 0; i < n; i++) {
    checksum += BigInt(Bun.hash.crc32(bytes.subarray(i * R, (i + 1) * R)));
    if (i === 0) continue;
    const c = compare(i - 1, i);
    if (c === 0) dups++;
    if (c > 0) {
      unordered++;
      if (firstUnordered === 0n) firstUnordered = BigInt(i);
    }
  }
  return {
    firstUnordered,
    unordered,
    records: BigInt(n),
    dups,
    checksum,
    firstRecord: bytes.slice(0, R),
    lastRecord: bytes.slice((n - 1) * R),
  };
}

/** Feed `bytes` to a tally in random pieces of whole records (some empty). */
function tallyInPieces(bytes: Uint8Array, seed: number, caseInsensitive = false): RecordTally {
  const random = prng(seed);
  const tally = new RecordTally({ caseInsensitive });
  const n = bytes.length / R;
  for (let done = 0; done < n; ) {
    const take = Math.min(n - done, Math.floor(random() * 40));
    tally.add(bytes, done * R, take * R);
    done += take;
  }
  return tally;
}

describe("RecordTally", () => {
  for (const caseInsensitive of [false, true]) {
    for (const sortedKeys of [true, false]) {
      test(`${caseInsensitive ? "strcasecmp" : "memcmp"} order, ${sortedKeys ? "sorted" : "shuffled"} keys: matches valsort's rules for any split`, () => {
        for (let seed = 1; seed <= 6; seed++) {
          const bytes = makeRecords(500, seed, sortedKeys);
          const expected = reference(bytes, caseInsensitive);
          expect(tallyInPieces(bytes, seed * 31, caseInsensitive).summary()).toEqual(expected);
          const whole = new RecordTally({ caseInsensitive });
          whole.add(bytes);
          expect(whole.summary()).toEqual(expected);
          expect(whole.records).toBe(500);
        }
      });
    }
  }

  test("a disorder in the last key byte, at a piece boundary, is found", () => {
    const bytes = new Uint8Array(3 * R).fill(0x41);
    bytes[1 * R + 9] = 0x42; // record 1 above record 0
    bytes[2 * R + 9] = 0x40; // record 2 below record 1: the first unordered is record 2
    const tally = new RecordTally();
    tally.add(bytes, 0, 2 * R);
    tally.add(bytes, 2 * R, R);
    expect(tally.summary()).toMatchObject({ firstUnordered: 2n, unordered: 1n, dups: 0n, records: 3n });
  });

  test("the key is 10 bytes: records differing only after it are duplicates, not disorder", () => {
    const bytes = new Uint8Array(2 * R).fill(0x41);
    bytes[R + 10] = 0x00;
    const tally = new RecordTally();
    tally.add(bytes);
    expect(tally.summary()).toMatchObject({ unordered: 0n, dups: 1n });
  });

  test("with no records there is no summary", () => {
    const tally = new RecordTally();
    tally.add(new Uint8Array(0));
    expect(tally.records).toBe(0);
    expect(tally.summary()).toBeNull();
  });

  test("onFirstUnordered is called once, with the first unordered record's index", () => {
    const bytes = makeRecords(300, 7, false);
    const calls: bigint[] = [];
    const tally = new RecordTally({ onFirstUnordered: (index) => calls.push(index) });
    tally.add(bytes, 0, 150 * R);
    tally.add(bytes, 150 * R, 150 * R);
    const expected = reference(bytes, false);
    expect(expected?.unordered).toBeGreaterThan(1n);
    expect(calls).toEqual([expected?.firstUnordered ?? -1n]);
  });

  test("keeps no reference to the caller's buffer", () => {
    const bytes = makeRecords(10, 3, true);
    const copy = bytes.slice();
    const tally = new RecordTally();
    tally.add(bytes, 0, 5 * R);
    bytes.fill(0); // the caller reuses its buffer
    tally.add(copy, 5 * R, 5 * R);
    expect(tally.summary()).toEqual(reference(copy, false));
  });

  test("a piece that is not whole records is a bug (assertion)", () => {
    expect(() => new RecordTally().add(new Uint8Array(150))).toThrow("assertion failed");
  });
});
