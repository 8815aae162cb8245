/**
 * One TCP connection's write side, with backpressure. Bun's `socket.write`
 * returns how many bytes the kernel took and queues nothing: the rest is kept
 * here, with its offset, and written from the `drain` handler. Frames queued here
 * are bounded by the callers (a fixed pool of batch buffers per stream), so a
 * slow receiver slows its sender instead of growing memory.
 */
import type { Socket } from "bun";
import { assert } from "../errors.ts";
import { maxPendingFrames } from "../limits.ts";
import { type Sealer, sealOutOffsetBytes, sealRoomAfterBytes, sealRoomBeforeBytes } from "./seal.ts";

interface Pending {
  buf: Uint8Array;
  offset: number;
  end: number;
  /** Called once the frame has been handed to the kernel whole (e.g. to recycle the buffer). */
  onWritten: (() => void) | null;
  /** `buf` sits in a larger buffer with sealRoomBefore/AfterBytes around it: seal it in place. */
  room: boolean;
  /** Already a sealed record (or no sealing on this connection). */
  sealed: boolean;
}

export class Connection<T = unknown> {
  socket: Socket<T> | null = null;
  private readonly pending: Pending[] = [];
  private head = 0;
  private flushWaiters: Array<() => void> = [];
  /** Monotonic ms of the last byte received / handed to the kernel, for idle checks and pings. */
  lastReceivedMs = performance.now();
  lastSentMs = performance.now();
  /** The last liveness check found nothing received for the idle timeout (PeerLink.checkLiveness). */
  seenIdle = false;
  closed = false;
  /**
   * With a shared secret, every frame becomes a sealed record as it is first
   * written: in queue order, so the record counter follows the wire order, and
   * frames queued before the handshake finished are sealed once it has. Set
   * before `attach`.
   */
  sealer: Sealer | null = null;

  /** Attach the socket once it is open; queued frames start flowing. */
  attach(socket: Socket<T>): void {
    assert(this.socket === null, "a connection is attached once");
    this.socket = socket;
    this.lastReceivedMs = performance.now();
    this.flush();
  }

  /**
   * Queue a whole frame. `buf` must not change until `onWritten` runs. `room`:
   * buf is a view with sealRoomBeforeBytes before it and sealRoomAfterBytes after
   * `length` in its ArrayBuffer, so with a sealer it is sealed in place (no copy
   * of the frame); otherwise a sealed copy is made and `buf` is left untouched
   * (shared frames such as PING or announcements).
   */
  send(buf: Uint8Array, length = buf.length, onWritten: (() => void) | null = null, room = false): void {
    if (this.closed) {
      onWritten?.();
      return;
    }
    assert(this.pending.length - this.head < maxPendingFrames, "connection queue bounded");
    this.pending.push({ buf, offset: 0, end: length, onWritten, room, sealed: false });
    this.flush();
  }

  /** Bytes not yet taken by the kernel. */
  get queuedFrames(): number {
    return this.pending.length - this.head;
  }

  /** Write as much as the kernel takes; called on send and on `drain`. */
  flush(): void {
    const socket = this.socket;
    if (socket === null || this.closed) return;
    while (this.head < this.pending.length) {
      const p = this.pending[this.head];
      if (this.sealer !== null && !p.sealed) this.seal(p, this.sealer);
      const wrote = socket.write(p.buf, p.offset, p.end - p.offset);
      if (wrote < 0) {
        this.markClosed();
        return;
      }
      if (wrote > 0) this.lastSentMs = performance.now();
      p.offset += wrote;
      if (p.offset < p.end) return; // kernel buffer full: `drain` calls flush again
      this.head++;
      p.onWritten?.();
    }
    // Compact once everything is written, so the array never grows without bound.
    this.pending.length = 0;
    this.head = 0;
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of waiters) w();
  }

  /** Turn a queued plaintext frame into its sealed record (it has not been written at all yet). */
  private seal(p: Pending, sealer: Sealer): void {
    assert(p.offset === 0, "a frame is sealed before its first byte is written");
    if (p.room) {
      const at = p.buf.byteOffset - sealRoomBeforeBytes;
      assert(at >= 0, "room before the frame");
      const out = new Uint8Array(p.buf.buffer, at, sealRoomBeforeBytes + p.end + sealRoomAfterBytes);
      const n = sealer.sealInto(
        out.subarray(sealRoomBeforeBytes, sealRoomBeforeBytes + p.end),
        out,
        sealOutOffsetBytes,
      );
      p.buf = out;
      p.offset = sealOutOffsetBytes;
      p.end = sealOutOffsetBytes + n;
    } else {
      p.buf = sealer.seal(p.buf.subarray(0, p.end));
      p.end = p.buf.length;
    }
    p.sealed = true;
  }

  /** Resolves when every queued byte has been handed to the kernel (or the socket closed). */
  whenFlushed(): Promise<void> {
    // Without a socket nothing will ever flush: do not make a closing mesh wait for it.
    if (this.head >= this.pending.length || this.closed || this.socket === null) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  /** The socket is gone: recycle queued buffers and release waiters. */
  markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (let i = this.head; i < this.pending.length; i++) this.pending[i].onWritten?.();
    this.pending.length = 0;
    this.head = 0;
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of waiters) w();
  }

  /** Close the socket now (after a flush if the caller awaited one). */
  close(): void {
    const socket = this.socket;
    this.markClosed();
    if (socket !== null) {
      try {
        socket.end();
      } catch {
        // already closed: nothing to do
      }
    }
  }
}
