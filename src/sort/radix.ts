/**
 * Sort 100-byte records by sorting small keys, not records: an MSD radix sort over
 * record indices, then one gather that copies every record once, in order, into
 * the destination (the output run). Order: key bytes as unsigned (memcmp), then
 * the value bytes, so equal keys come out in one deterministic order whatever
 * their arrival order.
 *
 * Each level reads, per record, an 8-12 bit digit at an arbitrary bit position
 * (the caller may know that the first bits are shared, e.g. inside one bucket of a
 * key range, so the first digit starts at the first bit that can vary) and the 32
 * key bits after it, and scatters (index, those 32 bits) pairs by digit. A
 * cache-sized bucket of ~5,000 records splits into ~2,000 children of 2-3 records,
 * which an insertion sort on the 32-bit words finishes; the record bytes are read
 * again only when those words tie. Moving 8 bytes per record per level instead of
 * 100 is what makes this cheaper than moving records (the previous version moved
 * each record about three times; docs/runtime-notes.md "Sorting 100-byte records").
 *
 * A range whose digit is the same for every record is not scattered: a scan finds
 * the first byte where any of its records differs and the sort jumps there, so
 * all-equal keys and millions of identical records cost a few linear passes, never
 * one per byte, and no range is ever comparison-sorted beyond `insertionMaxRecords`.
 */

import { assert } from "../errors.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";

/** Bits in a whole record: a range sorted up to here holds identical records. */
const RECORD_BITS = RECORD_BYTES * 8;
/**
 * Digits are 8 to 12 bits wide, floor(log2(range size)) - 1: a cache-sized bucket of
 * ~5,000 records splits into ~2,000 children of 2-3 records in one pass, while
 * small ranges do not pay for big count arrays.
 */
const minDigitBits = 8;
const maxDigitBits = 12;
const rowEntries = (1 << maxDigitBits) + 1;
/** Ranges of at most this many records are finished by insertion sort. */
const insertionMaxRecords = 24;
/** Recursion depth bound: every level advances by >= 8 bits, plus a spare level. */
const maxLevels = RECORD_BITS / minDigitBits + 2;

/** Where each child range starts (position), one row per level (1.6 MB, touched sparsely). */
const childStarts = new Int32Array(maxLevels * rowEntries);
/** Per-digit counts, then next free position per digit during one scatter. */
const cursors = new Int32Array(1 << maxDigitBits);

// Records are gathered as 25 u32 words, five per loop step: JSC runs that 2-3x
// faster than one word per step. The word-wise scans read words in platform order.
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "little-endian platform");

const EMPTY8: Uint8Array = new Uint8Array(0);
const EMPTY32: Uint32Array = new Uint32Array(0);

// The sort in progress (sorting is synchronous, so one set suffices): `src` holds
// the records, never moved; `order[p]` is the index of the record at sorted
// position p. With src 4-byte aligned, scans compare 4 bytes at a time.
let src8 = EMPTY8;
let src32 = EMPTY32;
let srcWords = false;

// Index arrays, per position, grown to the largest count sorted so far (callers
// bound it: BucketStore sorts at most ~21,000 records at a time): 18 B per record.
let order = new Int32Array(0);
/** The record indices of a range in their order before its scatter. */
let orderBefore = new Int32Array(0);
/** Per position before a scatter: the 32 key bits after the digit. */
let keysBefore = new Uint32Array(0);
/** The same words after the scatter, at the positions `order` gives them. */
let keys = new Uint32Array(0);
let digits = new Uint16Array(0);

function ensureIndexCapacity(count: number): void {
  if (order.length >= count) return;
  const capacity = Math.max(count, order.length * 2, 1024);
  order = new Int32Array(capacity);
  orderBefore = new Int32Array(capacity);
  keysBefore = new Uint32Array(capacity);
  keys = new Uint32Array(capacity);
  digits = new Uint16Array(capacity);
}

/**
 * Sort the `count` records in src[0, count*100) into dst[0, count*100), by key
 * (memcmp order), and equal keys by the whole record (so output is deterministic
 * whatever the arrival order). src is only read. `knownBits`: the caller guarantees
 * that the first `knownBits` bits of every record are equal (0 when unknown).
 */
