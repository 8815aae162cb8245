/**
 * MSD radix sort of 100-byte records, whole records moved (no index array), in
 * the order the output needs: key bytes as unsigned (memcmp), then the value bytes,
 * so equal keys come out in one deterministic order whatever their arrival order.
 *
 * Each level counts 8-12 bit digits taken at an arbitrary bit position (the caller
 * may know that the first bits are shared, e.g. inside one bucket of a key range,
 * so the first digit starts at the first bit that can vary) and scatters the range
 * into the other buffer; the levels ping-pong between the result buffer and the
 * scratch, so a cache-sized bucket costs about two moves per record: one scatter
 * into ~2,000 children of 2-3 records, then one insertion-sorted move back. A range
 * whose digit is the same for every record does not move: a word-wise scan finds
 * the first byte where any record differs and the sort jumps there, so all-equal
 * keys and millions of identical records cost a few linear passes, never one per
 * byte, and no range is ever comparison-sorted beyond `insertionMaxRecords`.
 */
import { assert } from "../errors.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";

/** Bits in a whole record: a range sorted up to here holds identical records. */
const RECORD_BITS = RECORD_BYTES * 8;
/**
 * Digits are 8 to 12 bits wide, floor(log2(range size)) - 1: a cache-sized bucket of
 * ~5,000 records splits into ~2,000 children of 2-3 records in one pass, which an
 * insertion sort finishes, while small ranges do not pay for big count arrays.
 */
const minDigitBits = 8;
const maxDigitBits = 12;
const rowEntries = (1 << maxDigitBits) + 1;
/** Ranges of at most this many records are finished by insertion sort. */
const insertionMaxRecords = 24;
/** Recursion depth bound: every level advances by >= 8 bits, plus a spare level. */
const maxLevels = RECORD_BITS / minDigitBits + 2;

/** Where each child range starts (record index), one row per level (1.6 MB, touched sparsely). */
const childStarts = new Int32Array(maxLevels * rowEntries);
/** Per-digit counts, then next free slot per digit during one scatter. */
const cursors = new Int32Array(1 << maxDigitBits);
/** Record indices of one small range, sorted by insertion. */
const leafOrder = new Int32Array(insertionMaxRecords);

// Records move as 25 u32 words, five per loop step: JSC runs that 2-3x faster
// than one word per step (~6-10 vs ~15-30 ns per record), and moves are what
// the sort costs. The word-wise comparisons read the words in platform order.
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "little-endian platform");

const EMPTY8: Uint8Array = new Uint8Array(0);
const EMPTY32: Uint32Array = new Uint32Array(0);

// The sort in progress (sorting is synchronous, so one set suffices): `a` holds
// the input and, at the end, the result; `s` is the scratch. With both 4-byte
// aligned records move as 25 u32 words, otherwise byte by byte.
let a8 = EMPTY8;
let a32 = EMPTY32;
let s8 = EMPTY8;
let s32 = EMPTY32;
let wordMoves = false;

/**
 * Sort `count` records in src[0, count*100) in place (scratch has >= count*100 bytes),
 * by key (memcmp order), and equal keys by the whole record (so output is
 * deterministic whatever the arrival order). `knownBits`: the caller guarantees that
 * the first `knownBits` bits of every record are equal (0 when unknown).
 */
export function sortRecords(src: Uint8Array, count: number, scratch: Uint8Array, knownBits = 0): void {
  assert(Number.isInteger(count) && count >= 0, `record count: ${count}`);
  assert(src.length >= count * RECORD_BYTES, `src holds ${count} records`);
  assert(scratch.length >= count * RECORD_BYTES, `scratch holds ${count} records`);
  assert(Number.isInteger(knownBits) && knownBits >= 0 && knownBits <= RECORD_BITS, "knownBits");
  assert(src.buffer !== scratch.buffer || disjoint(src, scratch, count), "src and scratch overlap");
  if (count <= 1) return;
  bind(src, scratch, count);
  try {
    sortInPlace(0, count, knownBits, 0);
  } finally {
    bind(EMPTY8, EMPTY8, 0); // do not keep the caller's buffers alive
  }
}

