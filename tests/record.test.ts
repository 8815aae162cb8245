import { describe, expect, test } from "bun:test";
import {
  compareKeys,
  compareRecords,
  KEY_BYTES,
  MAX_PEERS,
  makeOwnerFn,
  ownerOf,
  RECORD_BYTES,
  rangeEnd,
  rangeStart,
} from "../src/record.ts";
import { prng as rng } from "./helpers.ts";

const TWO_POW_48 = 1n << 48n;

function randomBytes(next: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
  return out;
}

/** The key's first 48 bits, as BigInt, read independently of src/record.ts. */
function prefixOf(buf: Uint8Array, offset: number): bigint {
  let p = 0n;
  for (let i = 0; i < 6; i++) p = (p << 8n) | BigInt(buf[offset + i]);
  return p;
}

/** The reference owner: floor(p * N / 2^48) in exact integer arithmetic. */
function refOwner(p: bigint, peers: number): number {
  return Number((p * BigInt(peers)) / TWO_POW_48);
}

/** A record at `offset` in a larger buffer whose first 48 key bits are `p`; the rest is noise. */
function recordWithPrefix(p: bigint, next: () => number, offset = 7): Uint8Array {
  const buf = randomBytes(next, offset + RECORD_BYTES + 3);
  for (let i = 5; i >= 0; i--) {
    buf[offset + i] = Number(p & 0xffn);
    p >>= 8n;
  }
  return buf;
}

const peerCounts = [
  ...Array.from({ length: 70 }, (_, i) => i + 1),
  96,
  100,
  127,
  128,
  255,
  256,
  257,
  512,
  999,
  1000,
  1023,
  1024,
];

/** Prefixes worth testing for N peers: every range boundary and its neighbours, plus the extremes. */
function edgePrefixes(peers: number): bigint[] {
  const out = [0n, 1n, TWO_POW_48 - 1n, TWO_POW_48 - 2n, TWO_POW_48 / 2n, TWO_POW_48 / 2n - 1n];
  for (let peer = 1; peer < peers; peer++) {
    const start = BigInt(rangeStart(peer, peers));
    out.push(start - 1n, start, start + 1n);
  }
  return out;
}