export function sortRecordsInto(src: Uint8Array, count: number, dst: Uint8Array, knownBits = 0): void {
  assert(Number.isInteger(count) && count >= 0, `record count: ${count}`);
  assert(src.length >= count * RECORD_BYTES, `src holds ${count} records`);
  assert(dst.length >= count * RECORD_BYTES, `dst holds ${count} records`);
  assert(Number.isInteger(knownBits) && knownBits >= 0 && knownBits <= RECORD_BITS, "knownBits");
  assert(src.buffer !== dst.buffer || disjoint(src, dst, count), "src and dst overlap");
  if (count === 0) return;
  ensureIndexCapacity(count);
  src8 = src;
  srcWords = src.byteOffset % 4 === 0;
  src32 = srcWords ? new Uint32Array(src.buffer, src.byteOffset, count * RECORD_WORDS) : EMPTY32;
  try {
    for (let p = 0; p < count; p++) order[p] = p;
    if (count > 1) sortRange(0, count, knownBits, 0);
    gather(dst, count);
  } finally {
    src8 = EMPTY8; // do not keep the caller's buffer alive
    src32 = EMPTY32;
  }
}

/**
 * Sort `count` records in src[0, count*100) in place; scratch (>= count*100 bytes,
 * not overlapping src) receives the sorted records on the way.
 */
export function sortRecords(src: Uint8Array, count: number, scratch: Uint8Array, knownBits = 0): void {
  assert(scratch.length >= count * RECORD_BYTES, `scratch holds ${count} records`);
  sortRecordsInto(src, count, scratch, knownBits);
  src.set(scratch.subarray(0, count * RECORD_BYTES));
}

function disjoint(x: Uint8Array, y: Uint8Array, count: number): boolean {
  const bytes = count * RECORD_BYTES;
  return x.byteOffset + bytes <= y.byteOffset || y.byteOffset + bytes <= x.byteOffset;
}

/**
 * Sort positions [lo, lo+n) of `order` by their records' bits from `bit` on; the
 * bits before `bit` are equal for all of them.
 */
function sortRange(lo: number, n: number, bit: number, level: number): void {
  assert(level < maxLevels, "radix recursion depth");
  let width = minDigitBits;
  for (;;) {
    if (n <= insertionMaxRecords) {
      insertionByRecords(lo, n, bit >>> 3);
      return;
    }
    width = digitBits(n);
    if (extractAndCount(lo, n, bit, width, level)) break;
    bit = nextBitAfterSharedDigit(lo, n, bit + width);
    if (bit >= RECORD_BITS) return; // identical records: any order is sorted
  }
  scatter(lo, n);
  const row = level * rowEntries;
  const values = 1 << width;
  assert(childStarts[row] === lo && childStarts[row + values] === lo + n, "child ranges cover the range");
  const next = bit + width;
  if (next >= RECORD_BITS) return; // every bit compared: each child holds identical records
  const tailByte = Math.min(RECORD_BYTES, (next + 32) >>> 3);
  for (let d = 0; d < values; d++) {
    const start = childStarts[row + d];
    const size = childStarts[row + d + 1] - start;
    if (size <= 1) continue;
    if (size <= insertionMaxRecords) insertionByKeys(start, size, tailByte);
    else sortRange(start, size, next, level + 1);
  }
}

/** Digit width for a range of n records: floor(log2 n) - 1, within 8..12 bits. */
function digitBits(n: number): number {
  const bits = 30 - Math.clz32(n); // floor(log2 n) - 1
  return Math.max(minDigitBits, Math.min(maxDigitBits, bits));
}

/**
 * For positions [lo, lo+n): the `width`-bit digit at `bit` and the 32 bits after it
 * of each record (bits past the record's end read as 0, the same for every record,
 * so order holds), the digit counts as this level's child starts. False when every
 * record has the same digit.
 */
