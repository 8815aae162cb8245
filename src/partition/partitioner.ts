/**
 * Partition: decide each record's owner and append it to that owner's outgoing
 * batch. Batches are the stream's own pooled buffers (header room in front), so
 * a full batch is sent without another copy, and when a peer's pool is all in
 * flight the partitioner waits for its `drain`: backpressure reaches the reader.
 * Records this peer owns go to a local batch and never touch a socket.
 *
 * Key-range rounds: with `rounds` > 1 the caller reads its input once per
 * round and each pass routes only the records of that round: the g-th of
 * `rounds` equal slices of every owner's range (by the key's first 32 bits).
 * After a round, every stream gets a MARK (src/exchange/protocol.ts): the
 * owner holds all our records below it, so it can sort and write that part
 * of its output while later rounds still arrive (src/peer/drain.ts). Reading
 * the input again from the page cache costs far less than the disk time it
 * overlaps (docs/performance.md, "Key-range rounds").
 *
 * Two ways to find the owner, chosen at construction: "bits" (splitters null)
 * gives peer i the i-th equal range of 48-bit key prefixes (record.ts); "sample"
 * compares the whole record with N-1 splitters (sample.ts). Either way the owner
 * is one function fixed for the partitioner's life, so the record loop's call
 * site sees one function per process.
 */

