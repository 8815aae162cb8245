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
import { addressOf, adviseHugePages, giveBack, HUGE_PAGE_BYTES, hugeBuffer } from "../mem.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";
import { firstDifferentByte, sortRecordsInto } from "./radix.ts";

export interface BucketStoreOptions {
  /** This peer's key range as 48-bit prefixes (first 6 key bytes as an unsigned integer): [rangeStart, rangeEnd). From record.ts rangeStart()/rangeEnd(). Doubles, exact (< 2^53). */
  rangeStart: number;
  rangeEnd: number;
  /** Rough number of records expected (e.g. input size / 100); picks the bucket count so an average bucket is ~cache sized (256 KiB - 1 MiB). May be 0. */
  expectedRecords: number;
}

const TWO_POW_16 = 2 ** 16;
const TWO_POW_32 = 2 ** 32;
const TWO_POW_48 = 2 ** 48;
/** Bits of a whole record: a list sorted this far holds identical records. */
const RECORD_BITS = RECORD_BYTES * 8;
const DIGIT_VALUES = 256;

/** An average bucket is about this big: it and its sort scratch fit in the 1 MiB L2. */
const targetBucketBytes = 512 * 1024;
const minBuckets = 16;
const maxBuckets = 65536;
/**
 * Memory comes in 2 MiB chunks aligned to huge pages, so a chunk is one huge page
 * and handing it back (giveBack) frees a whole frame at once; a chunk holds 64
 * blocks of 327 records (32,700 B; 4,352 B of each chunk unused).
 */
const chunkBytes = HUGE_PAGE_BYTES;
const chunkWords = chunkBytes / 4;
const blocksPerChunk = 64;
const blockRecords = Math.floor(chunkBytes / blocksPerChunk / RECORD_BYTES);
const blockWords = blockRecords * RECORD_WORDS;
/** A bucket (or split child) with more records than this is split again before sorting. */
const splitAboveRecords = Math.floor((4 * targetBucketBytes) / RECORD_BYTES);
/** Slabs grow in steps between these sizes (whole chunks: 4-64 MiB). */
const minSlabChunks = 2;
const maxSlabChunks = 32;
/**
 * Consecutive buckets share chunks in groups of about this many expected bytes: a
 * group's chunks are given back as soon as its last bucket has been sorted, so the
 * output's page cache reuses their frames. Smaller groups give memory back sooner
 * but each keeps one partly filled chunk (at most 2 MiB resident) while filling.
 */
const targetGroupBytes = 32 * 1024 * 1024;
/** Batches at an offset that is not 4-byte aligned are copied through this buffer. */
const stagingRecords = 2560;
/**
 * The most the two sort buffers of one sortedRuns() pass take (a run and a
 * bucket of at most splitAboveRecords records each), for memory budgets.
 */
export const sortBuffersMaxBytes = 2 * splitAboveRecords * RECORD_BYTES;
/** Memory is held in chunks of this many bytes (a group takes one when its current one is full). */
export const storeChunkBytes = chunkBytes;
/** Bytes of one block of records: a split's partly filled children cost up to 256 of these per level. */
export const blockBytes = blockRecords * RECORD_BYTES;
/** Nested splits: each advances by >= 8 bits of the record. */
const maxSplitLevels = RECORD_BITS / 8 + 2;

const EMPTY32 = new Uint32Array(0);

/**
 * Blocks of `blockRecords` records addressed by block id, carved from 2 MiB chunks
 * (block id = chunk * 64 + index), and chunks carved from slabs. Each chunk belongs
 * to one group of consecutive buckets, so a group's records sit in its own chunks;
 * a block belongs to one list at a time. Freed blocks go back to their group and
 * are reused by that group (its splits) before any new chunk is taken, so
 * splitting a list costs no memory beyond its partial blocks; a group that is done
 * gives all its chunks back to the kernel at once (releaseGroup).
 */
