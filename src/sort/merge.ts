/**
 * The k-way merge of sorted runs: whole-record order (memcmp of all 100 bytes),
 * so merging runs of a sort gives byte for byte what sorting all their records
 * at once gives (equal records are identical bytes: their order cannot show).
 *
 * A loser tree picks the smallest head among k sources with about log2(k)
 * comparisons per record; each head's first 4 key bytes are kept as a number, so
 * most comparisons are one number compare, and ties go on word by word. Sources
 * hand over pieces of whole records (a spilled run read through one bounded
 * buffer, or the pieces of an in-memory store); the merge reads each piece in
 * place and copies every record once, into one output buffer it yields when full.
 */
import { assert } from "../errors.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";
import type { ScratchFile } from "./scratch.ts";

/** Sorted records in pieces: each non-empty, whole records, 4-byte aligned, valid until the next call; null at the end. */
export interface SortedSource {
  next(): Uint8Array | null;
}

/** A head key prefix above every real one (they are 32-bit): the source is exhausted. */
const EXHAUSTED = 2 ** 32;

/** A spilled run read back in order through `buf` (a multiple of 100 bytes, reused for every read). */
export function fileRunSource(file: ScratchFile, buf: Uint8Array): SortedSource {
  assert(buf.length >= RECORD_BYTES && buf.length % RECORD_BYTES === 0, "run buffer holds whole records");
  assert(file.bytes % RECORD_BYTES === 0, "a run holds whole records");
  let position = 0;
  return {
    next() {
      if (position >= file.bytes) return null;
      const want = Math.min(buf.length, file.bytes - position);
      const got = file.readAt(buf, want, position);
      assert(got === want, `spilled run: read ${got} of ${want} bytes at ${position}`);
      position += got;
      return buf.subarray(0, got);
    },
  };
}

/** Pieces from an iterator (BucketStore.sortedRuns()), skipping empty ones. */
export function piecesSource(pieces: Iterator<Uint8Array>): SortedSource {
  return {
    next() {
      for (;;) {
        const r = pieces.next();
        if (r.done) return null;
        if (r.value.length > 0) return r.value;
      }
    },
  };
}

/** The merge in progress: per source, its piece (bytes and words), head record and head prefix. */
class Heads {
  readonly k: number;
  readonly bufs8: Uint8Array[];
  readonly bufs32: Uint32Array[];
  /** Head record's first word in bufs32[s]; one past the piece's last word. */
  readonly word: Int32Array;
  readonly endWord: Int32Array;
  /** The head's first 4 bytes as a big-endian number, or EXHAUSTED. */
  readonly prefix: Float64Array;
  /** tree[0]: the smallest head's source; tree[n], n >= 1: the loser at node n (leaves are k..2k-1). */
  readonly tree: Int32Array;
  records = 0;

  constructor(readonly sources: SortedSource[]) {
    const k = sources.length;
    this.k = k;
    this.bufs8 = new Array<Uint8Array>(k);
    this.bufs32 = new Array<Uint32Array>(k);
    this.word = new Int32Array(k);
    this.endWord = new Int32Array(k);
    this.prefix = new Float64Array(k);
    this.tree = new Int32Array(Math.max(1, k));
    for (let s = 0; s < k; s++) this.load(s);
    // Build bottom-up: winner[n] is the smallest head below node n.
    const winner = new Int32Array(2 * k);
    for (let s = 0; s < k; s++) winner[k + s] = s;
    for (let n = k - 1; n >= 1; n--) {
      const a = winner[2 * n];
      const b = winner[2 * n + 1];
      if (less(this, b, a)) {
        winner[n] = b;
        this.tree[n] = a;
      } else {
        winner[n] = a;
        this.tree[n] = b;
      }
    }
    this.tree[0] = k === 1 ? 0 : winner[1];
  }

  /** Source s's current piece is used up: take its next one, or mark it exhausted. */
  load(s: number): void {
    const piece = this.sources[s].next();
    if (piece === null) {
      this.prefix[s] = EXHAUSTED;
      this.bufs8[s] = EMPTY8;
      this.bufs32[s] = EMPTY32;
      this.word[s] = 0;
      this.endWord[s] = 0;
      return;
    }
    assert(piece.length > 0 && piece.length % RECORD_BYTES === 0, `merge piece of ${piece.length} B`);
    assert(piece.byteOffset % 4 === 0, "merge pieces are word aligned");
    this.bufs8[s] = piece;
    this.bufs32[s] = new Uint32Array(piece.buffer, piece.byteOffset, piece.length / 4);
    this.word[s] = 0;
    this.endWord[s] = piece.length / 4;
    this.prefix[s] = headPrefix(piece, 0);
  }
}

