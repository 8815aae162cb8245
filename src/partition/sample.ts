/**
 * `--partition sample`: split the whole-record order into N ranges of about
 * equal size, whatever the key distribution (issue 11). Pure functions; the mesh
 * exchanges the samples.
 *
 * API, in the order a peer calls it:
 *
 *   sampleRecordsFor(peers): number
 *       How many records each peer samples (at most), so the samples every peer
 *       receives stay bounded as the cluster grows (bounds in limits.ts: a sample
 *       is at most sampleMaxRecords x 100 B = 409,600 B on the wire).
 *   drawSample(path, inputBytes, maxRecords): Uint8Array
 *       This peer's sample: whole records read with positioned reads at evenly
 *       spaced places over the file (not a pass over it); the whole input when it
 *       holds at most maxRecords records. Deterministic. Throws NetsortError naming
 *       the file if it cannot be read.
 *   chooseSplitters(samples, peers): Uint8Array
 *       samples[i] = { records: peer i's sample, inputRecords: peer i's input size },
 *       in peer order. Returns N-1 splitter records (100 bytes each), non-decreasing;
 *       every peer gets byte-identical splitters from the same samples. Throws
 *       NetsortError naming the peer whose sample is malformed.
 *   new Partitioner(self, outs, sink, splitters)  (partitioner.ts)
 *       Routes record r to the first peer i with r < splitters[i] (whole-record
 *       order), else to peer N-1: a record equal to splitters[i] goes to peer i+1.
 *       makeSplitterOwnerFn(splitters, peers) is that owner function.
 *   sampleRange(splitters, peer, peers): { rangeStart, rangeEnd }
 *       The 48-bit key prefixes [rangeStart, rangeEnd) of every record `peer` can
 *       receive: the range for its BucketStore.
 *   imbalanceWarning(receivedRecords, totalRecords, peers): string | null
 *       For the default bits mode: a one-line warning when this peer received
 *       more than imbalanceWarnShare x its fair share, else null.
 */

import { closeSync, openSync, readSync } from "node:fs";
import { assert, errorMessage, NetsortError } from "../errors.ts";
import { sampleMaxRecords, sampleMinRecords, sampleTotalMaxRecords } from "../limits.ts";
import { rangeStart as bitsRangeStart, MAX_PEERS, RECORD_BYTES } from "../record.ts";
import type { HotFunction } from "../types.ts";

/**
 * A sample is read at up to this many evenly spaced places, as runs of
 * consecutive records (256 places x 16 records = 4,096). Many places matter for
 * inputs that are partly sorted already: a place stands for 1/256 of the file,
 * so a split point is off by at most that much of each input.
 */
export const samplePlaces = 256;
/**
 * imbalanceWarning fires above this multiple of the fair share (total / peers):
 * uniform keys stay within a few percent of it, so 1.5x means the keys are skewed
 * and one peer is doing half again its part of the sort.
 */
export const imbalanceWarnShare = 1.5;
/** ...and only for shares of at least this many records (1 MB): below it, imbalance costs nothing visible. */
export const imbalanceMinRecords = 10_000;

const PREFIX_BYTES = 6;
/** The owner function's table is indexed by a record's first TABLE_BITS bits. */
const TABLE_BITS = 12;
const TABLE_SHIFT = 16 - TABLE_BITS;
/** Flips the sign bit, so signed compares of two biased words order them as unsigned. */
const SIGN_BIT = -2147483648;

/** Records each peer samples for a cluster of `peers`: sampleMaxRecords, fewer for big clusters. */
export function sampleRecordsFor(peers: number): number {
  assert(Number.isInteger(peers) && peers >= 1 && peers <= MAX_PEERS, `peers: ${peers}`);
  return Math.max(sampleMinRecords, Math.min(sampleMaxRecords, Math.floor(sampleTotalMaxRecords / peers)));
}

/**
 * Up to `maxRecords` records of the input at `path` (`inputBytes` long, whole
 * records), read as `places` runs of consecutive records at evenly spaced
 * offsets, the first run at the file's start and the last at its end. Inputs of
 * at most maxRecords records are returned whole.
 */