class BlockPool {
  readonly slabs8: Uint8Array[] = [];
  readonly slabs32: Uint32Array[] = [];
  // Per block id: its slab, first word in the slab, next block in its list (or in
  // its group's free stack), and record count (set when its list moves on to a new
  // block, or is sealed).
  slabOf: Int32Array = new Int32Array(blocksPerChunk * 64);
  wordOf: Int32Array = new Int32Array(blocksPerChunk * 64);
  next: Int32Array = new Int32Array(blocksPerChunk * 64);
  fill: Int32Array = new Int32Array(blocksPerChunk * 64);
  // Per chunk: its group, and the next chunk in its group's chain or in the stack
  // of chunks given back.
  private chunkGroup: Int32Array = new Int32Array(64);
  private chunkNext: Int32Array = new Int32Array(64);
  private chunks = 0;
  private freeChunk = -1;
  // Per group: the chunk blocks are carved from and how many it has given, the
  // stack of freed blocks, the chain of its chunks, and its blocks in use.
  private readonly groupChunk: Int32Array;
  private readonly groupCarved: Int32Array;
  private readonly groupFree: Int32Array;
  private readonly groupChunks: Int32Array;
  private readonly groupLive: Int32Array;
  // The newest slab: where its next chunk starts, and how many are left.
  private slabNextWord = 0;
  private slabChunksLeft = 0;
  /** Chunk bytes carved from slabs so far; bytes handed back to the kernel so far. */
  bytes = 0;
  givenBackBytes = 0;
  /** Chunks taken by a group and not yet released: what the store holds now (at most `bytes`). */
  chunksInUse = 0;

  constructor(
    groups: number,
    private readonly minGrowthChunks: number,
  ) {
    this.groupChunk = new Int32Array(groups).fill(-1);
    this.groupCarved = new Int32Array(groups);
    this.groupFree = new Int32Array(groups).fill(-1);
    this.groupChunks = new Int32Array(groups).fill(-1);
    this.groupLive = new Int32Array(groups);
  }

  /** A block for a list of group g. */
  alloc(g: number): number {
    let id = this.groupFree[g];
    if (id >= 0) {
      this.groupFree[g] = this.next[id];
    } else {
      let c = this.groupChunk[g];
      if (c < 0 || this.groupCarved[g] === blocksPerChunk) c = this.takeChunk(g);
      id = c * blocksPerChunk + this.groupCarved[g]++;
    }
    this.groupLive[g]++;
    this.next[id] = -1;
    this.fill[id] = 0;
    return id;
  }

  /** Block `id` is read: its group may reuse it. */
  release(id: number): void {
    const g = this.chunkGroup[(id / blocksPerChunk) | 0];
    this.next[id] = this.groupFree[g];
    this.groupFree[g] = id;
    this.groupLive[g]--;
  }

  /**
   * Every block of group g has been read: hand its chunks back to the kernel
   * (their frames serve the page cache or whatever comes next; a chunk taken again
   * later faults back in as zeroes) and keep them for reuse.
   */
  releaseGroup(g: number): void {
    assert(this.groupLive[g] === 0, `group ${g} released with ${this.groupLive[g]} blocks in use`);
    for (let c = this.groupChunks[g]; c >= 0; ) {
      const first = this.wordOf[c * blocksPerChunk] * 4;
      this.givenBackBytes += giveBack(
        this.slabs8[this.slabOf[c * blocksPerChunk]].subarray(first, first + chunkBytes),
      );
      const next = this.chunkNext[c];
      this.chunkNext[c] = this.freeChunk;
      this.freeChunk = c;
      this.chunksInUse--;
      c = next;
    }
    this.groupChunks[g] = -1;
    this.groupChunk[g] = -1;
    this.groupCarved[g] = 0;
    this.groupFree[g] = -1;
  }

  /** The records of block `id` as bytes (a view, valid until the block is reused). */
  view(id: number): Uint8Array {
    const from = this.wordOf[id] * 4;
    return this.slabs8[this.slabOf[id]].subarray(from, from + this.fill[id] * RECORD_BYTES);
  }

  /** Group g's chunk is full (or it has none): give it one, given back earlier or new. */
  private takeChunk(g: number): number {
    let c = this.freeChunk;
    if (c >= 0) this.freeChunk = this.chunkNext[c];
    else c = this.carveChunk();
    this.chunksInUse++;
    this.chunkGroup[c] = g;
    this.chunkNext[c] = this.groupChunks[g];
    this.groupChunks[g] = c;
    this.groupChunk[g] = c;
    this.groupCarved[g] = 0;
    return c;
  }