describe("ownerOf and makeOwnerFn", () => {
  test("match floor(p * N / 2^48) on random and edge keys for N = 1..70 and larger sizes", () => {
    const next = rng(0x5eed);
    const offset = 7;
    let checked = 0;
    for (const peers of peerCounts) {
      const fast = makeOwnerFn(peers);
      const prefixes = edgePrefixes(peers);
      for (let i = 0; i < 400; i++) prefixes.push(prefixOf(randomBytes(next, 6), 0));
      for (const p of prefixes) {
        const rec = recordWithPrefix(p, next, offset);
        expect(prefixOf(rec, offset)).toBe(p);
        const expected = refOwner(p, peers);
        const got = ownerOf(rec, offset, peers);
        if (got !== expected || fast(rec, offset) !== expected) {
          throw new Error(
            `N=${peers} p=${p}: ownerOf ${got}, makeOwnerFn ${fast(rec, offset)}, expected ${expected}`,
          );
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(peerCounts.length * 400);
  });

  test("all-0x00 keys go to peer 0 and all-0xff keys to peer N-1", () => {
    const zeros = new Uint8Array(RECORD_BYTES);
    const ones = new Uint8Array(RECORD_BYTES).fill(0xff);
    for (const peers of peerCounts) {
      expect(ownerOf(zeros, 0, peers)).toBe(0);
      expect(makeOwnerFn(peers)(zeros, 0)).toBe(0);
      expect(ownerOf(ones, 0, peers)).toBe(peers - 1);
      expect(makeOwnerFn(peers)(ones, 0)).toBe(peers - 1);
    }
  });

  test("only the first 48 bits of the key matter", () => {
    const next = rng(7);
    for (const peers of [3, 7, 64, 1000]) {
      const fast = makeOwnerFn(peers);
      for (let i = 0; i < 200; i++) {
        const a = randomBytes(next, RECORD_BYTES);
        const b = randomBytes(next, RECORD_BYTES);
        b.set(a.subarray(0, 6), 0);
        expect(ownerOf(b, 0, peers)).toBe(ownerOf(a, 0, peers));
        expect(fast(b, 0)).toBe(fast(a, 0));
      }
    }
  });

  test("for N = 2^n the owner is exactly the key's top n bits", () => {
    const next = rng(99);
    for (let n = 0; n <= 10; n++) {
      const peers = 2 ** n;
      const fast = makeOwnerFn(peers);
      for (let i = 0; i < 500; i++) {
        const rec = randomBytes(next, RECORD_BYTES);
        // Top n bits read from the first two bytes, independently of the prefix arithmetic.
        const top = n === 0 ? 0 : ((rec[0] << 8) | rec[1]) >> (16 - n);
        expect(fast(rec, 0)).toBe(top);
        expect(ownerOf(rec, 0, peers)).toBe(top);
      }
    }
  });

  test("makeOwnerFn refuses impossible cluster sizes", () => {
    for (const bad of [0, -1, 1.5, MAX_PEERS + 1, Number.NaN]) {
      expect(() => makeOwnerFn(bad)).toThrow("assertion failed");
    }
  });
});

describe("rangeStart / rangeEnd", () => {
  test("ranges are contiguous, cover [0, 2^48) and agree with the owner at every boundary", () => {
    const next = rng(3);
    for (const peers of peerCounts) {
      expect(rangeStart(0, peers)).toBe(0);
      expect(rangeEnd(peers - 1, peers)).toBe(2 ** 48);
      for (let peer = 0; peer < peers; peer++) {
        const start = rangeStart(peer, peers);
        const end = rangeEnd(peer, peers);
        expect(Number.isSafeInteger(start)).toBe(true);
        expect(end).toBeGreaterThan(start);
        if (peer + 1 < peers) expect(rangeStart(peer + 1, peers)).toBe(end);
        // The first and last prefix of the range belong to `peer`; the neighbours do not.
        const first = BigInt(start);
        const last = BigInt(end) - 1n;
        expect(refOwner(first, peers)).toBe(peer);
        expect(refOwner(last, peers)).toBe(peer);
        if (peer > 0) expect(refOwner(first - 1n, peers)).toBe(peer - 1);
        if (peer + 1 < peers) expect(refOwner(last + 1n, peers)).toBe(peer + 1);
        // And the production owner function agrees on those keys.
        expect(ownerOf(recordWithPrefix(first, next, 0), 0, peers)).toBe(peer);
        expect(ownerOf(recordWithPrefix(last, next, 0), 0, peers)).toBe(peer);
      }
    }
  });

  test("every owner gets an equal-width range (within 1)", () => {
    for (const peers of peerCounts) {
      const floor = TWO_POW_48 / BigInt(peers);
      let total = 0n;
      for (let peer = 0; peer < peers; peer++) {
        const width = BigInt(rangeEnd(peer, peers)) - BigInt(rangeStart(peer, peers));
        expect(width === floor || width === floor + 1n).toBe(true);
        total += width;
      }
      expect(total).toBe(TWO_POW_48);
    }
  });
});

describe("compareKeys / compareRecords", () => {
  /** Reference order: Buffer.compare on the byte ranges (memcmp). */
  function refCompare(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number {
    return Buffer.compare(Buffer.from(a.subarray(ao, ao + n)), Buffer.from(b.subarray(bo, bo + n)));
  }

  test("sign matches memcmp of the 10-byte keys, at any offsets", () => {
    const next = rng(11);
    for (let i = 0; i < 3000; i++) {
      const a = randomBytes(next, 300);
      const b = randomBytes(next, 300);
      const ao = Math.floor(next() * 3) * RECORD_BYTES;
      const bo = Math.floor(next() * 3) * RECORD_BYTES;
      // Make keys share a random-length prefix so late bytes decide too.
      const shared = Math.floor(next() * (KEY_BYTES + 1));
      b.set(a.subarray(ao, ao + shared), bo);
      if (next() < 0.1) b.set(a.subarray(ao, ao + RECORD_BYTES), bo);
      expect(Math.sign(compareKeys(a, ao, b, bo))).toBe(refCompare(a, ao, b, bo, KEY_BYTES));
      expect(Math.sign(compareRecords(a, ao, b, bo))).toBe(refCompare(a, ao, b, bo, RECORD_BYTES));
    }
  });

  test("bytes are unsigned: 0x80 and 0xff sort after 0x7f; value bytes do not affect keys", () => {
    const lo = new Uint8Array(RECORD_BYTES).fill(0x7f);
    const hi = new Uint8Array(RECORD_BYTES).fill(0x7f);
    hi[KEY_BYTES - 1] = 0x80;
    expect(compareKeys(lo, 0, hi, 0)).toBeLessThan(0);
    expect(compareKeys(hi, 0, lo, 0)).toBeGreaterThan(0);
    const v = lo.slice();
    v[KEY_BYTES] = 0xff;
    expect(compareKeys(lo, 0, v, 0)).toBe(0);
    expect(compareRecords(lo, 0, v, 0)).toBeLessThan(0);
  });
});