export function drawSample(path: string, inputBytes: number, maxRecords: number): Uint8Array {
  assert(Number.isInteger(inputBytes) && inputBytes >= 0 && inputBytes % RECORD_BYTES === 0, "whole records");
  assert(Number.isInteger(maxRecords) && maxRecords >= 1, `maxRecords: ${maxRecords}`);
  const inputRecords = inputBytes / RECORD_BYTES;
  const places = inputRecords <= maxRecords ? 1 : Math.min(samplePlaces, maxRecords);
  const runRecords = inputRecords <= maxRecords ? inputRecords : Math.floor(maxRecords / places);
  const sample = new Uint8Array(places * runRecords * RECORD_BYTES);
  if (sample.length === 0) return sample;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new NetsortError(`input ${path}: cannot open for sampling: ${errorMessage(error)}`);
  }
  try {
    const runBytes = runRecords * RECORD_BYTES;
    for (let k = 0; k < places; k++) {
      // Evenly spaced, never overlapping: the spacing (n - R) / (P - 1) exceeds R
      // because n > P * R here. Exact in doubles (< 2^53).
      const first = places === 1 ? 0 : Math.floor((k * (inputRecords - runRecords)) / (places - 1));
      readFully(fd, path, sample.subarray(k * runBytes, (k + 1) * runBytes), first * RECORD_BYTES);
    }
  } finally {
    closeSync(fd);
  }
  return sample;
}

/** Fill `into` from file position `position`, or fail naming the file (it shrank, or the read failed). */
function readFully(fd: number, path: string, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    let n: number;
    try {
      n = readSync(fd, into, done, into.length - done, position + done);
    } catch (error) {
      throw new NetsortError(
        `input ${path}: sampling read at byte ${position + done}: ${errorMessage(error)}`,
      );
    }
    if (n === 0) throw new NetsortError(`input ${path}: ended at byte ${position + done} while sampling`);
    done += n;
  }
}

export interface PeerSample {
  /** The peer's sample: whole records. */
  records: Uint8Array;
  /** Records in the peer's whole input (each sample record stands for inputRecords / sample size of them). */
  inputRecords: number;
}

/**
 * N-1 split points of the whole-record order, at the weighted quantiles i/N of
 * all samples together: each peer's sample records weigh inputRecords / sample
 * size, so a big input counts for more than a small one. Deterministic: the same
 * samples in the same order give byte-identical splitters on every peer.
 */
export function chooseSplitters(samples: ReadonlyArray<PeerSample>, peers: number): Uint8Array {
  assert(Number.isInteger(peers) && peers >= 1 && peers <= MAX_PEERS, `peers: ${peers}`);
  if (samples.length !== peers) {
    throw new NetsortError(`sampling: ${samples.length} samples for ${peers} peers`);
  }
  const splitters = new Uint8Array((peers - 1) * RECORD_BYTES);
  const counts = samples.map((s, i) => checkSample(s, i));
  const total = counts.reduce((a, b) => a + b, 0);
  let totalWeight = 0;
  for (const s of samples) totalWeight += s.inputRecords;
  if (total === 0) {
    // No records anywhere: the bits mode's boundaries (prefix, then zeros) will do.
    for (let i = 1; i < peers; i++) writePrefix(splitters, (i - 1) * RECORD_BYTES, bitsRangeStart(i, peers));
    return splitters;
  }

  // All sample records in one buffer, with each one's first 8 bytes as two
  // biased words for a fast compare, its weight, and an index order to sort.
  const all = new Uint8Array(total * RECORD_BYTES);
  const weight = new Float64Array(total);
  let at = 0;
  for (let p = 0; p < peers; p++) {
    const s = samples[p];
    all.set(s.records, at * RECORD_BYTES);
    const w = s.inputRecords / counts[p];
    for (let r = 0; r < counts[p]; r++) weight[at + r] = w;
    at += counts[p];
  }
  const hi = new Int32Array(total);
  const lo = new Int32Array(total);
  for (let r = 0; r < total; r++) {
    hi[r] = wordAt(all, r * RECORD_BYTES);
    lo[r] = wordAt(all, r * RECORD_BYTES + 4);
  }
  const order = Array.from({ length: total }, (_, r) => r);
  // A total order (ties between identical records broken by position), so the
  // result does not depend on the sort algorithm.
  order.sort((a, b) => {
    if (hi[a] !== hi[b]) return hi[a] < hi[b] ? -1 : 1;
    if (lo[a] !== lo[b]) return lo[a] < lo[b] ? -1 : 1;
    const d = compareFrom(all, a * RECORD_BYTES, all, b * RECORD_BYTES, 8);
    return d !== 0 ? d : a - b;
  });

  // Splitter i: the sample record where the cumulative weight before it is
  // nearest to i/N of the total. Records below it then number about i/N of all.
  let j = 0;
  let before = 0; // weight of order[0 .. j)
  for (let i = 1; i < peers; i++) {
    const target = (i * totalWeight) / peers;
    while (j < total && before + weight[order[j]] <= target) before += weight[order[j++]];
    // Now before <= target < before + weight[order[j]] (or j === total): take j,
    // or j + 1 when the target is past the middle of j's weight.
    let pick = j;
    if (j < total && target - before > weight[order[j]] / 2 && j + 1 < total) pick = j + 1;
    if (pick >= total) pick = total - 1;
    const from = order[pick] * RECORD_BYTES;
    splitters.set(all.subarray(from, from + RECORD_BYTES), (i - 1) * RECORD_BYTES);
  }
  return splitters;
}