  private carveChunk(): number {
    if (this.slabChunksLeft === 0) this.addSlab();
    const c = this.chunks++;
    if (c === this.chunkGroup.length) {
      this.chunkGroup = grow(this.chunkGroup);
      this.chunkNext = grow(this.chunkNext);
      this.slabOf = grow(this.slabOf);
      this.wordOf = grow(this.wordOf);
      this.next = grow(this.next);
      this.fill = grow(this.fill);
    }
    const slab = this.slabs8.length - 1;
    const firstWord = this.slabNextWord;
    for (let i = 0; i < blocksPerChunk; i++) {
      this.slabOf[c * blocksPerChunk + i] = slab;
      this.wordOf[c * blocksPerChunk + i] = firstWord + i * blockWords;
    }
    this.slabNextWord += chunkWords;
    this.slabChunksLeft--;
    this.bytes += chunkBytes;
    return c;
  }

  private addSlab(): void {
    // Grow in big steps: at least minGrowthChunks, or half of what is held.
    const chunks = Math.min(maxSlabChunks, Math.max(this.minGrowthChunks, Math.ceil(this.chunks / 2)));
    // One chunk more, so the chunks can start on a huge-page boundary; the
    // unaligned head and tail are never touched, so they cost address space only.
    const slab = new Uint8Array((chunks + 1) * chunkBytes);
    adviseHugePages(slab);
    const address = addressOf(slab);
    const skipBytes = address === null ? 0 : (chunkBytes - (address % chunkBytes)) % chunkBytes;
    assert(skipBytes % 4 === 0, "slab is word aligned");
    this.slabs8.push(slab);
    this.slabs32.push(new Uint32Array(slab.buffer, 0, slab.length / 4));
    this.slabNextWord = skipBytes / 4;
    this.slabChunksLeft = chunks;
  }
}

/**
 * `count` block lists appended to record by record (the buckets, or the children
 * of one split), each with its write position kept in flat arrays for the hot loops.
 */
class ListSet {
  readonly head: Int32Array;
  readonly tail: Int32Array;
  /** Where list d's next record goes in writeSlab[d]; == endWord[d] when its tail is full. */
  readonly writeWord: Int32Array;
  readonly endWord: Int32Array;
  readonly writeSlab: Uint32Array[];

  /** `groupOf(d)`: the pool group list d takes its blocks from. */
  constructor(
    private readonly pool: BlockPool,
    readonly count: number,
    private readonly groupOf: (d: number) => number,
  ) {
    this.head = new Int32Array(count).fill(-1);
    this.tail = new Int32Array(count).fill(-1);
    this.writeWord = new Int32Array(count);
    this.endWord = new Int32Array(count);
    this.writeSlab = new Array<Uint32Array>(count).fill(EMPTY32);
  }

  /** List d's tail block is full (or absent): link a new one; returns its first word. */
  grow(d: number): number {
    const pool = this.pool;
    const id = pool.alloc(this.groupOf(d));
    const last = this.tail[d];
    if (last >= 0) {
      pool.fill[last] = blockRecords;
      pool.next[last] = id;
    } else {
      this.head[d] = id;
    }
    this.tail[d] = id;
    this.writeSlab[d] = pool.slabs32[pool.slabOf[id]];
    const word = pool.wordOf[id];
    this.writeWord[d] = word;
    this.endWord[d] = word + blockWords;
    return word;
  }

  /** Record the tail blocks' fills; returns each list's record count. */
  seal(): Float64Array {
    const pool = this.pool;
    const counts = new Float64Array(this.count);
    for (let d = 0; d < this.count; d++) {
      const last = this.tail[d];
      if (last < 0) continue;
      const filledWords = this.writeWord[d] - pool.wordOf[last];
      assert(
        filledWords > 0 && filledWords % RECORD_WORDS === 0 && filledWords <= blockWords,
        "tail block fill",
      );
      pool.fill[last] = filledWords / RECORD_WORDS;
      let n = 0;
      for (let id = this.head[d]; id >= 0; id = pool.next[id]) n += pool.fill[id];
      counts[d] = n;
    }
    return counts;
  }
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
  private readonly edgeLow32: number;
  private readonly edgeHigh32: number;
  private readonly pool: BlockPool;
  private lists: ListSet;
  /** Buckets b and b' share pool group b >>> groupShift: groups of consecutive buckets. */
  private readonly groupShift: number;
  private staging: Uint8Array | null = null;
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

