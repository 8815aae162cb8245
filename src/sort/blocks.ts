/**
 * The storage under BucketStore (src/sort/buckets.ts): fixed-size blocks of
 * records carved from 2 MiB chunks (each one huge page), chunks carved from
 * slabs, and block lists appended to record by record. No allocation per record
 * or per batch; a group of buckets gives its chunks back to the kernel at once.
 */
import { assert } from "../errors.ts";
import { addressOf, adviseHugePages, giveBack, HUGE_PAGE_BYTES } from "../mem.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";

const EMPTY32 = new Uint32Array(0);

export const TWO_POW_16 = 2 ** 16;
export const TWO_POW_32 = 2 ** 32;
export const TWO_POW_48 = 2 ** 48;
/** Bits of a whole record: a list sorted this far holds identical records. */
export const RECORD_BITS = RECORD_BYTES * 8;
export const DIGIT_VALUES = 256;

/** An average bucket is about this big: it and its sort scratch fit in the 1 MiB L2. */
export const targetBucketBytes = 512 * 1024;
export const minBuckets = 16;
export const maxBuckets = 65536;
/**
 * Memory comes in 2 MiB chunks aligned to huge pages, so a chunk is one huge page
 * and handing it back (giveBack) frees a whole frame at once; a chunk holds 64
 * blocks of 327 records (32,700 B; 4,352 B of each chunk unused).
 */
export const chunkBytes = HUGE_PAGE_BYTES;
export const chunkWords = chunkBytes / 4;
export const blocksPerChunk = 64;
export const blockRecords = Math.floor(chunkBytes / blocksPerChunk / RECORD_BYTES);
export const blockWords = blockRecords * RECORD_WORDS;
/** A bucket (or split child) with more records than this is split again before sorting. */
export const splitAboveRecords = Math.floor((4 * targetBucketBytes) / RECORD_BYTES);
/** Slabs grow in steps between these sizes (whole chunks: 4-64 MiB). */
export const minSlabChunks = 2;
export const maxSlabChunks = 32;
/**
 * Consecutive buckets share chunks in groups of about this many expected bytes: a
 * group's chunks are given back as soon as its last bucket has been sorted, so the
 * output's page cache reuses their frames. Smaller groups give memory back sooner
 * but each keeps one partly filled chunk (at most 2 MiB resident) while filling.
 */
export const targetGroupBytes = 32 * 1024 * 1024;
/** Batches at an offset that is not 4-byte aligned are copied through this buffer. */
export const stagingRecords = 2560;
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
export const maxSplitLevels = RECORD_BITS / 8 + 2;

/** A table twice as long, with the old entries first. */
export function grow(table: Int32Array): Int32Array {
  const bigger: Int32Array = new Int32Array(table.length * 2);
  bigger.set(table);
  return bigger;
}

/**
 * Blocks of `blockRecords` records addressed by block id, carved from 2 MiB chunks
 * (block id = chunk * 64 + index), and chunks carved from slabs. Each chunk belongs
 * to one group of consecutive buckets, so a group's records sit in its own chunks;
 * a block belongs to one list at a time. Freed blocks go back to their group and
 * are reused by that group (its splits) before any new chunk is taken, so
 * splitting a list costs no memory beyond its partial blocks; a group that is done
 * gives all its chunks back to the kernel at once (releaseGroup).
 */
export class BlockPool {
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
   * Every block of group g has been read: keep its chunks for reuse, and
   * (`toKernel`) hand them back to the kernel (their frames serve the page cache
   * or whatever comes next; a chunk taken again later faults back in as zeroes).
   */
  releaseGroup(g: number, toKernel = true): void {
    assert(this.groupLive[g] === 0, `group ${g} released with ${this.groupLive[g]} blocks in use`);
    for (let c = this.groupChunks[g]; c >= 0; ) {
      const first = this.wordOf[c * blocksPerChunk] * 4;
      if (toKernel) {
        this.givenBackBytes += giveBack(
          this.slabs8[this.slabOf[c * blocksPerChunk]].subarray(first, first + chunkBytes),
        );
      }
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
export class ListSet {
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

  /** Record list d's tail block fill; returns its record count (0 for an empty list). */
  sealList(d: number): number {
    const pool = this.pool;
    const last = this.tail[d];
    if (last < 0) return 0;
    const filledWords = this.writeWord[d] - pool.wordOf[last];
    assert(
      filledWords > 0 && filledWords % RECORD_WORDS === 0 && filledWords <= blockWords,
      "tail block fill",
    );
    pool.fill[last] = filledWords / RECORD_WORDS;
    let n = 0;
    for (let id = this.head[d]; id >= 0; id = pool.next[id]) n += pool.fill[id];
    return n;
  }

  /** Record the tail blocks' fills; returns each list's record count. */
  seal(): Float64Array {
    const counts = new Float64Array(this.count);
    for (let d = 0; d < this.count; d++) counts[d] = this.sealList(d);
    return counts;
  }
}
