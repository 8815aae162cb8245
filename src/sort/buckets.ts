/**
 * The first radix pass, done while batches arrive: every received record is
 * copied into one of B buckets by its key bits just below this peer's range, so
 * when the last stream ends only cache-sized per-bucket sorts remain
 * (docs/architecture.md "Pipeline", docs/runtime-notes.md "Sorting 100-byte records").
 *
 * Storage: fixed-size blocks (32,700 B) carved from 2 MiB chunks, one singly
 * linked list of blocks per bucket; no allocation per record or per batch. A
 * bucket that still came out big (skewed keys, or an expectedRecords far too low)
 * is split again by its next digit into fresh block lists before sorting, reusing
 * the blocks it frees, so every sort runs on at most `splitAboveRecords` records
 * and the run + bucket buffers stay small whatever the key distribution.
 *
 * Giving memory back: consecutive buckets form groups (~32 MiB of expected data
 * each) whose blocks come from the group's own chunks, and each chunk is one
 * huge page. When the caller has consumed a group's last run, the group's chunks
 * go back to the kernel whole (MADV_DONTNEED, src/mem.ts), so the page cache the
 * output is written into reuses those frames instead of faulting in fresh ones
 * (the C baseline's write of 1 GiB fell from 1.2-1.6 s to 0.13 s with the same
 * change; docs/performance.md). After the last run nothing is left to release.
 *
 * Draining early (key-range rounds): sortedRunsBelow(mark) sorts and hands out
 * the leading buckets that can receive nothing more, while add() goes on filling
 * the later ones; their chunks stay with the pool, so later buckets reuse them
 * instead of faulting in fresh memory. A record for a drained bucket is a bug
 * upstream (an assertion, like a record outside the range). sortedRuns() while a
 * drain is between pieces (a spill, while the caller writes a drained run) gives
 * that drain's other runs first, in fresh sort buffers, and the drain then ends.
 *
 * Memory, for D bytes held: the chunks hold D plus at most one partly filled block
 * per non-empty bucket (B buckets, B about expectedBytes / 512 KiB: ~3% of the
 * expected bytes), one partly filled chunk per group (resident whole with huge
 * pages: at most 2 MiB per ~32 MiB group, ~3-6%), and 0.2% of unused chunk tails.
 * Slabs of 4-64 MiB hold the chunks (a quarter of the expected data or half of
 * what is held at a time); a slab's not-yet-carved chunks are never touched, so
 * they cost address space, not RAM. A split keeps up to 256 partly filled blocks
 * per nested level (8 MB) and reuses the blocks it has read. The sort adds one
 * run and one bucket buffer of at most ~2 MiB each. Peak: about 1.1 x D.
 */

import { assert } from "../errors.ts";
import { hugeBuffer } from "../mem.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";
import {
  BlockPool,
  chunkBytes,
  DIGIT_VALUES,
  ListSet,
  maxBuckets,
  maxSlabChunks,
  maxSplitLevels,
  minBuckets,
  minSlabChunks,
  splitAboveRecords,
  stagingRecords,
  TWO_POW_16,
  TWO_POW_32,
  TWO_POW_48,
  targetBucketBytes,
  targetGroupBytes,
} from "./blocks.ts";
import { firstDifferentByte, sortRecordsInto } from "./radix.ts";

export interface BucketStoreOptions {
  /** This peer's key range as 48-bit prefixes (first 6 key bytes as an unsigned integer): [rangeStart, rangeEnd). From record.ts rangeStart()/rangeEnd(). Doubles, exact (< 2^53). */
  rangeStart: number;
  rangeEnd: number;
  /** Rough number of records expected (e.g. input size / 100); picks the bucket count so an average bucket is ~cache sized (256 KiB - 1 MiB). May be 0. */
  expectedRecords: number;
}

