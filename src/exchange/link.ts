/**
 * PeerLink: everything between this peer and one other peer. It dials (with
 * retry), owns both streams (ours out, theirs in) and turns every frame and
 * every close into a state step or a failure reported to the Mesh.
 *
 * Two TCP connections carry a link, and nothing orders one against the other,
 * so the link has two state paths (src/exchange/streams.ts), one per direction:
 *
 *   out: dialing -> open -> done -> acked                  (or lost)
 *   in:  (none) -> open -> done -> ready -> committed -> confirmed   (or lost)
 *
 * Each frame is accepted only in the state that expects it (the decoder's
 * allowed set is a function of the state); anything else is a protocol
 * violation by that peer. docs/architecture.md draws both paths.
 *
 * With a shared secret each connection carries sealed records after its
 * handshake (src/exchange/seal.ts): the Connection seals what it sends, and
 * every received chunk goes through the link's Opener before the FrameDecoder.
 * A record that fails to open fails the run naming the link.
 */
import { assert, errorMessage, NetsortError } from "../errors.ts";
import { log } from "../log.ts";
import type { ServerEntry } from "../types.ts";
import type { MeshClock } from "./clock.ts";
import { Connection } from "./connection.ts";
import { FrameDecoder } from "./decoder.ts";
import type { LinkSocket, LocalIdentity } from "./handshake.ts";
import { allowedIn, endpoint, hex32, isAbortReport, type LinkEvents, reportedError } from "./link-terms.ts";
import {
  decodeMark,
  decodeReady,
  decodeSample,
  decodeSummary,
  encodeEmpty,
  encodeSummary,
  FrameType,
  ProtocolError,
} from "./protocol.ts";
import { Redialer } from "./redial.ts";
import { type LinkKeys, linkOpener, linkSealer, type Opener, SealError } from "./seal.ts";
import { type InState, InStream, OutStream, type SocketHandler } from "./streams.ts";

export { endpoint } from "./link-terms.ts";

const ping = encodeEmpty(FrameType.Ping);

/** A direction that sent nothing for a third of the idle timeout, and has nothing queued, sends PING. */
function pingIfQuiet(conn: Connection<SocketHandler>, nowMs: number, idleTimeoutMs: number): void {
  if (nowMs - conn.lastSentMs > idleTimeoutMs / 3 && conn.queuedFrames === 0) conn.send(ping);
}

export class PeerLink {
  readonly out: OutStream;
  in: InStream | null = null;
  private inDecoder: FrameDecoder | null = null;
  /** With a secret: the openers of our out-stream (their answers) and of their stream. */
  private outOpener: Opener | null = null;
  private inOpener: Opener | null = null;
  private readonly redialer: Redialer;
  /** Set once we told this peer of our failure (ABORT on a stream, or REFUSE). */
  told = false;
  /** After a failure: incoming bytes are read and dropped until the peer closes (Mesh.drain). */
  private draining = false;
  /**
   * --partition sample: records cannot be placed until every sample is in, so
   * after this peer's SAMPLE its stream is held: the socket paused (TCP slows
   * the sender) and bytes already read kept here, until release().
   */
  private holding: { chunks: Uint8Array[]; bytes: number } | null = null;
  /** The in-stream's plain-bytes path (after the opener, with a secret): release() replays held bytes into it. */
  private inPlain: ((bytes: Uint8Array) => void) | null = null;

  constructor(
    readonly peer: ServerEntry,
    peers: number,
    local: LocalIdentity,
    clock: MeshClock,
    helloTimeoutMs: number,
    retryIntervalMs: number,
    private readonly events: LinkEvents,
    /** --partition sample: SAMPLE comes first on every stream, and the stream is held after it. */
    private readonly sampling: boolean,
  ) {
    this.out = new OutStream(peer, peers);
    this.redialer = new Redialer(local, peer, clock, helloTimeoutMs, retryIntervalMs, {
      onOpen: (socket, rest, keys) => this.onDialOpen(socket, rest, keys),
      onRejected: (error, payload) => {
        if (payload === null) this.events.onFail(error, false);
        else this.onRefused(payload);
      },
      mayDial: () => this.out.state === "dialing" && !this.told && this.events.mayDial(),
    });
  }

  get id(): number {
    return this.peer.serverId;
  }

  /** Both directions are open (or further along). */
  get connected(): boolean {
    return this.out.reached("open") && this.in?.reached("open") === true;
  }

  // ---- dialing ----------------------------------------------------------------

  /** Dial now (again); no-op while an attempt is under way or the stream is open. */
  startDial(): void {
    if (this.out.state !== "dialing" || this.told) return;
    this.redialer.start();
  }

