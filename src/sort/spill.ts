/**
 * A BucketStore with a memory budget. Records go into one BucketStore as they
 * arrive; when the memory it holds would pass the budget, what it holds is
 * sorted and written as one sorted run to an unnamed scratch file in the temp
 * dir (src/sort/scratch.ts), and the store starts over in the same memory
 * (BucketStore.reset). At the end, the runs and what is still held are merged
 * (src/sort/merge.ts) into the final order, byte for byte what the in-memory
 * sort gives. When nothing spilled, sortedChunks() is the in-memory path itself:
 * the store's own sorted runs, not copied.
 *
 * A spill is synchronous, inside add(): sorting and writing a run blocks the
 * event loop (and so the peer's pings and its reading of the sockets, which is
 * what holds the senders back meanwhile). So when the share is not expected to
 * fit, a run is at most maxSpillRunBytes whatever the budget, which keeps one
 * spill well inside the idle timeout (default 5 s): measured on the 2-core VM with 7 other jobs running (load
 * average ~13), runs of 200 MiB took 1.2-1.5 s, of 100 MiB (what the 128 MiB
 * cap holds) 0.43-1.0 s, of 69 MiB (a 128 MB budget) 0.39-0.87 s, the first
 * one of a process the slowest. Spilling asynchronously would need a second
 * store to take the records arriving meanwhile, halving the run size for the
 * same budget. Big budgets make more runs of this size instead, and the fan-in
 * grows with the budget (up to maxMergeFanIn), so 128 runs (16 GiB) still
 * merge in one pass. When the share was expected to fit but does not
 * (expectedRecords too low, as with skewed keys and key-bit ranges), the first
 * run is cut at 1.25x the expected share (or at the budget, if sooner), and
 * later runs are capped: that first spill still blocks for as long as sorting
 * 1.25x the expected share takes (~0.5 s per 100 MiB here), so an expected
 * share of several GiB that then overflows can block past the idle timeout.
 *
 * Memory, for a budget B: the held records (chunks, counted whole: records plus
 * partly filled blocks), the sort's two buffers (sortBuffersMaxBytes), room for
 * one level of split children (splitSlackBytes: skewed keys), and the merge's
 * buffers (one read buffer per run at the fan-in, one output buffer). A run is
 * cut when the held chunks plus the most one add() can take reach what is left.
 */
import { assert } from "../errors.ts";
import { busyKeepAliveMs } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";
import { blockBytes, sortBuffersMaxBytes, storeChunkBytes } from "./blocks.ts";
import { BucketStore, type BucketStoreOptions } from "./buckets.ts";
import { fileRunSource, mergeSorted, piecesSource, type SortedSource } from "./merge.ts";
import { checkTempDir, ScratchFile } from "./scratch.ts";

/** One spilled run is at most this many bytes: sorting and writing it blocks the event loop (see above). */
export const maxSpillRunBytes = 128 * 1024 * 1024;
/** A run of the merge is read through a buffer of this many bytes (whole records; big enough for sequential disk reads). */
export const mergeReadBytes = 5120 * RECORD_BYTES;
/** The merge's output buffer: each yielded chunk is at most this (whole records, ~2 MiB like the store's runs). */
export const mergeOutputBytes = 20480 * RECORD_BYTES;
/** Fan-in bounds: at least this many runs merged at once (even on a small budget), at most this many. */
export const minMergeFanIn = 4;
export const maxMergeFanIn = 128;
/** The merge's read buffers get at most this share of the budget (1/16): the fan-in follows from it. */
const mergeBudgetShare = 1 / 16;
/** A split of a big bucket (skewed keys) keeps up to 256 partly filled child blocks (buckets.ts). */
export const splitSlackBytes = 256 * blockBytes;
/** A batch is added in pieces of at most this (the mesh's batch size), so the check before each piece stays close. */
const maxAddPieceBytes = 2560 * RECORD_BYTES;
/** Chunks held per byte of records, at most (BucketStore: partly filled blocks and chunks, "about 1.1 x D"). */
const storeOverheadFactor = 1.1;
/** Blocks per chunk in the BucketStore (2 MiB chunks of 64 blocks). */
const blocksPerChunk = Math.floor(storeChunkBytes / blockBytes);
/** The least run size worth spilling: below it, the runs (and merge passes) multiply. */
export const minSpillRunBytes = 8 * 1024 * 1024;