export class BucketStore {
  private readonly rangeStart: number;
  private readonly rangeEnd: number;
  /**
   * Bucket b holds the records whose first 32 key bits p32 have
   * p32 >>> bucketShift === firstBlock + b: aligned blocks of 2^bucketShift values,
   * so finding a bucket is one shift and every bucket's shared leading bits are
   * known exactly (firstVaryingBit). The range's first 32 bits lie in [base32, last32].
   */
  private readonly base32: number;
  private readonly last32: number;
  private readonly bucketShift: number;
  private readonly firstBlock: number;
  private readonly bucketCount: number;
  /** Records whose first 32 bits lie outside (edgeLow32, edgeHigh32) get an exact 48-bit range check. */
  private edgeLow32: number;
  private readonly edgeHigh32: number;
  /** The least 48-bit prefix add() still takes: rangeStart, raised as leading buckets drain. */
  private lowest48: number;
  /** Buckets [0, drained) are sorted and handed out. */
  private drained = 0;
  /** Records handed out since the store was (re)filled, counted as each run is yielded. */
  private yielded = 0;
  /** The sort's buffers: made by the first sort, kept for the store's life (the spill reuses them too). */
  private sorter: RunSorter | null = null;
  /** The runs still to come of a sortedRunsBelow() that is between pieces (its caller holds the last one). */
  private drainRest: Generator<Uint8Array> | null = null;
  private readonly pool: BlockPool;
  private lists: ListSet;
  /** Buckets b and b' share pool group b >>> groupShift: groups of consecutive buckets. */
  private readonly groupShift: number;
  private staging: Uint8Array | null = null;
  /**
   * Called once per block while one big list is scanned or split: with skewed
   * keys a single bucket can hold most of the share, and sorting it is a long
   * synchronous stretch before its first run comes out (see SpillingStore.onBusy).
   */
  onBusy: (() => void) | null = null;
  private recordCount = 0;
  private sealed = false;

  constructor(options: BucketStoreOptions) {
    const { rangeStart, rangeEnd, expectedRecords } = options;
    assert(Number.isInteger(rangeStart) && Number.isInteger(rangeEnd), "range bounds are integers");
    assert(
      0 <= rangeStart && rangeStart < rangeEnd && rangeEnd <= TWO_POW_48,
      `range [${rangeStart}, ${rangeEnd})`,
    );
    assert(Number.isInteger(expectedRecords) && expectedRecords >= 0, `expectedRecords: ${expectedRecords}`);
    this.rangeStart = rangeStart;
    this.rangeEnd = rangeEnd;
    this.base32 = Math.floor(rangeStart / TWO_POW_16);
    this.last32 = Math.floor((rangeEnd - 1) / TWO_POW_16);
    this.edgeLow32 = this.base32;
    this.edgeHigh32 = this.last32;
    this.lowest48 = rangeStart;

    const expectedBytes = expectedRecords * RECORD_BYTES;
    let wanted = 2 ** Math.round(Math.log2(Math.max(1, expectedBytes / targetBucketBytes)));
    wanted = Math.min(maxBuckets, Math.max(minBuckets, wanted));
    // The narrowest aligned blocks that give at most `wanted` buckets: between
    // wanted/2 and wanted of them (exactly `wanted` when the range is a power-of-two
    // fraction of the key space, as with 2^n peers).
    let shift = 0;
    while ((this.last32 >>> shift) - (this.base32 >>> shift) + 1 > wanted) shift++;
    this.bucketShift = shift;
    this.firstBlock = this.base32 >>> shift;
    const buckets = (this.last32 >>> shift) - this.firstBlock + 1;
    assert(buckets >= 1 && buckets <= maxBuckets, `bucket count ${buckets}`);
    this.bucketCount = buckets;
    const wantedGroups = 2 ** Math.round(Math.log2(Math.max(1, expectedBytes / targetGroupBytes)));
    this.groupShift = Math.max(0, Math.floor(Math.log2(buckets / wantedGroups)));
    // Slabs of a quarter of the expected data: a handful of allocations in all.
    this.pool = new BlockPool(
      this.groups,
      Math.min(maxSlabChunks, Math.max(minSlabChunks, Math.ceil(expectedBytes / 4 / chunkBytes))),
    );
    const groupShift = this.groupShift;
    this.lists = new ListSet(this.pool, buckets, (b) => b >>> groupShift);
  }

  /** Records added so far (since the last reset). */
  get records(): number {
    return this.recordCount;
  }

  /** Records held now: added and not handed out yet. */
  get heldRecords(): number {
    return this.recordCount - this.yielded;
  }