function disjoint(x: Uint8Array, y: Uint8Array, count: number): boolean {
  const bytes = count * RECORD_BYTES;
  return x.byteOffset + bytes <= y.byteOffset || y.byteOffset + bytes <= x.byteOffset;
}

function bind(a: Uint8Array, s: Uint8Array, count: number): void {
  a8 = a;
  s8 = s;
  wordMoves = a.byteOffset % 4 === 0 && s.byteOffset % 4 === 0;
  const words = count * RECORD_WORDS;
  a32 = wordMoves && count > 0 ? new Uint32Array(a.buffer, a.byteOffset, words) : EMPTY32;
  s32 = wordMoves && count > 0 ? new Uint32Array(s.buffer, s.byteOffset, words) : EMPTY32;
}

/** Records [lo, lo+n) are in `a`; sort them there. Bits before `bit` are equal. */
function sortInPlace(lo: number, n: number, bit: number, level: number): void {
  assert(level < maxLevels, "radix recursion depth");
  let width = minDigitBits;
  for (;;) {
    if (n <= insertionMaxRecords) {
      sortSmall(lo, n, bit, true);
      return;
    }
    width = digitBits(n);
    if (countDigits(a8, lo, n, bit, width, level)) break;
    bit = nextBitAfterSharedDigit(a8, a32, lo, n, bit + width);
    if (bit >= RECORD_BITS) return; // identical records: already sorted
  }
  scatter(a8, a32, s8, s32, lo, n, bit, width, level);
  recurseChildren(lo, n, bit, width, level, false);
}

/** Records [lo, lo+n) are in `s`; sort them into the same slots of `a`. */
function sortIntoResult(lo: number, n: number, bit: number, level: number): void {
  assert(level < maxLevels, "radix recursion depth");
  let width = minDigitBits;
  for (;;) {
    if (n <= insertionMaxRecords) {
      sortSmall(lo, n, bit, false);
      return;
    }
    width = digitBits(n);
    if (countDigits(s8, lo, n, bit, width, level)) break;
    bit = nextBitAfterSharedDigit(s8, s32, lo, n, bit + width);
    if (bit >= RECORD_BITS) {
      a8.set(s8.subarray(lo * RECORD_BYTES, (lo + n) * RECORD_BYTES), lo * RECORD_BYTES);
      return;
    }
  }
  scatter(s8, s32, a8, a32, lo, n, bit, width, level);
  recurseChildren(lo, n, bit, width, level, true);
}

/** After a scatter into `a` (childrenInResult) or into `s`, sort each child range. */
function recurseChildren(
  lo: number,
  n: number,
  bit: number,
  width: number,
  level: number,
  childrenInResult: boolean,
): void {
  const row = level * rowEntries;
  const values = 1 << width;
  assert(childStarts[row] === lo && childStarts[row + values] === lo + n, "child ranges cover the range");
  const next = bit + width;
  for (let d = 0; d < values; d++) {
    const start = childStarts[row + d];
    const size = childStarts[row + d + 1] - start;
    if (size === 0) continue;
    if (size === 1) {
      // Most children of a wide digit: no call, no sort.
      if (!childrenInResult) moveRecord(s8, s32, start, a8, a32, start);
    } else if (next >= RECORD_BITS) {
      // Every bit compared: the child's records are identical.
      if (!childrenInResult)
        a8.set(s8.subarray(start * RECORD_BYTES, (start + size) * RECORD_BYTES), start * RECORD_BYTES);
    } else if (size <= insertionMaxRecords) {
      sortSmall(start, size, next, childrenInResult);
    } else if (childrenInResult) {
      sortInPlace(start, size, next, level + 1);
    } else {
      sortIntoResult(start, size, next, level + 1);
    }
  }
}

/** Digit width for a range of n records: floor(log2 n) - 1, within 8..12 bits. */
function digitBits(n: number): number {
  const bits = 30 - Math.clz32(n); // floor(log2 n) - 1
  return Math.max(minDigitBits, Math.min(maxDigitBits, bits));
}