  /** The listener refused our hello (or, with a secret, our proved stream), or reported its abort. */
  private onRefused(payload: Uint8Array): void {
    const told = isAbortReport(payload);
    if (told) this.told = true;
    const prefix = told ? "" : `peer ${this.id} at ${endpoint(this.peer)} refused us: `;
    this.events.onFail(reportedError(payload, this.id, prefix), told);
  }

  private onDialOpen(socket: LinkSocket, rest: Uint8Array, keys: LinkKeys | null): void {
    const frame = this.events.failureFrame();
    if (frame !== null) {
      // We dialed only to deliver our abort (we could not listen): say why, hang up.
      socket.write(keys === null ? frame : linkSealer(keys, "dialer").seal(frame));
      socket.end();
      this.told = true;
      this.events.onTold(this.id);
      return;
    }
    // With a secret the listener's verdict comes sealed after its AUTH: a REFUSE
    // (its failure, or a settings mismatch it saw after our proof) instead of silence.
    const allowed = [FrameType.Ack, FrameType.Abort, FrameType.Ping];
    if (keys !== null) allowed.push(FrameType.Refuse);
    const decoder = new FrameDecoder(
      { onRecords: () => {}, onControl: (type, payload) => this.onOutFrame(type, payload) },
      new Set(allowed),
    );
    let receive = (chunk: Uint8Array) => {
      decoder.push(chunk);
    };
    if (keys !== null) {
      this.out.conn.sealer = linkSealer(keys, "dialer");
      const opener = linkOpener(keys, "dialer", receive);
      this.outOpener = opener;
      receive = (chunk) => opener.push(chunk);
    }
    socket.data = {
      onData: (chunk) => {
        if (this.draining) return;
        this.out.conn.lastReceivedMs = performance.now();
        try {
          receive(chunk);
        } catch (error) {
          this.events.onFail(this.violation(error), false);
        }
      },
      onDrain: () => this.out.conn.flush(),
      onClose: (why) => this.onOutClosed(why),
    };
    this.out.to("open");
    this.out.conn.attach(socket);
    log.debug(`connected to peer ${this.id} at ${endpoint(this.peer)}`);
    if (rest.length > 0) socket.data.onData(rest);
    this.events.onProgress();
  }

  private onOutFrame(type: FrameType, payload: Uint8Array): void {
    if (type === FrameType.Abort) {
      this.onAbort(payload);
      return;
    }
    if (type === FrameType.Refuse) {
      this.out.stop();
      this.onRefused(payload);
      return;
    }
    if (type !== FrameType.Ack) return; // PING: lastReceivedMs already moved
    const ack = decodeSummary(payload);
    const sent = this.out;
    if (sent.state !== "done") {
      throw new ProtocolError(sent.state === "acked" ? "a second ACK" : "ACK before our DONE");
    }
    if (ack.records !== sent.records || ack.digest !== sent.digest) {
      const what =
        ack.records !== sent.records
          ? `${ack.records} records, we sent ${sent.records}`
          : `${ack.records} records as sent, but the digest differs: theirs ${hex32(ack.digest)}, ours ${hex32(sent.digest)}`;
      this.events.onFail(new NetsortError(`peer ${this.id} acknowledged ${what}`), false);
      return;
    }
    sent.to("acked");
    this.events.onProgress();
  }

  private onOutClosed(why: string): void {
    this.out.conn.markClosed();
    // Once they acknowledged all our records, the out-stream has done its job: a
    // peer that finishes closes both connections, and this close can be handled
    // before the frames it sent on the other one are read (two sockets, no order
    // between them). The in-stream decides (docs/reliability.md, problem E).
    if (this.out.state === "acked" || this.out.state === "lost") return;
    this.out.to("lost");
    const partial = this.outOpener?.atRecordBoundary === false ? " inside a sealed record" : "";
    this.events.onFail(
      new NetsortError(`lost connection to peer ${this.id} (${endpoint(this.peer)})${partial}: ${why}`),
      false,
    );
  }

  // ---- the incoming stream --------------------------------------------------------

