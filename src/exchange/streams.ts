/**
 * The two directions of a link (src/exchange/link.ts): OutStream (we dialed, we
 * send records) and InStream (they dialed, we receive). Each keeps the record
 * count and the CRC-32 digest of the records in stream order, so DONE can be
 * checked, and one state that only moves forward along its documented path,
 * asserted at every step (docs/architecture.md, "Link state machine").
 */
import { assert } from "../errors.ts";
import { batchBytes, maxQueuedBytesPerPeer, sendBudgetBytes } from "../limits.ts";
import { HUGE_PAGE_BYTES, hugeBuffer } from "../mem.ts";
import { RECORD_BYTES } from "../record.ts";
import type { ServerEntry } from "../types.ts";
import { Connection } from "./connection.ts";
import {
  encodeMark,
  encodeSummary,
  FRAME_HEADER_BYTES,
  FrameType,
  ProtocolError,
  type SamplePayload,
  writeHeader,
} from "./protocol.ts";
import { sealRoomAfterBytes, sealRoomBeforeBytes } from "./seal.ts";

/**
 * Batch buffers one outgoing stream may own: bounds its queued bytes. With many
 * peers the streams share one send budget instead (each keeps at least two
 * buffers, one filling while one is in flight), so a peer's fresh memory for
 * sending does not grow with the cluster.
 */
export function batchBuffersPerStream(peers: number): number {
  const perPeer = Math.floor(maxQueuedBytesPerPeer / batchBytes);
  const shared = Math.floor(sendBudgetBytes / batchBytes / Math.max(1, peers - 1));
  return Math.max(2, Math.min(perPeer, shared));
}

/** Per-socket dispatch, kept in Bun's `socket.data`. */
export interface SocketHandler {
  onData(chunk: Uint8Array): void;
  onDrain(): void;
  onClose(reason: string): void;
}

/**
 * A batch's slot in its pool: [sealRoomBeforeBytes][header][batchBytes][sealRoomAfterBytes],
 * so with a shared secret the frame is sealed in place (src/exchange/connection.ts)
 * and its ciphertext starts on a 64-byte boundary (see sealOutOffsetBytes). Slots
 * are 64-byte multiples, so every header sits 64-byte aligned and payloads word aligned.
 */
const slotAlignBytes = 64;
const batchStrideBytes =
  Math.ceil((sealRoomBeforeBytes + FRAME_HEADER_BYTES + batchBytes + sealRoomAfterBytes) / slotAlignBytes) *
  slotAlignBytes;

/**
 * dialing: no handshake done yet (batches may already queue); open: records
 * flow; done: DONE sent; acked: the receiver confirmed count and digest;
 * lost: the connection closed before it was acked. A connection that closes
 * after ACK leaves the state at acked: its job is done (Connection.closed says
 * the socket is gone).
 */
export type OutState = "dialing" | "open" | "done" | "acked" | "lost";
const outNext: Record<OutState, readonly OutState[]> = {
  dialing: ["open", "lost"],
  open: ["done", "lost"],
  done: ["acked", "lost"],
  acked: [],
  lost: [],
};

const outOrder: readonly OutState[] = ["dialing", "open", "done", "acked"];

export class OutStream {
  readonly conn = new Connection<SocketHandler>();
  state: OutState = "dialing";
  records = 0;
  digest = 0;
  /** Set when the mesh fails: waiters wake and the partitioner stops. */
  stopped = false;
  /** The last MARK sent (0: none). */
  private marked = 0;
  private readonly free: Uint8Array[] = [];
  private created = 0;
  private waiters: Array<() => void> = [];

  private readonly poolBuffers: number;
  /** The pool's memory, carved into batch buffers; allocated at the first acquire. */
  private slab: Uint8Array | null = null;

  constructor(
    readonly peer: ServerEntry,
    peers = 2,
  ) {
    this.poolBuffers = batchBuffersPerStream(peers);
  }

  /** Move along the state path; any other step is a bug. */
  to(next: OutState): void {
    assert(
      outNext[this.state].includes(next),
      `stream to peer ${this.peer.serverId}: ${this.state} -> ${next}`,
    );
    this.state = next;
  }

  /** At least `state` on the path (lost counts as none). */
  reached(state: Exclude<OutState, "lost">): boolean {
    return this.state !== "lost" && outOrder.indexOf(this.state) >= outOrder.indexOf(state);
  }

  /**
   * A free batch buffer ([header][batchBytes of payload], a view with sealing
   * room around it in the pool), or null when all are queued.
   */
  acquire(): Uint8Array | null {
    const buf = this.free.pop();
    if (buf !== undefined) return buf;
    if (this.created < this.poolBuffers) {
      if (this.slab === null) {
        // One allocation per stream; a pool of 1-2 MiB goes on one huge page
        // (one page fault instead of ~500: fresh memory is expensive here).
        const poolBytes = this.poolBuffers * batchStrideBytes;
        this.slab = hugeBuffer(
          poolBytes > HUGE_PAGE_BYTES / 2 ? Math.max(poolBytes, HUGE_PAGE_BYTES) : poolBytes,
        );
      }
      const start = this.created * batchStrideBytes + sealRoomBeforeBytes;
      this.created++;
      return this.slab.subarray(start, start + FRAME_HEADER_BYTES + batchBytes);
    }
    return null;
  }

