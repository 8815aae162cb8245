/**
 * Partition: decide each record's owner and append it to that owner's outgoing
 * batch. Batches are the stream's own pooled buffers (header room in front), so
 * a full batch is sent without another copy, and when a peer's pool is all in
 * flight the partitioner waits for its `drain`: backpressure reaches the reader.
 * Records this peer owns go to a local batch and never touch a socket.
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

  constructor(
    private readonly self: number,
    private readonly outs: ReadonlyArray<OutStream | null>,
    private readonly sink: LocalSink,
    /** null: bits mode; else "sample" mode's N-1 splitter records (chooseSplitters in sample.ts). */
    splitters: Uint8Array | null = null,
  ) {
    const peers = outs.length;
    assert(outs[self] === null, "no stream to ourselves");
    this.owner = splitters === null ? makeOwnerFn(peers) : makeSplitterOwnerFn(splitters, peers);
    this.bufs = outs.map((_, k) => (k === self ? this.local : null));
    this.words = outs.map((_, k) => (k === self ? new Uint32Array(this.local.buffer) : null));
    this.fillWords = new Int32Array(peers);
    this.routed = new Float64Array(peers);
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
    for (let w = offset / 4; offset < end; offset += RECORD_BYTES, w += RECORD_WORDS) {
      const k = owner(chunk, offset);
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

/** The record loop (and the sample mode's owner search), for JIT tuning (src/jit.ts). */
export const partitionHotFunctions: ReadonlyArray<HotFunction> = [
  // biome-ignore lint/complexity/useLiteralKeys: a private method, named for src/jit.ts
  Partitioner.prototype["route"],
  ...sampleHotFunctions,
];
