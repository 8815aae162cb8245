/**
 * Partition: decide each record's owner and append it to that owner's outgoing
 * batch. Batches are the stream's own pooled buffers (header room in front), so
 * a full batch is sent without another copy, and when a peer's pool is all in
 * flight the partitioner waits for its `drain`: backpressure reaches the reader.
 * Records this peer owns go to a local batch and never touch a socket.
 */

import { assert, NetsortError } from "../errors.ts";
import { FRAME_HEADER_BYTES } from "../exchange/protocol.ts";
import type { OutStream } from "../exchange/streams.ts";
import { batchBytes } from "../limits.ts";
import { makeOwnerFn, RECORD_BYTES, RECORD_WORDS } from "../record.ts";
import type { HotFunction } from "../types.ts";

const headerWords = FRAME_HEADER_BYTES / 4;
const batchWords = batchBytes / 4;

export type LocalSink = (buf: Uint8Array, offset: number, length: number) => void;

export class Partitioner {
  private readonly owner: (record: Uint8Array, offset: number) => number;
  private readonly bufs: Array<Uint8Array | null>;
  private readonly words: Array<Uint32Array | null>;
  /** Fill of each batch in u32 words, counted from the end of the header. */
  private readonly fillWords: Int32Array;
  private readonly local = new Uint8Array(batchBytes);
  private readonly local32 = new Uint32Array(this.local.buffer);
  private localFillWords = 0;
  /** Records routed to each owner (ourselves included), for the logs and tests. */
  readonly routed: Float64Array;

  constructor(
    private readonly self: number,
    private readonly outs: ReadonlyArray<OutStream | null>,
    private readonly sink: LocalSink,
  ) {
    const peers = outs.length;
    assert(outs[self] === null, "no stream to ourselves");
    this.owner = makeOwnerFn(peers);
    this.bufs = outs.map(() => null);
    this.words = outs.map(() => null);
    this.fillWords = new Int32Array(peers);
    this.routed = new Float64Array(peers);
  }

  /**
   * Route every record of `chunk` (whole records, 4-byte aligned), waiting for
   * a stream to drain whenever its pool is all in flight.
   *
   * The record loop (`route`) is synchronous and only this wrapper awaits: with
   * an `await` inside the loop, JSC recompiled the loop 3-4 times per run
   * (FTL, ~50-80 ms of JIT thread each; BUN_JSC_reportCompileTimes=1), once.
   */
  async push(chunk: Uint8Array): Promise<void> {
    assert(chunk.length % RECORD_BYTES === 0, "whole records");
    assert(chunk.byteOffset % 4 === 0, "chunks are word aligned");
    const src = new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4);
    let offset = 0;
    while (true) {
      offset = this.route(chunk, src, offset);
      if (offset === chunk.length) return;
      // Blocked on the record at `offset`: its owner's pool is all in flight.
      await this.acquire(this.owner(chunk, offset));
    }
  }

  /**
   * Copy records from `offset` on into their owners' batches; returns where it
   * stopped: chunk.length, or the offset of a record whose owner has no free batch.
   */
  private route(chunk: Uint8Array, src: Uint32Array, offset: number): number {
    const self = this.self;
    const owner = this.owner;
    const fill = this.fillWords;
    const routed = this.routed;
    const all = this.words;
    for (let w = offset / 4; offset < chunk.length; offset += RECORD_BYTES, w += RECORD_WORDS) {
      const k = owner(chunk, offset);
      let dst: Uint32Array;
      let d: number;
      if (k === self) {
        dst = this.local32;
        d = this.localFillWords;
        this.localFillWords = d + RECORD_WORDS;
      } else {
        let words = all[k];
        if (words === null) {
          words = this.tryAcquire(k);
          if (words === null) return offset;
        }
        dst = words;
        d = headerWords + fill[k];
        fill[k] += RECORD_WORDS;
      }
      routed[k]++;
      for (let i = 0; i < RECORD_WORDS; i++) dst[d + i] = src[w + i];
      if (k === self) {
        if (this.localFillWords === batchWords) this.flushLocal();
      } else if (fill[k] === batchWords) {
        this.sendBatch(k);
      }
    }
    return offset;
  }

  /** Send every partial batch. Call once, after the last push. */
  finish(): void {
    for (let k = 0; k < this.outs.length; k++) if (this.fillWords[k] > 0) this.sendBatch(k);
    this.flushLocal();
  }

  private flushLocal(): void {
    if (this.localFillWords > 0) this.sink(this.local, 0, this.localFillWords * 4);
    this.localFillWords = 0;
  }

  private sendBatch(k: number): void {
    const out = this.outs[k];
    const buf = this.bufs[k];
    assert(out !== null && buf !== null, "a batch belongs to a stream");
    out.sendBatch(buf, this.fillWords[k] * 4);
    this.bufs[k] = null;
    this.words[k] = null;
    this.fillWords[k] = 0;
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

/** The record loop, for JIT tuning (src/jit.ts). */
// biome-ignore lint/complexity/useLiteralKeys: a private method, named for src/jit.ts
export const partitionHotFunctions: ReadonlyArray<HotFunction> = [Partitioner.prototype["route"]];