const EMPTY8 = new Uint8Array(0);
const EMPTY32 = new Uint32Array(0);

function headPrefix(buf: Uint8Array, o: number): number {
  return ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
}

/** Is source a's head record before source b's (whole-record order; exhausted sources last)? */
function less(h: Heads, a: number, b: number): boolean {
  const pa = h.prefix[a];
  const pb = h.prefix[b];
  if (pa !== pb) return pa < pb;
  if (pa === EXHAUSTED) return false;
  return compareAfterPrefix(h.bufs8[a], h.bufs32[a], h.word[a], h.bufs8[b], h.bufs32[b], h.word[b]) < 0;
}

/** Compare two records whose first 4 bytes are equal: word by word, then the first differing byte. */
function compareAfterPrefix(
  a8: Uint8Array,
  a32: Uint32Array,
  wa: number,
  b8: Uint8Array,
  b32: Uint32Array,
  wb: number,
): number {
  for (let w = 1; w < RECORD_WORDS; w++) {
    const x = a32[wa + w] ^ b32[wb + w];
    if (x !== 0) {
      // Little-endian words: the lowest set byte of the difference is the earliest byte.
      const byte = w * 4 + ((31 - Math.clz32(x & -x)) >>> 3);
      return a8[wa * 4 + byte] - b8[wb * 4 + byte];
    }
  }
  return 0;
}

/** Source s's head changed: play it up the tree against the losers on its path. */
function replay(h: Heads, s: number): void {
  const tree = h.tree;
  let w = s;
  for (let n = (s + h.k) >>> 1; n > 0; n >>>= 1) {
    const t = tree[n];
    if (less(h, t, w)) {
      tree[n] = w;
      w = t;
    }
  }
  tree[0] = w;
}

/** Move up to `maxRecords` of the smallest heads into out32 from word 0; returns how many (fewer only at the end). */
function fill(h: Heads, out32: Uint32Array, maxRecords: number): number {
  const word = h.word;
  const endWord = h.endWord;
  const prefix = h.prefix;
  const tree = h.tree;
  let n = 0;
  while (n < maxRecords) {
    const s = tree[0];
    if (prefix[s] === EXHAUSTED) break;
    const src = h.bufs32[s];
    const f = word[s];
    const t = n * RECORD_WORDS;
    for (let i = 0; i < RECORD_WORDS; i += 5) {
      out32[t + i] = src[f + i];
      out32[t + i + 1] = src[f + i + 1];
      out32[t + i + 2] = src[f + i + 2];
      out32[t + i + 3] = src[f + i + 3];
      out32[t + i + 4] = src[f + i + 4];
    }
    n++;
    const next = f + RECORD_WORDS;
    if (next === endWord[s]) {
      h.load(s);
    } else {
      word[s] = next;
      prefix[s] = headPrefix(h.bufs8[s], next * 4);
    }
    if (h.k > 1) replay(h, s);
  }
  h.records += n;
  return n;
}

/**
 * Merge sorted sources into one sorted stream, yielded as views of `out` (whole
 * records, 4-byte aligned), each valid until the next iteration. Reads each
 * source one piece at a time, so the memory is `out` plus one piece per source.
 */
export function* mergeSorted(sources: SortedSource[], out: Uint8Array): Generator<Uint8Array> {
  assert(sources.length >= 1, "merge of at least one source");
  assert(out.length >= RECORD_BYTES && out.length % RECORD_BYTES === 0, "merge output holds whole records");
  assert(out.byteOffset % 4 === 0, "merge output is word aligned");
  const heads = new Heads(sources);
  const out32 = new Uint32Array(out.buffer, out.byteOffset, out.length / 4);
  const outRecords = out.length / RECORD_BYTES;
  for (;;) {
    const n = fill(heads, out32, outRecords);
    if (n > 0) yield out.subarray(0, n * RECORD_BYTES);
    if (n < outRecords) return;
  }
}

/** The functions the merge spends its time in, for JIT tuning (src/jit.ts). */
export const mergeHotFunctions: ReadonlyArray<HotFunction> = [
  fill,
  replay,
  less,
  compareAfterPrefix,
  headPrefix,
];