  /** Buckets in use (for logs and tests). */
  get buckets(): number {
    return this.bucketCount;
  }

  /** Bytes of slab memory allocated so far (for logs and benchmarks). */
  get slabBytes(): number {
    return this.pool.bytes;
  }

  /**
   * Bytes of chunks holding records now (taken and not yet given back): the
   * records plus their partly filled blocks and chunks. A spilling store
   * (src/sort/spill.ts) compares this with its budget.
   */
  get heldBytes(): number {
    return this.pool.chunksInUse * chunkBytes;
  }

  /**
   * After sortedRuns() has been consumed to the end: empty again, ready for
   * add(), keeping the pool's chunks (given back to the kernel, reused before any
   * new one is carved), so a spilling store refills the same memory run after run
   * instead of leaving whole slabs to the garbage collector.
   */
  reset(): void {
    assert(this.sealed, "reset before sortedRuns");
    assert(this.pool.chunksInUse === 0, `reset with ${this.pool.chunksInUse} chunks in use`);
    const groupShift = this.groupShift;
    this.lists = new ListSet(this.pool, this.bucketCount, (b) => b >>> groupShift);
    this.recordCount = 0;
    this.yielded = 0;
    this.sealed = false;
  }

  /** Bytes handed back to the kernel so far by the sort (0 where giveBack is a no-op). */
  get givenBackBytes(): number {
    return this.pool.givenBackBytes;
  }

  /** Groups of consecutive buckets that share memory and give it back together (for tests). */
  get groups(): number {
    return ((this.bucketCount - 1) >>> this.groupShift) + 1;
  }

  /**
   * Copy the whole records in buf[offset, offset+length) (length a multiple of 100)
   * into their buckets. The caller reuses buf afterwards. A record outside the range
   * fails an assertion (a bug upstream).
   */
  add(buf: Uint8Array, offset: number, length: number): void {
    assert(!this.sealed, "add after sortedRuns");
    assert(Number.isInteger(offset) && Number.isInteger(length), "integer offset and length");
    assert(
      offset >= 0 && length >= 0 && offset + length <= buf.length,
      `batch [${offset}, +${length}) in ${buf.length} B`,
    );
    assert(length % RECORD_BYTES === 0, `batch of whole records: ${length} B`);
    if (length === 0) return;
    const start = buf.byteOffset + offset;
    if (start % 4 === 0) {
      this.addAligned(
        new Uint8Array(buf.buffer, start, length),
        new Uint32Array(buf.buffer, start, length / 4),
      );
    } else {
      // Word copies need 4-byte alignment: memcpy pieces into an aligned buffer first.
      if (this.staging === null) this.staging = new Uint8Array(stagingRecords * RECORD_BYTES);
      const staging = this.staging;
      const staging32 = new Uint32Array(staging.buffer, 0, staging.length / 4);
      for (let done = 0; done < length; ) {
        const piece = Math.min(length - done, staging.length);
        staging.set(buf.subarray(offset + done, offset + done + piece));
        this.addAligned(staging, staging32, piece / RECORD_BYTES);
        done += piece;
      }
    }
  }

  /** The hot loop: src8/src32 view the same 4-aligned records; `count` of them (default all). */
  private addAligned(src8: Uint8Array, src32: Uint32Array, count = src8.length / RECORD_BYTES): void {
    const shift = this.bucketShift;
    const firstBlock = this.firstBlock;
    const edgeLow32 = this.edgeLow32;
    const edgeHigh32 = this.edgeHigh32;
    const lists = this.lists;
    const writeWord = lists.writeWord;
    const endWord = lists.endWord;
    const writeSlab = lists.writeSlab;
    for (let r = 0; r < count; r++) {
      const o = r * RECORD_BYTES;
      const p32 = ((src8[o] << 24) | (src8[o + 1] << 16) | (src8[o + 2] << 8) | src8[o + 3]) >>> 0;
      // In range after this check (exact at the ends), so b is a valid bucket.
      if (p32 <= edgeLow32 || p32 >= edgeHigh32) this.checkEdge(src8, o, p32);
      const b = (p32 >>> shift) - firstBlock;
      let w = writeWord[b];
      if (w === endWord[b]) w = lists.grow(b);
      const slab = writeSlab[b];
      const s = r * RECORD_WORDS;
      // A plain word loop: here it measured faster than five words per step.
      for (let k = 0; k < RECORD_WORDS; k++) slab[w + k] = src32[s + k];
      writeWord[b] = w + RECORD_WORDS;
    }
    this.recordCount += count;
  }

