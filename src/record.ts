/**
 * The record format and the ownership function: the one place that knows the
 * layout of a record and which peer owns a key.
 */
import { assert } from "./errors.ts";

export const RECORD_BYTES = 100;
export const KEY_BYTES = 10;
export const VALUE_BYTES = RECORD_BYTES - KEY_BYTES;
/** Records are copied as 25 u32 words: faster than subarray + set per record. */
export const RECORD_WORDS = RECORD_BYTES / 4;

/** Ownership uses the key's first 48 bits (README.md "Records, peers, ownership"). */
const PREFIX_BITS = 48;
const TWO_POW_24 = 16777216; // 2^24 written out: `2 ** 24` in hot code was measured 10x slower

/** Most peers supported: ownership arithmetic below stays exact far beyond this. */
export const MAX_PEERS = 1024;

/** Compare two 10-byte keys as unsigned big-endian numbers (memcmp order). */
export function compareKeys(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): number {
  for (let i = 0; i < KEY_BYTES; i++) {
    const d = a[aOffset + i] - b[bOffset + i];
    if (d !== 0) return d;
  }
  return 0;
}

/** Compare two whole records byte by byte: the total order used for equal keys. */
export function compareRecords(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): number {
  for (let i = 0; i < RECORD_BYTES; i++) {
    const d = a[aOffset + i] - b[bOffset + i];
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Owner of a key for `peers` peers: floor(p * N / 2^48), p = the key's first 48 bits.
 * For N = 2^n this is the top n bits. Exact in doubles: p = hi * 2^24 + lo, and
 * floor(p*N / 2^48) = floor((hi*N + floor(lo*N / 2^24)) / 2^24), with every product < 2^35.
 */
export function ownerOf(record: Uint8Array, offset: number, peers: number): number {
  const hi = (record[offset] << 16) | (record[offset + 1] << 8) | record[offset + 2];
  const lo = (record[offset + 3] << 16) | (record[offset + 4] << 8) | record[offset + 5];
  return Math.floor((hi * peers + Math.floor((lo * peers) / TWO_POW_24)) / TWO_POW_24);
}

/**
 * The owner function specialised for one cluster size, so the hot loop does not
 * branch on N: power-of-two sizes shift the top bits, others use the exact formula.
 */
export function makeOwnerFn(peers: number): (record: Uint8Array, offset: number) => number {
  assert(Number.isInteger(peers) && peers >= 1 && peers <= MAX_PEERS, `peers in 1..${MAX_PEERS}: ${peers}`);
  if (peers === 1) return () => 0;
  if ((peers & (peers - 1)) === 0) {
    const bits = Math.log2(peers);
    assert(bits <= 16, "power-of-two fast path reads 16 bits");
    const shift = 16 - bits;
    return (record, offset) => ((record[offset] << 8) | record[offset + 1]) >>> shift;
  }
  return (record, offset) => ownerOf(record, offset, peers);
}

/**
 * The first 48-bit prefix owned by `peer`: ceil(peer * 2^48 / N), the least p with
 * floor(p*N/2^48) >= peer. Returned as a double (exact: < 2^53). Used to bucket
 * received records inside the peer's own range.
 */
export function rangeStart(peer: number, peers: number): number {
  // ceil(peer * 2^48 / N) computed exactly via BigInt: called once per run.
  const num = BigInt(peer) << BigInt(PREFIX_BITS);
  const n = BigInt(peers);
  return Number((num + n - 1n) / n);
}

/** One past the last 48-bit prefix owned by `peer`. */
export function rangeEnd(peer: number, peers: number): number {
  return rangeStart(peer + 1, peers);
}