import { assert, NetsortError } from "../errors.ts";
import { FRAME_HEADER_BYTES } from "../exchange/protocol.ts";
import type { OutStream } from "../exchange/streams.ts";
import { batchBytes } from "../limits.ts";
import { makeOwnerFn, RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";
import { makeSplitterOwnerFn, sampleHotFunctions } from "./sample.ts";

const headerWords = FRAME_HEADER_BYTES / 4;
const batchWords = batchBytes / 4;
/** The record loop runs on slices of at most this many bytes (see push). */
const routeSliceBytes = 256 * RECORD_BYTES;

export type LocalSink = (buf: Uint8Array, offset: number, length: number) => void;

const TWO_POW_16 = 2 ** 16;
const TWO_POW_32 = 2 ** 32;
/** A 16-bit key prefix whose records fall in more than one round (or owner): decided record by record. */
const MIXED = 255;

/** An owner's 48-bit key prefixes [rangeStart, rangeEnd). */
export interface KeyRange {
  rangeStart: number;
  rangeEnd: number;
}

/**
 * Where round g of `rounds` starts in a range, as a 32-bit prefix: the range's
 * first-32-bit values cut into `rounds` equal slices (some empty when the range
 * is narrower than `rounds` such values). roundCut(r, rounds, rounds) is past its end.
 */
export function roundCut(range: KeyRange, g: number, rounds: number): number {
  const first32 = Math.floor(range.rangeStart / TWO_POW_16);
  const end32 = Math.floor((range.rangeEnd - 1) / TWO_POW_16) + 1;
  return first32 + Math.floor((g * (end32 - first32)) / rounds);
}

export class Partitioner {
  private readonly owner: (record: Uint8Array, offset: number) => number;
  /** Each owner's batch (null: none yet, or sent); ours is `local`, always there. */
  private readonly bufs: Array<Uint8Array | null>;
  private readonly words: Array<Uint32Array | null>;
  /** Fill of each batch in u32 words, counted from the end of the header. */
  private readonly fillWords: Int32Array;
  /** Our own records' batch, laid out like a stream's (header room first) so one loop fills all. */
  private readonly local = new Uint8Array(FRAME_HEADER_BYTES + batchBytes);
  /** Records routed to each owner (ourselves included), for the logs and tests. */
  readonly routed: Float64Array;
  /** This round routes the records of owner k whose first 32 key bits lie in [roundLow32[k], roundHigh32[k]). */
  private readonly roundLow32: Float64Array;
  private readonly roundHigh32: Float64Array;
  /**
   * The round of every record by its first 16 key bits, or MIXED where a round
   * or owner boundary cuts that prefix: most records of other rounds are
   * skipped with one table lookup, without finding their owner.
   */
  private readonly roundOf16: Uint8Array;
  private roundNow = 0;

  constructor(
    private readonly self: number,
    private readonly outs: ReadonlyArray<OutStream | null>,
    private readonly sink: LocalSink,
    /** null: bits mode; else "sample" mode's N-1 splitter records (chooseSplitters in sample.ts). */
    splitters: Uint8Array | null = null,
    /** Key-range rounds (1: one pass, no marks) and every owner's range, by peer id. */
    readonly rounds = 1,
    private readonly ranges: ReadonlyArray<KeyRange> = [],
  ) {
    const peers = outs.length;
    assert(outs[self] === null, "no stream to ourselves");
    this.owner = splitters === null ? makeOwnerFn(peers) : makeSplitterOwnerFn(splitters, peers);
    this.bufs = outs.map((_, k) => (k === self ? this.local : null));
    this.words = outs.map((_, k) => (k === self ? new Uint32Array(this.local.buffer) : null));
    this.fillWords = new Int32Array(peers);
    this.routed = new Float64Array(peers);
    assert(Number.isInteger(rounds) && rounds >= 1, `rounds: ${rounds}`);
    assert(rounds === 1 || ranges.length === peers, "a range per owner with rounds");
    this.roundLow32 = new Float64Array(peers);
    this.roundHigh32 = new Float64Array(peers).fill(TWO_POW_32);
    this.roundOf16 = rounds === 1 ? new Uint8Array(TWO_POW_16) : roundTable(ranges, rounds);
    this.beginRound(0);
  }

  /** The round being routed (0-based). */
  get round(): number {
    return this.roundNow;
  }

  /** Route only round g's records from now on (rounds are taken in order, from 0). */
  beginRound(g: number): void {
    assert(
      Number.isInteger(g) && g >= 0 && g < this.rounds && g >= this.roundNow,
      `round ${g} of ${this.rounds}`,
    );
    this.roundNow = g;
    if (this.rounds === 1) return; // one pass: every record, [0, 2^32) as set at construction
    for (let k = 0; k < this.roundLow32.length; k++) {
      // The first round takes everything below its end, the last everything from its start.
      this.roundLow32[k] = g === 0 ? 0 : roundCut(this.ranges[k], g, this.rounds);
      this.roundHigh32[k] = g === this.rounds - 1 ? TWO_POW_32 : roundCut(this.ranges[k], g + 1, this.rounds);
    }
  }

  /**
   * After the pass of a round that is not the last: send every partial batch,
   * then tell each other owner that our records below the round's end are all
   * sent (MARK, behind those batches). Returns the same bound for our own
   * records (a 48-bit prefix), which all went to the sink.
   */
  endRound(): number {
    const g = this.roundNow;
    assert(g < this.rounds - 1, "the last round ends with finish()");
    for (let k = 0; k < this.outs.length; k++) if (this.fillWords[k] > 0) this.sendBatch(k);
    for (let k = 0; k < this.outs.length; k++) {
      this.outs[k]?.mark(roundCut(this.ranges[k], g + 1, this.rounds) * TWO_POW_16);
    }
    return roundCut(this.ranges[this.self], g + 1, this.rounds) * TWO_POW_16;
  }

  /**
   * Route every record of `chunk` (whole records, 4-byte aligned), waiting for
   * a stream to drain whenever its pool is all in flight.
   *
   * The record loop (`route`) only copies: it returns to this wrapper for every
   * rare event (a batch full, an owner without a batch), and is called on slices
   * of `routeSliceBytes`. With an `await` or the send calls inside the loop, JSC
   * recompiled it 3-5 times per run (FTL, 20-80 ms of JIT thread each, after
   * exits on paths it had not seen run; BUN_JSC_reportCompileTimes=1).
   */
  async push(chunk: Uint8Array): Promise<void> {
    assert(chunk.length % RECORD_BYTES === 0, "whole records");
    assert(chunk.byteOffset % 4 === 0, "chunks are word aligned");
    const src = new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4);
    let offset = 0;
    while (offset < chunk.length) {
      const end = Math.min(chunk.length, offset + routeSliceBytes);
      offset = this.route(chunk, src, offset, end);
      if (offset > 0) {
        const last = this.owner(chunk, offset - RECORD_BYTES);
        if (this.fillWords[last] === batchWords) this.sendBatch(last);
      }
      if (offset < end) {
        // The record at `offset` has no batch yet: take one, waiting if all are in flight.
        const k = this.owner(chunk, offset);
        if (this.words[k] === null && this.tryAcquire(k) === null) await this.acquire(k);
      }
    }
  }

  /**
   * Copy records [offset, end) into their owners' batches. Returns early, at the
   * offset of the next record to route, when a batch has just filled or when a
   * record's owner has no batch; else returns end.
   */
  private route(chunk: Uint8Array, src: Uint32Array, offset: number, end: number): number {
    const owner = this.owner;
    const fill = this.fillWords;
    const routed = this.routed;
    const all = this.words;
    const low32 = this.roundLow32;
    const high32 = this.roundHigh32;
    const roundOf16 = this.roundOf16;
    const round = this.roundNow;
    for (let w = offset / 4; offset < end; offset += RECORD_BYTES, w += RECORD_WORDS) {
      const r = roundOf16[(chunk[offset] << 8) | chunk[offset + 1]];
      if (r !== round && r !== MIXED) continue; // another round's record
      const k = owner(chunk, offset);
      if (r === MIXED) {
        const p32 =
          ((chunk[offset] << 24) |
            (chunk[offset + 1] << 16) |
            (chunk[offset + 2] << 8) |
            chunk[offset + 3]) >>>
          0;
        if (p32 < low32[k] || p32 >= high32[k]) continue;
      }
      const dst = all[k];
      if (dst === null) return offset;
      const d = headerWords + fill[k];
      for (let i = 0; i < RECORD_WORDS; i++) dst[d + i] = src[w + i];
      routed[k]++;
      const f = fill[k] + RECORD_WORDS;
      fill[k] = f;
      if (f === batchWords) return offset + RECORD_BYTES;
    }
    return offset;
  }

  /** Send every partial batch. Call once, after the last push. */
  finish(): void {
    for (let k = 0; k < this.outs.length; k++) if (this.fillWords[k] > 0) this.sendBatch(k);
  }

  /** Batch k is full (or the input ended): hand it to its stream, or to the sink for our own. */
  private sendBatch(k: number): void {
    const bytes = this.fillWords[k] * 4;
    this.fillWords[k] = 0;
    if (k === this.self) {
      this.sink(this.local, FRAME_HEADER_BYTES, bytes);
      return;
    }
    const out = this.outs[k];
    const buf = this.bufs[k];
    assert(out !== null && buf !== null, "a batch belongs to a stream");
    out.sendBatch(buf, bytes);
    this.bufs[k] = null;
    this.words[k] = null;
  }

  /** A fresh batch buffer for peer k if its stream has one free now, else null. */
  private tryAcquire(k: number): Uint32Array | null {
    const out = this.outs[k];
    assert(out !== null, "a stream to every other peer");
    const buf = out.acquire();
    if (buf === null) return null;
    assert(buf.byteOffset % 4 === 0, "batch buffers are word aligned");
    const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    this.bufs[k] = buf;
    this.words[k] = words;
    return words;
  }

  /** Wait until peer k's stream has a free batch buffer, and take it. */
  private async acquire(k: number): Promise<void> {
    const out = this.outs[k];
    assert(out !== null, "a stream to every other peer");
    while (this.tryAcquire(k) === null) {
      if (out.stopped) throw new NetsortError(`stream to peer ${k} stopped`);
      await out.whenFree();
    }
  }
}