const EMPTY = new Uint8Array(0);

export interface SpillingStoreOptions extends BucketStoreOptions {
  /** Bytes this store may use: held records, the sort's buffers and the merge's. */
  budgetBytes: number;
  /** Where runs are spilled (checked at construction: a usage error naming it). */
  tempDir: string;
  /** Most runs merged at once (default: from the budget, minMergeFanIn..maxMergeFanIn). */
  fanIn?: number;
  /** Cap on one run when the share is not expected to fit, bytes (default maxSpillRunBytes; tests set it small to make many runs). */
  maxRunBytes?: number;
  /** Called after each spill, for logs: the first one is "starts spilling". */
  onSpill?: (spill: SpillEvent) => void;
  /**
   * Called at most every busyKeepAliveMs while the store sorts: after every
   * piece a spill writes, and once per block while one big list is scanned or
   * split (also in drains and the final sort, where it does no harm). A spill
   * is one synchronous step inside the receive callback and can take seconds
   * (the first one, when the share outgrew its estimate, writes everything
   * held): the caller keeps its connections alive from here (Mesh.keepAlive),
   * or peers that hear nothing for --idle-timeout-ms take this peer for dead.
   */
  onBusy?: () => void;
}

export interface SpillEvent {
  /** 1 for the first spill. */
  run: number;
  records: number;
  bytes: number;
  ms: number;
}

/** What spilling cost, for logs and --json. All zero when nothing spilled. */
export interface SpillFigures {
  /** Runs written while records arrived. */
  spills: number;
  /** Runs written in all, intermediate merges included. */
  runs: number;
  /** Bytes written to scratch files in all (spills and intermediate merges). */
  spilledBytes: number;
  /** Merges done, the final one included: 1 when the runs fit the fan-in, 0 when nothing spilled. */
  mergePasses: number;
  spillMs: number;
  /** Time inside the merges (intermediate ones and the final one), not counting the caller's writes. */
  mergeMs: number;
  /** Bytes the final merge has produced so far (progress lines), of mergeTotalBytes. */
  mergedBytes: number;
  mergeTotalBytes: number;
  /** Most bytes this store had at any time (held chunks, sort and merge buffers): at most the budget. */
  peakHeldBytes: number;
  /** Records per spilled run at most (the budget's run size). */
  runLimitBytes: number;
  fanIn: number;
}

/** The merge's buffers at a given fan-in. */
export function mergeBuffersBytes(fanIn: number): number {
  return fanIn * mergeReadBytes + mergeOutputBytes;
}

/** The least budget a SpillingStore takes: its fixed buffers plus a minimal run. */
export function minimumStoreBytes(): number {
  return sortBuffersMaxBytes + splitSlackBytes + mergeBuffersBytes(minMergeFanIn) + minSpillRunBytes;
}

/** The fan-in a budget affords (mergeBudgetShare of it for read buffers), within the bounds. */
export function fanInFor(budgetBytes: number): number {
  const fits = Math.floor((budgetBytes * mergeBudgetShare) / mergeReadBytes);
  return Math.max(minMergeFanIn, Math.min(maxMergeFanIn, fits));
}

/**
 * The most the held chunks can grow in one add of a piece: the piece can start
 * a new block in every bucket plus one per block of records, and those blocks
 * can need a new chunk in every group, plus one per 64 blocks.
 */
function addSlackOf(store: BucketStore): number {
  const newBlocks = store.buckets + Math.ceil(maxAddPieceBytes / blockBytes);
  return (store.groups + Math.ceil(newBlocks / blocksPerChunk)) * storeChunkBytes;
}