  /** The exact 48-bit range check for records near either end of the range. */
  private checkEdge(src8: Uint8Array, o: number, p32: number): void {
    const p48 = p32 * TWO_POW_16 + ((src8[o + 4] << 8) | src8[o + 5]);
    // The message only on failure: a narrow range (--partition sample on skewed
    // keys: one 6-byte prefix) sends every record here, and building the string
    // per record cost more than the copy.
    if (this.lowest48 <= p48 && p48 < this.rangeEnd) return;
    assert(
      this.rangeStart > p48 || p48 >= this.rangeEnd,
      `record with 48-bit prefix ${p48} arrived after its part of the range was sorted (below ${this.lowest48})`,
    );
    assert(
      false,
      `record with 48-bit prefix ${p48} outside this peer's range [${this.rangeStart}, ${this.rangeEnd})`,
    );
  }

  /**
   * Sort each bucket and yield its records as contiguous sorted Uint8Arrays, in key
   * order; a yielded view is valid only until the next iteration (buffers are
   * reused). Empty buckets are skipped; a bucket bigger than ~2 MiB comes out as
   * several runs. After sortedRunsBelow() calls, only the buckets not drained yet.
   * The concatenation of all yields is the fully sorted share.
   * Call once (per reset): the store is consumed.
   */
  *sortedRuns(): Generator<Uint8Array> {
    assert(!this.sealed, "sortedRuns called twice");
    this.sealed = true;
    const drainRest = this.drainRest;
    if (drainRest !== null) {
      // A drain is between pieces (a spill came while its caller writes one): its
      // other runs come first, and it then ends. Sorted in new buffers: the run in
      // the caller's hands stays valid (one more pair of buffers until it is done).
      this.drainRest = null;
      this.sorter = null;
      yield* drainRest;
    }
    yield* this.sortBuckets(this.drained, this.bucketCount, true);
    assert(this.yielded === this.recordCount, `yielded ${this.yielded} of ${this.recordCount} records`);
  }

  /**
   * Sort and yield, as sortedRuns does, the leading buckets that hold only keys
   * whose 48-bit prefix is below `mark48` (nothing more can arrive for them),
   * from where the last call stopped. add() may go on meanwhile for later keys.
   */
  *sortedRunsBelow(mark48: number): Generator<Uint8Array> {
    assert(!this.sealed, "sortedRunsBelow after sortedRuns");
    let end = this.drained;
    while (end < this.bucketCount && (this.bucketLast32(end) + 1) * TWO_POW_16 <= mark48) end++;
    if (end === this.drained) return;
    // Records below the last drained bucket's end are refused from now on.
    const next32 = this.bucketLast32(end - 1) + 1;
    this.lowest48 = Math.max(this.lowest48, next32 * TWO_POW_16);
    this.edgeLow32 = Math.max(this.edgeLow32, next32);
    const from = this.drained;
    this.drained = end;
    const runs = this.sortBuckets(from, end, false);
    this.drainRest = runs;
    try {
      yield* runs;
    } finally {
      if (this.drainRest === runs) this.drainRest = null;
    }
  }

  /** The largest first-32-bit value bucket b can hold. */
  private bucketLast32(b: number): number {
    return Math.min(this.last32, (this.firstBlock + b + 1) * 2 ** this.bucketShift - 1);
  }