/**
 * For every 16-bit key prefix, the round its records belong to, or MIXED when a
 * round boundary (or an owner boundary) falls inside it, so the record loop
 * must look closer. Owner k's round g covers its first-32-bit values
 * [roundCut(g), roundCut(g + 1)), the first round from the range's start, the
 * last to its end.
 */
function roundTable(ranges: ReadonlyArray<KeyRange>, rounds: number): Uint8Array {
  assert(rounds < MIXED - 1, `rounds ${rounds}`);
  const unset = MIXED - 1;
  const table = new Uint8Array(TWO_POW_16).fill(unset);
  for (const range of ranges) {
    for (let g = 0; g < rounds; g++) {
      const low = roundCut(range, g, rounds);
      const high = roundCut(range, g + 1, rounds);
      for (let c = Math.floor(low / TWO_POW_16); c * TWO_POW_16 < high; c++) {
        const whole = c * TWO_POW_16 >= low && (c + 1) * TWO_POW_16 <= high;
        table[c] = whole && (table[c] === unset || table[c] === g) ? g : MIXED;
      }
    }
  }
  // Prefixes in no range cannot occur (the ranges cover the key space): MIXED is safe for them.
  for (let c = 0; c < TWO_POW_16; c++) if (table[c] === unset) table[c] = MIXED;
  return table;
}

/** The record loop (and the sample mode's owner search), for JIT tuning (src/jit.ts). */
export const partitionHotFunctions: ReadonlyArray<HotFunction> = [
  // biome-ignore lint/complexity/useLiteralKeys: a private method, named for src/jit.ts
  Partitioner.prototype["route"],
  ...sampleHotFunctions,
];