  /** Records added so far. */
  get records(): number {
    return this.recordCount;
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
    if (this.rangeStart <= p48 && p48 < this.rangeEnd) return;
    assert(
      false,
      `record with 48-bit prefix ${p48} outside this peer's range [${this.rangeStart}, ${this.rangeEnd})`,
    );
  }

  /**
   * Sort each bucket and yield its records as contiguous sorted Uint8Arrays, in key
   * order; a yielded view is valid only until the next iteration (buffers are
   * reused). Empty buckets are skipped; a bucket bigger than ~2 MiB comes out as
   * several runs. The concatenation of all yields is the fully sorted share.
   * Call once: the store is consumed.
   */
  *sortedRuns(): Generator<Uint8Array> {
    assert(!this.sealed, "sortedRuns called twice");
    this.sealed = true;
    const counts = this.lists.seal();
    let total = 0;
    let largest = 0;
    for (let b = 0; b < this.bucketCount; b++) {
      total += counts[b];
      largest = Math.max(largest, counts[b]);
    }
    assert(total === this.recordCount, `bucket counts ${total} add up to ${this.recordCount} records`);
    const runRecords = Math.min(largest, splitAboveRecords);
    // Both buffers in one allocation on huge pages: fresh 4 KiB pages cost ~4 ms
    // per MB to fault in here, huge pages 2-3x less.
    const runBytes = runRecords * RECORD_BYTES;
    const buffers = hugeBuffer(2 * runBytes);
    const sorter: RunSorter = {
      runRecords,
      run: buffers.subarray(0, runBytes),
      bucket: buffers.subarray(runBytes),
      yielded: 0,
    };
    const groupShift = this.groupShift;
    const groupBuckets = 1 << groupShift;
    for (let b = 0; b < this.bucketCount; b++) {
      const group = b >>> groupShift;
      if (counts[b] > 0) {
        yield* this.sortList(sorter, this.lists.head[b], counts[b], this.firstVaryingBit(b), 0, group);
      }
      // The caller is done with the group's last run: its memory can serve the output.
      if ((b + 1) % groupBuckets === 0 || b === this.bucketCount - 1) this.pool.releaseGroup(group);
    }
    assert(sorter.yielded === this.recordCount, `yielded ${sorter.yielded} of ${this.recordCount} records`);
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
   * it fits the run buffer, else split by its next varying digit.
   */
  private *sortList(
    sorter: RunSorter,
    head: number,
    n: number,
    bit: number,
    level: number,
    group: number,
  ): Generator<Uint8Array> {
    assert(level < maxSplitLevels, "split depth");
    const pool = this.pool;
    if (n <= sorter.runRecords) {
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
      sorter.yielded += n;
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
      let pos = 0;
      for (let id = head; id >= 0; ) {
        const records = pool.view(id);
        if (pos + records.length > sorter.run.length) {
          sorter.yielded += pos / RECORD_BYTES;
          yield sorter.run.subarray(0, pos);
          pos = 0;
        }
        sorter.run.set(records, pos);
        pos += records.length;
        const next = pool.next[id];
        pool.release(id);
        id = next;
      }
      sorter.yielded += pos / RECORD_BYTES;
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
      yield* this.sortList(sorter, children.head[d], counts[d], bit + 8, level + 1, group);
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
    for (let id = head; id >= 0 && differ > fromByte; id = pool.next[id]) {
      const slab = pool.slabs32[pool.slabOf[id]];
      differ = firstDifferentByte(ref, refWord, slab, pool.wordOf[id], pool.fill[id], fromByte, differ);
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
  yielded: number;
}

function grow(table: Int32Array): Int32Array {
  const bigger: Int32Array = new Int32Array(table.length * 2);
  bigger.set(table);
  return bigger;
}

/** The methods received and own records go through, for JIT tuning (src/jit.ts). */
export const storeHotFunctions: ReadonlyArray<HotFunction> = [
  BucketStore.prototype.add,
  // biome-ignore lint/complexity/useLiteralKeys: a private method, named for src/jit.ts
  BucketStore.prototype["addAligned"],
];