export class SpillingStore {
  /** The expected share did not fit the budget at construction: runs of at most maxSpillRunBytes. */
  readonly plannedSpill: boolean;
  private inner: BucketStore;
  private readonly rangeStart: number;
  private readonly rangeEnd: number;
  /** Bytes a run may hold when runs are capped (maxSpillRunBytes, or the test's maxRunBytes, within the room). */
  private readonly cappedRunBytes: number;
  /** Runs are cut at cappedRunBytes: planned from the start, or since the share outgrew its estimate. */
  private capped: boolean;
  private readonly tempDir: string;
  private readonly fanIn: number;
  /** Held chunk bytes at which a run is cut (before the next piece is added). */
  private runLimitBytes: number;
  /** The most one piece can add to the held chunks (addSlackOf). */
  private addSlackBytes: number;
  private readonly onSpill: ((spill: SpillEvent) => void) | undefined;
  private readonly onBusy: (() => void) | undefined;
  private lastBusyMs = 0;
  /** onBusy, at most every busyKeepAliveMs: the store calls this once per block or piece. */
  private readonly busy = (): void => {
    const now = performance.now();
    if (this.onBusy === undefined || now - this.lastBusyMs < busyKeepAliveMs) return;
    this.lastBusyMs = now;
    this.onBusy();
  };
  private runs: ScratchFile[] = [];
  /** Every scratch file not yet closed (runs, and runs being merged): close() closes them all. */
  private readonly open = new Set<ScratchFile>();
  private spilledRecords = 0;
  /** Records handed out by sortedChunksBelow before the end. */
  private drainedRecords = 0;
  private consumed = false;
  private readonly stats: SpillFigures;

  constructor(options: SpillingStoreOptions) {
    const { budgetBytes, tempDir } = options;
    assert(
      Number.isSafeInteger(budgetBytes) && budgetBytes >= minimumStoreBytes(),
      `store budget ${budgetBytes} B is below the minimum ${minimumStoreBytes()} B`,
    );
    checkTempDir(tempDir);
    this.tempDir = tempDir;
    this.fanIn = options.fanIn ?? fanInFor(budgetBytes);
    assert(Number.isInteger(this.fanIn) && this.fanIn >= 2, `fan-in ${this.fanIn}`);
    const fixedBytes = sortBuffersMaxBytes + splitSlackBytes + mergeBuffersBytes(this.fanIn);
    assert(
      budgetBytes - fixedBytes >= minSpillRunBytes,
      `budget ${budgetBytes} B leaves less than ${minSpillRunBytes} B for records at fan-in ${this.fanIn}`,
    );
    const roomBytes = budgetBytes - fixedBytes;
    this.rangeStart = options.rangeStart;
    this.rangeEnd = options.rangeEnd;
    this.cappedRunBytes = Math.min(options.maxRunBytes ?? maxSpillRunBytes, roomBytes);
    // When the expected share fits (with its partly filled blocks and chunks,
    // and the most one add can take), the store is the in-memory one exactly as
    // before, and a run is cut only when the budget requires it: a share bigger
    // than expected (skewed keys, where the estimate is this peer's own input)
    // that still fits spills nothing. After that first spill, runs are capped.
    // The cost: when the budget is reached that way, the first spill sorts and
    // writes everything held in one synchronous step (docs/performance.md,
    // "Sorting more than memory", says how long; onBusy keeps the mesh alive).
    // Otherwise (spilling planned) the store is sized for one capped run: sized
    // for the whole share it would have more buckets and groups than a run
    // needs, each keeping a partly filled block or chunk.
    const inner = this.storeFor(options.expectedRecords);
    const expectedHeldBytes = options.expectedRecords * RECORD_BYTES * storeOverheadFactor;
    this.plannedSpill = expectedHeldBytes + addSlackOf(inner) > roomBytes;
    this.capped = this.plannedSpill;
    this.inner = inner;
    this.addSlackBytes = addSlackOf(inner);
    this.runLimitBytes = this.plannedSpill ? this.cappedRunBytes : roomBytes;
    this.onSpill = options.onSpill;
    this.onBusy = options.onBusy;
    this.stats = {
      spills: 0,
      runs: 0,
      spilledBytes: 0,
      mergePasses: 0,
      spillMs: 0,
      mergeMs: 0,
      mergedBytes: 0,
      mergeTotalBytes: 0,
      peakHeldBytes: 0,
      runLimitBytes: this.runLimitBytes,
      fanIn: this.fanIn,
    };
    if (this.plannedSpill) this.capRuns(options.expectedRecords);
  }