  /**
   * Sort buckets [from, end) and yield their runs. A group whose last bucket
   * is done gives its chunks to the pool; `giveBack`: to the kernel as well
   * (the final sort: nothing more will be added, and the page cache the output
   * goes to reuses those frames), else they stay resident for later buckets.
   */
  private *sortBuckets(from: number, end: number, giveBack: boolean): Generator<Uint8Array> {
    const counts = new Float64Array(end - from);
    let largest = 0;
    for (let b = from; b < end; b++) {
      counts[b - from] = this.lists.sealList(b);
      largest = Math.max(largest, counts[b - from]);
    }
    const runRecords = this.sorterFor(
      giveBack ? Math.min(largest, splitAboveRecords) : splitAboveRecords,
    ).runRecords;
    const groupShift = this.groupShift;
    const groupBuckets = 1 << groupShift;
    for (let b = from; b < end; b++) {
      const group = b >>> groupShift;
      const n = counts[b - from];
      if (n > 0) {
        yield* this.sortList(runRecords, this.lists.head[b], n, this.firstVaryingBit(b), 0, group);
      }
      // The caller is done with the group's last run: its memory can serve the output.
      if ((b + 1) % groupBuckets === 0 || b === this.bucketCount - 1) this.pool.releaseGroup(group, giveBack);
    }
  }

  /**
   * The sort's two buffers, for lists of up to `runRecords` records (bigger ones
   * are split first); made once, bigger if a later sort needs it. Both in one
   * allocation on huge pages: fresh 4 KiB pages cost ~4 ms per MB to fault in
   * here, huge pages 2-3x less.
   */
  private sorterFor(runRecords: number): RunSorter {
    runRecords = Math.max(1, runRecords);
    if (this.sorter !== null && this.sorter.runRecords >= runRecords) return this.sorter;
    const runBytes = runRecords * RECORD_BYTES;
    const buffers = hugeBuffer(2 * runBytes);
    this.sorter = { runRecords, run: buffers.subarray(0, runBytes), bucket: buffers.subarray(runBytes) };
    return this.sorter;
  }

  /**
   * The first key bit that can vary inside bucket b: it holds p32 values in [lo, hi]
   * below (its aligned block, cut to the range at both ends), and all numbers
   * between two others share the bits above their highest differing bit.
   */
  private firstVaryingBit(b: number): number {
    const block = 2 ** this.bucketShift;
    const lo = Math.max(this.base32, (this.firstBlock + b) * block);
    const hi = Math.min(this.last32, (this.firstBlock + b + 1) * block - 1);
    assert(this.base32 <= lo && lo <= hi && hi <= this.last32 && hi < TWO_POW_32, "bucket bounds");
    return lo === hi ? 32 : Math.clz32(lo ^ hi);
  }

  /**
   * Yield the records of the list starting at block `head` (`n` records, equal
   * before bit `bit`) as sorted runs, freeing its blocks: sorted in one piece when
   * it fits `runRecords`, else split by its next varying digit. The buffers are
   * taken (sorterFor) where they are written, never held across a yield.
   */
  private *sortList(
    runRecords: number,
    head: number,
    n: number,
    bit: number,
    level: number,
    group: number,
  ): Generator<Uint8Array> {
    assert(level < maxSplitLevels, "split depth");
    const pool = this.pool;
    if (n <= runRecords) {
      const sorter = this.sorterFor(runRecords);
      let pos = 0;
      for (let id = head; id >= 0; ) {
        const records = pool.view(id);
        sorter.bucket.set(records, pos);
        pos += records.length;
        const next = pool.next[id];
        pool.release(id);
        id = next;
      }
      assert(pos === n * RECORD_BYTES, "list holds its record count");
      sortRecordsInto(sorter.bucket, n, sorter.run, bit);
      this.yielded += n; // handed out as it is yielded: heldRecords is right while the caller writes it
      yield sorter.run.subarray(0, pos);
      return;
    }
    // Split at the first byte where any two records differ (all keys sharing a
    // prefix, as with skew, would otherwise split into one child per level). One
    // scan, which ends at the first record that differs in the byte holding `bit`.
    const differ = this.firstVaryingByte(head, bit >>> 3);
    if (differ >= RECORD_BYTES) {
      // Identical records: already sorted. Packed into the run buffer so the
      // writer gets ~2 MiB runs, not one 32 KB write per block.
      let sorter = this.sorterFor(runRecords);
      let pos = 0;
      for (let id = head; id >= 0; ) {
        const records = pool.view(id);
        if (pos + records.length > sorter.run.length) {
          this.yielded += pos / RECORD_BYTES;
          yield sorter.run.subarray(0, pos);
          sorter = this.sorterFor(runRecords); // new buffers if sortedRuns() took over meanwhile
          pos = 0;
        }
        sorter.run.set(records, pos);
        pos += records.length;
        const next = pool.next[id];
        pool.release(id);
        id = next;
      }
      this.yielded += pos / RECORD_BYTES;
      yield sorter.run.subarray(0, pos);
      return;
    }
    // The 8-bit digit at `bit` now varies: the bits before it are equal, and it
    // covers the rest of byte `differ`, where two records differ.
    bit = Math.max(bit, differ * 8);
    const children = this.splitList(head, bit, group);
    const counts = children.seal();
    let total = 0;
    for (let d = 0; d < DIGIT_VALUES; d++) total += counts[d];
    assert(total === n, `split kept ${total} of ${n} records`);
    for (let d = 0; d < DIGIT_VALUES; d++) {
      if (counts[d] === 0) continue;
      yield* this.sortList(runRecords, children.head[d], counts[d], bit + 8, level + 1, group);
    }
  }