/** The record count of peer i's sample; throws naming the peer when it is malformed. */
function checkSample(s: PeerSample, peer: number): number {
  const bytes = s.records.length;
  if (bytes % RECORD_BYTES !== 0) {
    throw new NetsortError(`sampling: peer ${peer}'s sample is ${bytes} bytes, not whole records`);
  }
  const count = bytes / RECORD_BYTES;
  const n = s.inputRecords;
  if (!Number.isSafeInteger(n) || n < count || (n > 0 && count === 0)) {
    throw new NetsortError(`sampling: peer ${peer} reports ${n} input records for a sample of ${count}`);
  }
  return count;
}

/**
 * The whole-record owner: the first i with record < splitters[i], else peers - 1.
 *
 * Fast path: a table indexed by the record's first TABLE_BITS bits (8 KB: it
 * stays in L1 while the loop copies records) holds the owner of every record
 * with those bits, unless a splitter has them too. Then, and only then, a binary
 * search among the splitters that do (searchSplitters) compares the first 8
 * bytes as two words, and the rest byte by byte only on a tie. For uniform keys
 * that is (N-1)/4096 of the records; 12 bits measured faster than 16 (a 256 KB
 * table falls out of cache next to the batches being filled).
 */
export function makeSplitterOwnerFn(
  splitters: Uint8Array,
  peers: number,
): (record: Uint8Array, offset: number) => number {
  assert(Number.isInteger(peers) && peers >= 1 && peers <= MAX_PEERS, `peers: ${peers}`);
  const count = peers - 1;
  assert(splitters.length === count * RECORD_BYTES, `${count} splitters: ${splitters.length} bytes`);
  if (count === 0) return () => 0;
  const bytes = splitters.slice();
  const hi = new Int32Array(count);
  const lo = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    hi[i] = wordAt(bytes, i * RECORD_BYTES);
    lo[i] = wordAt(bytes, i * RECORD_BYTES + 4);
    if (i > 0) {
      assert(compareFrom(bytes, (i - 1) * RECORD_BYTES, bytes, i * RECORD_BYTES, 0) <= 0, "splitters ascend");
    }
  }
  // For each table index v: the candidate owners run from the number of
  // splitters whose first TABLE_BITS bits are < v to the number whose bits are
  // <= v; where those agree, that is the owner, else -1.
  const size = 1 << TABLE_BITS;
  const owners = new Int16Array(size);
  const firstCandidate = new Int16Array(size);
  const lastCandidate = new Int16Array(size);
  let below = 0;
  for (let v = 0; v < size; v++) {
    while (below < count && tableIndexAt(bytes, below * RECORD_BYTES) < v) below++;
    let through = below;
    while (through < count && tableIndexAt(bytes, through * RECORD_BYTES) === v) through++;
    firstCandidate[v] = below;
    lastCandidate[v] = through;
    owners[v] = below === through ? below : -1;
  }
  const state: SplitterSearch = { hi, lo, bytes, firstCandidate, lastCandidate };
  // Only the table lookup inline: with the search in this closure too, the
  // partitioner's record loop measured ~15% slower (bench/partition-micro.ts).
  return (record, offset) => {
    const v = ((record[offset] << 8) | record[offset + 1]) >>> TABLE_SHIFT;
    const k = owners[v];
    return k >= 0 ? k : searchSplitters(state, record, offset, v);
  };
}

/** What the owner function's slow path needs: the splitters, and the candidates per table index. */
interface SplitterSearch {
  /** Each splitter's bytes 0-3 and 4-7 as biased words (wordAt). */
  hi: Int32Array;
  lo: Int32Array;
  bytes: Uint8Array;
  firstCandidate: Int16Array;
  lastCandidate: Int16Array;
}

/**
 * The owner of a record whose table entry `v` holds splitters: binary search
 * for the first splitter greater than the record among the candidates,
 * comparing the first 8 bytes as two words and the rest only on a tie.
 */