/**
 * Count the `width`-bit digit at `bit` of records [lo, lo+n) of `buf` into this
 * level's row of childStarts (as start offsets). False when every record has the
 * same digit. The digit is read from a 3-byte window; past the record's end the
 * window repeats the last byte, whose earlier bits are equal in any range sorted
 * that far and whose later bits are the digit's own higher bits, so order holds.
 */
function countDigits(
  buf: Uint8Array,
  lo: number,
  n: number,
  bit: number,
  width: number,
  level: number,
): boolean {
  const values = 1 << width;
  const mask = values - 1;
  cursors.fill(0, 0, values);
  const i = bit >>> 3;
  const j = Math.min(i + 1, RECORD_BYTES - 1);
  const k = Math.min(i + 2, RECORD_BYTES - 1);
  const shift = 24 - (bit & 7) - width;
  const end = (lo + n) * RECORD_BYTES;
  for (let o = lo * RECORD_BYTES; o < end; o += RECORD_BYTES) {
    cursors[(((buf[o + i] << 16) | (buf[o + j] << 8) | buf[o + k]) >>> shift) & mask]++;
  }
  const row = level * rowEntries;
  let start = lo;
  let largest = 0;
  for (let d = 0; d < values; d++) {
    const c = cursors[d];
    childStarts[row + d] = start;
    start += c;
    if (c > largest) largest = c;
  }
  childStarts[row + values] = start;
  assert(start === lo + n, "digit counts add up to the range");
  return largest < n;
}

/** Move records [lo, lo+n) from one buffer to the same range of the other, grouped by digit. */
function scatter(
  from8: Uint8Array,
  from32: Uint32Array,
  to8: Uint8Array,
  to32: Uint32Array,
  lo: number,
  n: number,
  bit: number,
  width: number,
  level: number,
): void {
  const values = 1 << width;
  const mask = values - 1;
  const row = level * rowEntries;
  for (let d = 0; d < values; d++) cursors[d] = childStarts[row + d];
  const i = bit >>> 3;
  const j = Math.min(i + 1, RECORD_BYTES - 1);
  const k = Math.min(i + 2, RECORD_BYTES - 1);
  const shift = 24 - (bit & 7) - width;
  const end = lo + n;
  if (wordMoves) {
    for (let r = lo; r < end; r++) {
      const o = r * RECORD_BYTES;
      const digit = (((from8[o + i] << 16) | (from8[o + j] << 8) | from8[o + k]) >>> shift) & mask;
      const dst = cursors[digit]++ * RECORD_WORDS;
      const src = r * RECORD_WORDS;
      for (let k = 0; k < RECORD_WORDS; k += 5) {
        to32[dst + k] = from32[src + k];
        to32[dst + k + 1] = from32[src + k + 1];
        to32[dst + k + 2] = from32[src + k + 2];
        to32[dst + k + 3] = from32[src + k + 3];
        to32[dst + k + 4] = from32[src + k + 4];
      }
    }
  } else {
    for (let r = lo; r < end; r++) {
      const o = r * RECORD_BYTES;
      const digit = (((from8[o + i] << 16) | (from8[o + j] << 8) | from8[o + k]) >>> shift) & mask;
      const dst = cursors[digit]++ * RECORD_BYTES;
      for (let b = 0; b < RECORD_BYTES; b++) to8[dst + b] = from8[o + b];
    }
  }
}

/**
 * Every record of [lo, lo+n) has the same digit, which ends before bit `next`:
 * return where the next digit should start, skipping every further byte all of
 * them share (RECORD_BITS when the records are identical).
 */
function nextBitAfterSharedDigit(
  buf8: Uint8Array,
  buf32: Uint32Array,
  lo: number,
  n: number,
  next: number,
): number {
  if (next >= RECORD_BITS) return RECORD_BITS;
  const firstByte = next >>> 3;
  const differ = wordMoves
    ? firstDifferentByte(buf32, lo * RECORD_WORDS, buf32, lo + 1, n - 1, firstByte, RECORD_BYTES)
    : firstDifferentByteSlow(buf8, lo, n, firstByte);
  return Math.max(next, differ * 8);
}