function extractAndCount(lo: number, n: number, bit: number, width: number, level: number): boolean {
  const values = 1 << width;
  const mask = values - 1;
  cursors.fill(0, 0, values);
  // Digit: a 3-byte window (bit & 7) + width <= 19 bits. Key: a 5-byte window.
  const i = bit >>> 3;
  const shift = 24 - (bit & 7) - width;
  const keyBit = bit + width;
  const j = keyBit >>> 3;
  const keyShift = keyBit & 7;
  // Byte offsets clamped to the record, with masks that read past-the-end bytes as 0.
  const last = RECORD_BYTES - 1;
  const i0 = i;
  const i1 = Math.min(i + 1, last);
  const i2 = Math.min(i + 2, last);
  const j0 = Math.min(j, last);
  const j1 = Math.min(j + 1, last);
  const j2 = Math.min(j + 2, last);
  const j3 = Math.min(j + 3, last);
  const j4 = Math.min(j + 4, last);
  const m0 = 0xff;
  const m1 = i + 1 <= last ? 0xff : 0;
  const m2 = i + 2 <= last ? 0xff : 0;
  const n0 = j <= last ? 0xff : 0;
  const n1 = j + 1 <= last ? 0xff : 0;
  const n2 = j + 2 <= last ? 0xff : 0;
  const n3 = j + 3 <= last ? 0xff : 0;
  const n4 = j + 4 <= last ? 0xff : 0;
  const buf = src8;
  const end = lo + n;
  for (let p = lo; p < end; p++) {
    const r = order[p];
    orderBefore[p] = r;
    const o = r * RECORD_BYTES;
    const d =
      ((((buf[o + i0] & m0) << 16) | ((buf[o + i1] & m1) << 8) | (buf[o + i2] & m2)) >>> shift) & mask;
    digits[p] = d;
    cursors[d]++;
    const high =
      ((buf[o + j0] & n0) << 24) |
      ((buf[o + j1] & n1) << 16) |
      ((buf[o + j2] & n2) << 8) |
      (buf[o + j3] & n3);
    keysBefore[p] = ((high << keyShift) | ((buf[o + j4] & n4) >>> (8 - keyShift))) >>> 0;
  }
  const row = level * rowEntries;
  let start = lo;
  let largest = 0;
  for (let d = 0; d < values; d++) {
    const c = cursors[d];
    childStarts[row + d] = start;
    cursors[d] = start;
    start += c;
    if (c > largest) largest = c;
  }
  childStarts[row + values] = start;
  assert(start === lo + n, "digit counts add up to the range");
  return largest < n;
}

/** Move positions [lo, lo+n) to their digit's child range (cursors hold the starts). */
function scatter(lo: number, n: number): void {
  const end = lo + n;
  for (let p = lo; p < end; p++) {
    const q = cursors[digits[p]]++;
    order[q] = orderBefore[p];
    keys[q] = keysBefore[p];
  }
}

/**
 * Insertion sort of positions [lo, lo+n) by their 32-bit key words, then by the
 * record bytes from `tailByte` (the first byte not wholly inside the words).
 */
function insertionByKeys(lo: number, n: number, tailByte: number): void {
  const end = lo + n;
  for (let x = lo + 1; x < end; x++) {
    const k = keys[x];
    const r = order[x];
    let y = x;
    while (y > lo) {
      const kp = keys[y - 1];
      if (kp < k || (kp === k && compareFrom(order[y - 1], r, tailByte) <= 0)) break;
      keys[y] = kp;
      order[y] = order[y - 1];
      y--;
    }
    keys[y] = k;
    order[y] = r;
  }
}

/** Insertion sort of positions [lo, lo+n) by the record bytes from `fromByte`. */
function insertionByRecords(lo: number, n: number, fromByte: number): void {
  const end = lo + n;
  for (let x = lo + 1; x < end; x++) {
    const r = order[x];
    let y = x;
    while (y > lo && compareFrom(order[y - 1], r, fromByte) > 0) {
      order[y] = order[y - 1];
      y--;
    }
    order[y] = r;
  }
}