  /** The listener accepted this peer's hello: its stream is open (sealed when `keys` are given). */
  attachIn(socket: LinkSocket, rest: Uint8Array, inputRecords: number, keys: LinkKeys | null = null): void {
    assert(this.in === null, `one stream from peer ${this.id}`);
    const stream = new InStream(this.peer, new Connection<SocketHandler>(), inputRecords);
    this.in = stream;
    const decoder = new FrameDecoder(
      {
        onRecords: (buf, offset, length) => {
          stream.checkMark(buf, offset, length);
          stream.count(buf, offset, length);
          this.events.onRecords(this.id, buf, offset, length);
        },
        onControl: (type, payload) => this.onInFrame(stream, type, payload),
      },
      allowedIn("open"),
    );
    this.inDecoder = decoder;
    // Plain frames (opened, with a secret) go to the decoder, or are held after a SAMPLE.
    const plain = (bytes: Uint8Array) => {
      if (this.holding !== null) return this.hold(bytes);
      const used = decoder.push(bytes);
      if (this.holding !== null) this.hold(bytes.subarray(used));
    };
    this.inPlain = plain;
    let receive = plain;
    if (keys !== null) {
      stream.conn.sealer = linkSealer(keys, "listener");
      const opener = linkOpener(keys, "listener", plain);
      this.inOpener = opener;
      receive = (chunk) => opener.push(chunk);
    }
    socket.data = {
      onData: (chunk) => {
        if (this.draining) return;
        stream.conn.lastReceivedMs = performance.now();
        try {
          receive(chunk);
        } catch (error) {
          this.events.onFail(this.violation(error), false);
        }
        // Held: stop reading, so TCP slows the sender until release().
        if (this.holding !== null) socket.pause();
      },
      onDrain: () => stream.conn.flush(),
      onClose: (why) => this.onInClosed(why),
    };
    stream.conn.attach(socket);
    log.debug(`peer ${this.id} connected`);
    if (rest.length > 0) socket.data.onData(rest);
    this.events.onProgress();
  }

  private onInFrame(stream: InStream, type: FrameType, payload: Uint8Array): void {
    switch (type) {
      case FrameType.Abort:
        this.onAbort(payload);
        return;
      case FrameType.Sample: {
        if (!this.sampling) throw new ProtocolError("SAMPLE without --partition sample");
        if (stream.sample !== null || stream.records > 0)
          throw new ProtocolError("SAMPLE after the stream began");
        stream.sample = decodeSample(payload);
        // Hold the rest of the stream until every sample is in (release()).
        this.holding = { chunks: [], bytes: 0 };
        this.inDecoder?.stop();
        break;
      }
      case FrameType.Mark: {
        const mark = decodeMark(payload);
        if (mark < stream.mark) throw new ProtocolError(`MARK went down from ${stream.mark} to ${mark}`);
        stream.mark = mark;
        break;
      }
      case FrameType.Done: {
        const done = decodeSummary(payload);
        if (done.records !== stream.records || done.digest !== stream.digest) {
          const what =
            done.records !== stream.records
              ? `received ${stream.records} records, peer ${this.id} sent ${done.records}`
              : `${stream.records} records as sent, but the digest differs: received ${hex32(stream.digest)}, peer ${this.id} sent ${hex32(done.digest)}`;
          this.events.onFail(new NetsortError(`stream from peer ${this.id} is corrupt: ${what}`), false);
          return;
        }
        this.stepIn(stream, "done");
        stream.conn.send(encodeSummary(FrameType.Ack, done));
        break;
      }
      case FrameType.Ready:
        stream.validation = decodeReady(payload);
        this.stepIn(stream, "ready");
        break;
      case FrameType.Committed:
        this.stepIn(stream, "committed");
        break;
      case FrameType.Confirmed:
        this.stepIn(stream, "confirmed");
        break;
      default:
        return; // PING: lastReceivedMs already moved
    }
    this.events.onProgress();
  }

  /** Keep plain bytes read while the stream is held (the caller stops reading the socket). */
  private hold(bytes: Uint8Array): void {
    const holding = this.holding;
    assert(holding !== null, "holding");
    if (bytes.length > 0) {
      holding.chunks.push(bytes.slice()); // the socket's buffer is only valid during the call
      holding.bytes += bytes.length;
    }
  }

  /** Every sample is in: place the held bytes and read on. */
  release(): void {
    const holding = this.holding;
    const stream = this.in;
    if (holding === null || stream === null) return;
    this.holding = null;
    stream.conn.lastReceivedMs = performance.now();
    this.inDecoder?.resume();
    const socket = stream.conn.socket as LinkSocket | null;
    try {
      for (const bytes of holding.chunks) {
        if (stream.conn.closed) break;
        this.inPlain?.(bytes); // already opened: straight to the decoder
      }
    } catch (error) {
      this.events.onFail(this.violation(error), false);
    }
    socket?.resume();
  }

  /** True while the in-stream is held (its silence is ours, not the peer's). */
  get held(): boolean {
    return this.holding !== null;
  }

  private stepIn(stream: InStream, next: InState): void {
    stream.to(next);
    if (this.inDecoder !== null) this.inDecoder.allowed = allowedIn(next);
  }