  /** Records added so far (drained early, spilled and held). */
  get records(): number {
    return this.drainedRecords + this.spilledRecords + this.inner.heldRecords;
  }

  /** Records held in memory now. */
  get heldRecords(): number {
    return this.inner.heldRecords;
  }

  /**
   * The leading part of the sorted share that is complete: every record with a
   * 48-bit prefix below `mark48` is in (BucketStore.sortedRunsBelow), from where
   * the last call stopped. Nothing once a run has been spilled: the rest then
   * comes from the merge in sortedChunks().
   */
  *sortedChunksBelow(mark48: number): Generator<Uint8Array> {
    if (this.consumed || this.runs.length > 0) return;
    for (const piece of this.inner.sortedRunsBelow(mark48)) {
      this.drainedRecords += piece.length / RECORD_BYTES;
      yield piece;
    }
  }

  /** The figures so far (a copy). */
  get figures(): SpillFigures {
    this.notePeak(0);
    return { ...this.stats };
  }

  /**
   * Add whole records, as BucketStore.add. May spill first (synchronously:
   * sorting and writing one run, at most maxSpillRunBytes except an unplanned
   * first one, which holds the whole budget; onBusy runs meanwhile). A full temp
   * disk is a NetsortError naming the directory.
   */
  add(buf: Uint8Array, offset: number, length: number): void {
    assert(!this.consumed, "add after sortedChunks");
    if (length <= maxAddPieceBytes) {
      if (this.inner.heldBytes + this.addSlackBytes > this.runLimitBytes && this.inner.heldRecords > 0)
        this.spill();
      this.inner.add(buf, offset, length);
      return;
    }
    assert(length % RECORD_BYTES === 0, `batch of whole records: ${length} B`);
    for (let done = 0; done < length; done += maxAddPieceBytes) {
      this.add(buf, offset + done, Math.min(maxAddPieceBytes, length - done));
    }
  }

  /** Sort what is held and write it as one run; the store then starts over in the same memory. */
  private spill(): void {
    const startMs = performance.now();
    const records = this.inner.heldRecords;
    const file = this.newFile();
    this.runs.push(file);
    for (const piece of this.inner.sortedRuns()) {
      file.append(piece);
      this.busy();
    }
    assert(file.bytes === records * RECORD_BYTES, `run of ${records} records holds ${file.bytes} B`);
    this.notePeak(0);
    if (this.capped) this.inner.reset();
    else this.capRuns(Number.POSITIVE_INFINITY); // the estimate was wrong: a fresh store sized for capped runs
    this.spilledRecords += records;
    const ms = performance.now() - startMs;
    this.stats.spills++;
    this.stats.runs++;
    this.stats.spilledBytes += file.bytes;
    this.stats.spillMs += ms;
    this.onSpill?.({ run: this.stats.spills, records, bytes: file.bytes, ms });
    // The sort of a run leaves garbage (split lists of skewed keys, views):
    // left to the collector's own pace it piled up to ~80 MiB above the budget
    // with skewed keys at the minimum budget (measured: tests/mesh/memory.test.ts);
    // one full collection per run (>= minSpillRunBytes) keeps it to ~35 MiB.
    Bun.gc(true);
  }

  private storeFor(expectedRecords: number): BucketStore {
    const store = new BucketStore({ rangeStart: this.rangeStart, rangeEnd: this.rangeEnd, expectedRecords });
    store.onBusy = this.busy;
    return store;
  }

  /**
   * From now on, runs are cut at cappedRunBytes, in a store sized for one run
   * (the old store is empty, and all its memory was given back by its sort).
   */
  private capRuns(expectedRecords: number): void {
    this.capped = true;
    this.inner = this.storeFor(Math.min(expectedRecords, Math.floor(this.cappedRunBytes / RECORD_BYTES)));
    this.addSlackBytes = addSlackOf(this.inner);
    this.runLimitBytes = this.cappedRunBytes;
    this.stats.runLimitBytes = this.cappedRunBytes;
  }