/**
 * The first byte index in [fromByte, limitByte) at which any of the `n` records
 * starting at record index `lo` of `buf` differs from the reference record at word
 * `refWord` of `ref`; limitByte when none does. The caller guarantees the bytes
 * before fromByte are equal. Word-wise: 25 compares per identical record, and a
 * record stops at its first difference, so ordinary ranges exit after a few words.
 */
export function firstDifferentByte(
  ref: Uint32Array,
  refWord: number,
  buf: Uint32Array,
  lo: number,
  n: number,
  fromByte: number,
  limitByte: number,
): number {
  assert(fromByte >= 0 && fromByte <= limitByte && limitByte <= RECORD_BYTES, "byte bounds");
  const firstWord = fromByte >>> 2;
  let result = limitByte;
  let endWord = (limitByte + 3) >>> 2;
  const end = lo + n;
  for (let r = lo; r < end && result > fromByte; r++) {
    const base = r * RECORD_WORDS;
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

function firstDifferentByteSlow(buf: Uint8Array, lo: number, n: number, fromByte: number): number {
  let result = RECORD_BYTES;
  const ref = lo * RECORD_BYTES;
  for (let r = lo + 1; r < lo + n && result > fromByte; r++) {
    const o = r * RECORD_BYTES;
    for (let k = fromByte; k < result; k++) {
      if (buf[o + k] !== buf[ref + k]) {
        result = k;
        break;
      }
    }
  }
  return result;
}

/**
 * Insertion sort of [lo, lo+n) by record index, comparing from the byte that holds
 * `bit`, then move the records into `a` in order: from `s` (one copy) or, when they
 * already are in `a` and out of order, through `s` and back.
 */
function sortSmall(lo: number, n: number, bit: number, inResult: boolean): void {
  assert(n <= insertionMaxRecords, "small range");
  const buf = inResult ? a8 : s8;
  const fromByte = bit >>> 3;
  let moved = false;
  for (let x = 0; x < n; x++) {
    const rec = lo + x;
    let y = x;
    while (y > 0 && compareFrom(buf, leafOrder[y - 1], rec, fromByte) > 0) {
      leafOrder[y] = leafOrder[y - 1];
      y--;
    }
    leafOrder[y] = rec;
    if (y !== x) moved = true;
  }
  if (inResult) {
    if (!moved) return;
    for (let x = 0; x < n; x++) moveRecord(a8, a32, leafOrder[x], s8, s32, lo + x);
    for (let x = lo; x < lo + n; x++) moveRecord(s8, s32, x, a8, a32, x);
  } else {
    for (let x = 0; x < n; x++) moveRecord(s8, s32, leafOrder[x], a8, a32, lo + x);
  }
}

/** Compare records x and y of buf (record indices) from byte `fromByte` on. */
function compareFrom(buf: Uint8Array, x: number, y: number, fromByte: number): number {
  const ox = x * RECORD_BYTES;
  const oy = y * RECORD_BYTES;
  for (let k = fromByte; k < RECORD_BYTES; k++) {
    const d = buf[ox + k] - buf[oy + k];
    if (d !== 0) return d;
  }
  return 0;
}

function moveRecord(
  from8: Uint8Array,
  from32: Uint32Array,
  fromRec: number,
  to8: Uint8Array,
  to32: Uint32Array,
  toRec: number,
): void {
  if (wordMoves) {
    const f = fromRec * RECORD_WORDS;
    const t = toRec * RECORD_WORDS;
    for (let k = 0; k < RECORD_WORDS; k += 5) {
      to32[t + k] = from32[f + k];
      to32[t + k + 1] = from32[f + k + 1];
      to32[t + k + 2] = from32[f + k + 2];
      to32[t + k + 3] = from32[f + k + 3];
      to32[t + k + 4] = from32[f + k + 4];
    }
  } else {
    const f = fromRec * RECORD_BYTES;
    const t = toRec * RECORD_BYTES;
    for (let k = 0; k < RECORD_BYTES; k++) to8[t + k] = from8[f + k];
  }
}