  private onInClosed(why: string): void {
    const stream = this.in;
    assert(stream !== null, "a stream closes after it opened");
    stream.conn.markClosed();
    if (stream.state === "confirmed" || stream.state === "lost") return;
    const where = {
      open: `mid-stream after ${stream.records} records`,
      done: "before it was ready",
      ready: "before it committed its output",
      committed: "after committing its output, before confirming it",
    }[stream.state];
    const partial =
      this.inOpener?.atRecordBoundary === false
        ? " inside a sealed record"
        : this.inDecoder?.atFrameBoundary === false
          ? " inside a frame"
          : "";
    stream.to("lost");
    this.events.onFail(
      new NetsortError(
        `peer ${this.id} (${endpoint(this.peer)}) closed its stream ${where}${partial}: ${why}`,
      ),
      false,
    );
  }

  private onAbort(payload: Uint8Array): void {
    this.told = true;
    this.events.onTold(this.id);
    this.events.onFail(reportedError(payload, this.id), true);
  }

  /**
   * A frame or record this peer should never have sent: its fault, said so. A
   * sealed record that does not open may be the network's doing (or an
   * attacker's): that names the link, not the peer.
   */
  private violation(error: unknown): NetsortError {
    if (error instanceof SealError) {
      return new NetsortError(`link with peer ${this.id} (${endpoint(this.peer)}): ${error.message}`);
    }
    const why = errorMessage(error).replace(/^assertion failed: /, "");
    return new NetsortError(`protocol violation by peer ${this.id} (${endpoint(this.peer)}): ${why}`);
  }

  // ---- announcements, liveness, the end ---------------------------------------------

  /** Send one of our announcements (READY, COMMITTED, CONFIRMED) on the out-stream. */
  announce(frame: Uint8Array): void {
    this.out.conn.send(frame);
  }

  /** Tell this peer of our failure on every connection we have with it. */
  sendAbort(frame: Uint8Array): boolean {
    let sent = false;
    for (const conn of this.connections()) {
      if (conn.socket !== null && !conn.closed) {
        conn.send(frame);
        sent = true;
      }
    }
    this.out.stop();
    this.redialer.stopRetrying(); // a dial under way delivers the ABORT when it opens
    if (sent) this.told = true;
    return sent;
  }

  /**
   * Idle check and keep-alive, every clock tick: a connected direction that
   * received nothing for the idle timeout at two checks in a row fails the link;
   * one that sent nothing for a third of it sends PING.
   *
   * Why two checks: timers run before socket reads in an event-loop turn. After
   * a busy stretch of our own, too short to count as a stall (MeshClock), the
   * peer's PINGs can sit unread in the kernel while the first check looks at
   * a stale clock; the reads that follow it clear the peer before the second.
   */
  checkLiveness(nowMs: number, forgiveFromMs: number, idleTimeoutMs: number): NetsortError | null {
    for (const conn of this.connections()) {
      if (conn.socket === null || conn.closed) continue;
      // A held stream is silent because we stopped reading it.
      const heldIn = this.holding !== null && conn === this.in?.conn;
      const idle = !heldIn && nowMs - Math.max(conn.lastReceivedMs, forgiveFromMs) > idleTimeoutMs;
      if (idle && conn.seenIdle) {
        return new NetsortError(
          `no traffic from peer ${this.id} (${endpoint(this.peer)}) for ${idleTimeoutMs} ms`,
        );
      }
      conn.seenIdle = idle;
      pingIfQuiet(conn, nowMs, idleTimeoutMs);
    }
    return null;
  }

  /**
   * From inside a long synchronous step (a spill), where no clock tick or
   * `drain` event runs: hand what is queued to the kernel, and PING each
   * direction that sent nothing for a third of the idle timeout, as a tick would.
   */
  keepAlive(nowMs: number, idleTimeoutMs: number): void {
    for (const conn of this.connections()) {
      if (conn.socket === null || conn.closed) continue;
      conn.flush();
      pingIfQuiet(conn, nowMs, idleTimeoutMs);
    }
  }

  /** End our side of both connections and drop whatever still arrives (see Mesh.drain). */
  drain(): void {
    this.draining = true;
    for (const conn of this.connections()) {
      if (conn.socket === null || conn.closed) continue;
      try {
        conn.socket.end();
      } catch {
        // closed meanwhile
      }
    }
  }

  /** Close both directions now (after a failure that this peer's silence caused). */
  closeAll(): void {
    for (const c of this.connections()) c.close();
  }

  /** Our dial to this peer is still in its handshake. */
  get dialing(): boolean {
    return this.redialer.busy;
  }

  stopDialing(): void {
    this.redialer.stop();
  }

  connections(): Connection<SocketHandler>[] {
    return this.in === null ? [this.out.conn] : [this.out.conn, this.in.conn];
  }
}