/** Compare records x and y (indices into src) from byte `fromByte` on. */
function compareFrom(x: number, y: number, fromByte: number): number {
  const buf = src8;
  const ox = x * RECORD_BYTES;
  const oy = y * RECORD_BYTES;
  for (let k = fromByte; k < RECORD_BYTES; k++) {
    const d = buf[ox + k] - buf[oy + k];
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Every record at positions [lo, lo+n) has the same digit, which ends before bit
 * `next`: return where the next digit should start, skipping every further byte all
 * of them share (RECORD_BITS when the records are identical).
 */
function nextBitAfterSharedDigit(lo: number, n: number, next: number): number {
  if (next >= RECORD_BITS) return RECORD_BITS;
  const fromByte = next >>> 3;
  const ref = order[lo];
  let differ = RECORD_BYTES;
  if (srcWords) {
    for (let p = lo + 1; p < lo + n && differ > fromByte; p++) {
      differ = firstDifferentByte(
        src32,
        ref * RECORD_WORDS,
        src32,
        order[p] * RECORD_WORDS,
        1,
        fromByte,
        differ,
      );
    }
  } else {
    const refOffset = ref * RECORD_BYTES;
    for (let p = lo + 1; p < lo + n && differ > fromByte; p++) {
      const o = order[p] * RECORD_BYTES;
      for (let k = fromByte; k < differ; k++) {
        if (src8[o + k] !== src8[refOffset + k]) {
          differ = k;
          break;
        }
      }
    }
  }
  return Math.max(next, differ * 8);
}

/**
 * The first byte index in [fromByte, limitByte) at which any of the `n` records
 * starting at word `bufWord` of `buf` differs from the reference record at word
 * `refWord` of `ref`; limitByte when none does. The caller guarantees the bytes
 * before fromByte are equal. Word-wise: 25 compares per identical record, and a
 * record stops at its first difference, so ordinary ranges exit after a few words.
 */
export function firstDifferentByte(
  ref: Uint32Array,
  refWord: number,
  buf: Uint32Array,
  bufWord: number,
  n: number,
  fromByte: number,
  limitByte: number,
): number {
  assert(fromByte >= 0 && fromByte <= limitByte && limitByte <= RECORD_BYTES, "byte bounds");
  const firstWord = fromByte >>> 2;
  let result = limitByte;
  let endWord = (limitByte + 3) >>> 2;
  const endBase = bufWord + n * RECORD_WORDS;
  for (let base = bufWord; base < endBase && result > fromByte; base += RECORD_WORDS) {
    for (let w = firstWord; w < endWord; w++) {
      const x = buf[base + w] ^ ref[refWord + w];
      if (x !== 0) {
        // Little-endian words: the lowest set byte is the earliest byte.
        const byte = w * 4 + ((31 - Math.clz32(x & -x)) >>> 3);
        assert(byte >= fromByte, "records differ before the bytes known equal");
        if (byte < result) result = byte;
        endWord = w + 1;
        break;
      }
    }
  }
  return result;
}

/** Copy every record once, in sorted order, into dst. */
function gather(dst: Uint8Array, count: number): void {
  if (srcWords && dst.byteOffset % 4 === 0) {
    const from = src32;
    const to = new Uint32Array(dst.buffer, dst.byteOffset, count * RECORD_WORDS);
    for (let p = 0; p < count; p++) {
      const f = order[p] * RECORD_WORDS;
      const t = p * RECORD_WORDS;
      for (let k = 0; k < RECORD_WORDS; k += 5) {
        to[t + k] = from[f + k];
        to[t + k + 1] = from[f + k + 1];
        to[t + k + 2] = from[f + k + 2];
        to[t + k + 3] = from[f + k + 3];
        to[t + k + 4] = from[f + k + 4];
      }
    }
  } else {
    const from = src8;
    for (let p = 0; p < count; p++) {
      const f = order[p] * RECORD_BYTES;
      const t = p * RECORD_BYTES;
      for (let k = 0; k < RECORD_BYTES; k++) dst[t + k] = from[f + k];
    }
  }
}

/** The functions the sort spends its time in, for JIT tuning (src/jit.ts). */
export const sortHotFunctions: ReadonlyArray<HotFunction> = [
  sortRecordsInto,
  sortRange,
  extractAndCount,
  scatter,
  insertionByKeys,
  insertionByRecords,
  compareFrom,
  nextBitAfterSharedDigit,
  gather,
];