  /** Resolves when a buffer may be free (the caller retries acquire). */
  whenFree(): Promise<void> {
    if (this.stopped || this.free.length > 0 || this.created < this.poolBuffers) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Send `payloadBytes` of records that sit at buf[8, 8 + payloadBytes). The buffer comes back via acquire. */
  sendBatch(buf: Uint8Array, payloadBytes: number): void {
    assert(this.state === "dialing" || this.state === "open", "no data after DONE");
    assert(payloadBytes > 0 && payloadBytes % RECORD_BYTES === 0 && payloadBytes <= batchBytes, "batch size");
    writeHeader(buf, 0, FrameType.Data, payloadBytes);
    this.digest = Bun.hash.crc32(
      buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + payloadBytes),
      this.digest,
    );
    this.records += payloadBytes / RECORD_BYTES;
    this.conn.send(buf, FRAME_HEADER_BYTES + payloadBytes, () => this.release(buf), true);
  }

  /**
   * Every record we still send this peer has a 48-bit prefix of at least
   * `prefix48` (the end of a key-range round): it may sort and write what it
   * holds below that. Queued behind the batches already sent, like them.
   */
  mark(prefix48: number): void {
    assert(this.state === "dialing" || this.state === "open", "no mark after DONE");
    assert(prefix48 >= this.marked, `marks never go down: ${this.marked} -> ${prefix48}`);
    this.marked = prefix48;
    this.conn.send(encodeMark(prefix48));
  }

  /** End of our records for this peer (the stream is open: the mesh is up). */
  finish(): void {
    this.to("done");
    this.conn.send(encodeSummary(FrameType.Done, { records: this.records, digest: this.digest }));
  }

  /** The mesh failed: wake every waiter so nothing awaits forever. */
  stop(): void {
    this.stopped = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private release(buf: Uint8Array): void {
    this.free.push(buf);
    const w = this.waiters.shift();
    w?.();
  }
}

/**
 * open: records flow; done: DONE checked and ACK sent; ready, committed,
 * confirmed: the peer announced its output durable, linked into place, and
 * still in place after everyone's commit; lost: the connection closed before
 * CONFIRMED (after it, the state stays confirmed).
 */
export type InState = "open" | "done" | "ready" | "committed" | "confirmed" | "lost";
const inOrder: readonly InState[] = ["open", "done", "ready", "committed", "confirmed"];

export class InStream {
  state: InState = "open";
  records = 0;
  digest = 0;
  /** With --partition sample: the peer's sample, first on its stream. */
  sample: SamplePayload | null = null;
  /** The peer's last MARK: every record still to come has a 48-bit prefix of at least this (0: none yet). */
  mark = 0;
  /** The READY frame's validation payload (--validate), or null. */
  validation: Uint8Array | null = null;

  constructor(
    readonly peer: ServerEntry,
    readonly conn: Connection<SocketHandler>,
    /** The peer's input size in records, from its hello. */
    readonly inputRecords: number,
  ) {}

  /** One step along the path, or to lost; anything else is a bug (frames are checked before this). */
  to(next: InState): void {
    const ok =
      next === "lost"
        ? this.state !== "lost" && this.state !== "confirmed"
        : inOrder.indexOf(next) === inOrder.indexOf(this.state) + 1;
    assert(ok, `stream from peer ${this.peer.serverId}: ${this.state} -> ${next}`);
    this.state = next;
  }

  /** At least `state` on the path (lost counts as none). */
  reached(state: Exclude<InState, "lost">): boolean {
    return this.state !== "lost" && inOrder.indexOf(this.state) >= inOrder.indexOf(state);
  }

  /**
   * Records below the stream's MARK break its promise (we may have written that
   * part of our output already): a ProtocolError, whatever the drain did. One
   * comparison of the first 32 key bits per record, the next 16 only on a tie.
   */
  checkMark(buf: Uint8Array, offset: number, length: number): void {
    const mark = this.mark;
    if (mark === 0) return;
    const mark32 = Math.floor(mark / 65536);
    const mark16 = mark % 65536;
    for (let o = offset; o < offset + length; o += RECORD_BYTES) {
      const p32 = ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
      if (p32 > mark32) continue;
      const p16 = (buf[o + 4] << 8) | buf[o + 5];
      if (p32 === mark32 && p16 >= mark16) continue;
      throw new ProtocolError(
        `record with 48-bit prefix ${p32 * 65536 + p16} below the stream's MARK ${mark}`,
      );
    }
  }

  /** Account for records as they arrive (the digest chains over the stream in order). */
  count(buf: Uint8Array, offset: number, length: number): void {
    this.digest = Bun.hash.crc32(buf.subarray(offset, offset + length), this.digest);
    this.records += length / RECORD_BYTES;
  }
}