  /**
   * The first byte at or after `fromByte` in which any record of the list differs
   * from its first record (RECORD_BYTES when all are identical); the bytes before
   * fromByte are equal in all of them.
   */
  private firstVaryingByte(head: number, fromByte: number): number {
    const pool = this.pool;
    const ref = pool.slabs32[pool.slabOf[head]];
    const refWord = pool.wordOf[head];
    let differ = RECORD_BYTES;
    const onBusy = this.onBusy;
    for (let id = head; id >= 0 && differ > fromByte; id = pool.next[id]) {
      const slab = pool.slabs32[pool.slabOf[id]];
      differ = firstDifferentByte(ref, refWord, slab, pool.wordOf[id], pool.fill[id], fromByte, differ);
      onBusy?.();
    }
    return differ;
  }

  /**
   * Move a list's records into 256 new lists by the 8-bit digit at `bit` (the same
   * digit as digitAt), releasing each source block once it is read.
   */
  private splitList(head: number, bit: number, group: number): ListSet {
    const pool = this.pool;
    const children = new ListSet(pool, DIGIT_VALUES, () => group);
    const writeWord = children.writeWord;
    const endWord = children.endWord;
    const writeSlab = children.writeSlab;
    const i = bit >>> 3;
    const j = Math.min(i + 1, RECORD_BYTES - 1);
    const shift = 8 - (bit & 7);
    const onBusy = this.onBusy;
    for (let id = head; id >= 0; ) {
      const src8 = pool.slabs8[pool.slabOf[id]];
      const src32 = pool.slabs32[pool.slabOf[id]];
      const firstWord = pool.wordOf[id];
      const endSrc = firstWord + pool.fill[id] * RECORD_WORDS;
      for (let s = firstWord; s < endSrc; s += RECORD_WORDS) {
        const o = s * 4;
        const d = (((src8[o + i] << 8) | src8[o + j]) >>> shift) & 0xff;
        let w = writeWord[d];
        if (w === endWord[d]) w = children.grow(d);
        const dst = writeSlab[d];
        // A plain word loop, as in addAligned: faster here than five words per step.
        for (let k = 0; k < RECORD_WORDS; k++) dst[w + k] = src32[s + k];
        writeWord[d] = w + RECORD_WORDS;
      }
      const next = pool.next[id];
      pool.release(id); // read: the next grow() may reuse it
      id = next;
      onBusy?.();
    }
    return children;
  }
}

/** The buffers one sortedRuns() pass sorts in, allocated once for all buckets. */
interface RunSorter {
  runRecords: number;
  /** Sorted records, yielded to the caller. */
  run: Uint8Array;
  /** One list's records, copied together from its blocks to be sorted into `run`. */
  bucket: Uint8Array;
}

/** The methods received and own records go through, for JIT tuning (src/jit.ts). */
export const storeHotFunctions: ReadonlyArray<HotFunction> = [
  BucketStore.prototype.add,
  // biome-ignore lint/complexity/useLiteralKeys: a private method, named for src/jit.ts
  BucketStore.prototype["addAligned"],
];