  /** Most held so far: the pool's chunks (it never shrinks, so this is its peak) plus the sort and merge buffers. */
  private notePeak(mergeBytes: number): void {
    const held = this.inner.slabBytes + (this.runs.length > 0 || mergeBytes > 0 ? sortBuffersMaxBytes : 0);
    this.stats.peakHeldBytes = Math.max(this.stats.peakHeldBytes, held + mergeBytes);
  }

  /**
   * The whole sorted share as chunks of whole records, in order; each valid
   * until the next iteration. Synchronous, like BucketStore.sortedRuns. When
   * nothing spilled, these are the store's own sorted runs (no copy). Otherwise
   * the runs are merged, with intermediate merges first when there are more
   * than the fan-in; during those, empty chunks come out now and then so the
   * caller's loop can give the event loop a turn (writing one is a no-op).
   * Call once. The scratch files are closed at the end, or by close().
   */
  *sortedChunks(): Generator<Uint8Array> {
    assert(!this.consumed, "sortedChunks called twice");
    this.consumed = true;
    if (this.runs.length === 0) {
      yield* this.inner.sortedRuns();
      return;
    }
    const stats = this.stats;
    stats.mergeTotalBytes = (this.spilledRecords + this.inner.heldRecords) * RECORD_BYTES;
    const fanIn = this.fanIn;
    const readBuffers = Array.from({ length: fanIn }, () => new Uint8Array(mergeReadBytes));
    const out = new Uint8Array(mergeOutputBytes);
    this.notePeak(mergeBuffersBytes(fanIn));
    let resumedMs = performance.now();
    try {
      const remainder = this.inner.heldRecords > 0 ? 1 : 0;
      // Merge the smallest runs first, only as many as needed to bring the
      // final merge down to the fan-in: each intermediate merge rewrites as
      // little as it can.
      while (this.runs.length + remainder > fanIn) {
        const take = Math.min(fanIn, this.runs.length + remainder - fanIn + 1);
        this.runs.sort((a, b) => a.bytes - b.bytes);
        const group = this.runs.slice(0, take);
        const merged = this.newFile();
        this.runs = [merged, ...this.runs.slice(take)];
        const sources = group.map((run, i) => fileRunSource(run, readBuffers[i]));
        for (const chunk of mergeSorted(sources, out)) {
          merged.append(chunk);
          stats.mergeMs += performance.now() - resumedMs;
          yield EMPTY;
          resumedMs = performance.now();
        }
        for (const run of group) this.closeFile(run);
        stats.runs++;
        stats.spilledBytes += merged.bytes;
        stats.mergePasses++;
      }
      const sources: SortedSource[] = this.runs.map((run, i) => fileRunSource(run, readBuffers[i]));
      if (remainder > 0) sources.push(piecesSource(this.inner.sortedRuns()));
      stats.mergePasses++;
      for (const chunk of mergeSorted(sources, out)) {
        stats.mergedBytes += chunk.length;
        stats.mergeMs += performance.now() - resumedMs;
        yield chunk;
        resumedMs = performance.now();
      }
      stats.mergeMs += performance.now() - resumedMs;
      assert(
        stats.mergedBytes === stats.mergeTotalBytes,
        `merged ${stats.mergedBytes} of ${stats.mergeTotalBytes} B`,
      );
    } finally {
      this.close();
    }
  }

  /** A new scratch file, tracked before anything is written: close() frees it whatever happens next. */
  private newFile(): ScratchFile {
    const file = new ScratchFile(this.tempDir);
    this.open.add(file);
    return file;
  }

  private closeFile(file: ScratchFile): void {
    file.close();
    this.open.delete(file);
  }

  /**
   * Close every scratch file (the kernel frees their space). sortedChunks()
   * does it at its end, or when its generator is returned early; call it when a
   * run fails before then. Safe to call again.
   */
  close(): void {
    for (const file of this.open) file.close();
    this.open.clear();
    this.runs = [];
  }
}