function searchSplitters(s: SplitterSearch, record: Uint8Array, offset: number, v: number): number {
  const rh = wordAt(record, offset);
  const rl = wordAt(record, offset + 4);
  const hi = s.hi;
  const lo = s.lo;
  let a = s.firstCandidate[v];
  let b = s.lastCandidate[v];
  while (a < b) {
    const mid = (a + b) >>> 1;
    let less: boolean;
    if (rh !== hi[mid]) less = rh < hi[mid];
    else if (rl !== lo[mid]) less = rl < lo[mid];
    else less = compareFrom(record, offset, s.bytes, mid * RECORD_BYTES, 8) < 0;
    if (less) b = mid;
    else a = mid + 1;
  }
  return a;
}

/**
 * The 48-bit prefixes [rangeStart, rangeEnd) of every record `peer` can receive:
 * records in [splitters[peer-1], splitters[peer]) of the whole-record order. A
 * record shares its prefix with a splitter on either side of it, so both ends'
 * prefixes are included: [prefix(splitters[peer-1]), prefix(splitters[peer]) + 1),
 * from 0 for the first peer and to 2^48 for the last. Never empty.
 */
export function sampleRange(
  splitters: Uint8Array,
  peer: number,
  peers: number,
): { rangeStart: number; rangeEnd: number } {
  assert(Number.isInteger(peers) && peers >= 1 && peers <= MAX_PEERS, `peers: ${peers}`);
  assert(Number.isInteger(peer) && peer >= 0 && peer < peers, `peer ${peer} of ${peers}`);
  assert(
    splitters.length === (peers - 1) * RECORD_BYTES,
    `${peers - 1} splitters: ${splitters.length} bytes`,
  );
  const rangeStart = peer === 0 ? 0 : prefixAt(splitters, (peer - 1) * RECORD_BYTES);
  const rangeEnd = peer === peers - 1 ? 2 ** 48 : prefixAt(splitters, peer * RECORD_BYTES) + 1;
  assert(rangeStart < rangeEnd, `sample range [${rangeStart}, ${rangeEnd}) of peer ${peer}`);
  return { rangeStart, rangeEnd };
}

/**
 * The bits mode's hint: null while this peer's share is within
 * imbalanceWarnShare x the fair share (total / peers), or too small to matter
 * (< imbalanceMinRecords); else one line for the log suggesting --partition sample.
 */
export function imbalanceWarning(
  receivedRecords: number,
  totalRecords: number,
  peers: number,
): string | null {
  assert(Number.isInteger(peers) && peers >= 1, `peers: ${peers}`);
  assert(
    receivedRecords >= 0 && totalRecords >= receivedRecords,
    `received ${receivedRecords} of ${totalRecords}`,
  );
  if (peers === 1 || receivedRecords < imbalanceMinRecords) return null;
  const fair = totalRecords / peers;
  if (receivedRecords <= imbalanceWarnShare * fair) return null;
  const times = (receivedRecords / fair).toFixed(1);
  const percent = ((100 * receivedRecords) / totalRecords).toFixed(1);
  return `this peer received ${receivedRecords} of ${totalRecords} records (${percent}%, ${times}x its fair share of ${Math.round(fair)}): the keys are not uniform, and --partition sample would balance them`;
}

/** The sample mode's slow path, for JIT tuning (src/jit.ts via partitionHotFunctions). */
export const sampleHotFunctions: ReadonlyArray<HotFunction> = [searchSplitters];

/** Bytes 0..5 of the record at `o` as an integer (exact in a double). */
function prefixAt(buf: Uint8Array, o: number): number {
  let p = 0;
  for (let i = 0; i < PREFIX_BYTES; i++) p = p * 256 + buf[o + i];
  return p;
}

/** Write a 48-bit prefix into bytes 0..5 of the record at `o` (the rest stays zero). */
function writePrefix(buf: Uint8Array, o: number, prefix: number): void {
  let p = prefix;
  for (let i = PREFIX_BYTES - 1; i >= 0; i--) {
    buf[o + i] = p % 256;
    p = Math.floor(p / 256);
  }
}

function tableIndexAt(buf: Uint8Array, o: number): number {
  return ((buf[o] << 8) | buf[o + 1]) >>> TABLE_SHIFT;
}

/** The big-endian u32 at `o`, sign bit flipped: signed order of these = unsigned order of the words. */
function wordAt(buf: Uint8Array, o: number): number {
  return ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) ^ SIGN_BIT;
}

/** memcmp of two records from byte `from` on: negative, 0 or positive. */
function compareFrom(a: Uint8Array, ao: number, b: Uint8Array, bo: number, from: number): number {
  for (let i = from; i < RECORD_BYTES; i++) {
    const d = a[ao + i] - b[bo + i];
    if (d !== 0) return d;
  }
  return 0;
}
