/**
 * The mesh: one listener and one PeerLink per other peer, coordinated through
 * barriers (docs/protocol.md):
 *
 *   connected     every link open both ways
 *   allSampled    (--partition sample) every peer's SAMPLE arrived
 *   allReceived   every incoming stream delivered DONE (checked, ACKed)
 *   allReady      every peer said READY (output durable) and ACKed our stream
 *   allCommitted  every peer said COMMITTED (output linked into place)
 *   allConfirmed  every peer said CONFIRMED (still in place after all commits)
 *
 * The job moves through them in order (src/job.ts); the mesh turns anything
 * that goes wrong into one failure (src/exchange/failure.ts) that rejects every
 * wait. All waits are bounded: connect timeout, hello timeout, idle timeout.
 */
import type { TCPSocketListener } from "bun";
import { assert, errorMessage, NetsortError, UsageError } from "../errors.ts";
import { abortDrainMs, drainPollMs, flushTimeoutMs, mismatchGraceMs } from "../limits.ts";
import type { ServerEntry, SortOptions } from "../types.ts";
import { settledWithin } from "../wait.ts";
import { AcceptHandshake } from "./accept.ts";
import { MeshClock } from "./clock.ts";
import { MeshFailure } from "./failure.ts";
import type { HelloRefusal, LinkSocket, LocalIdentity, MismatchError } from "./handshake.ts";
import { fingerprintBytes, helloFlags, helloRefusal, outputTag, wireSettings } from "./identity.ts";
import { endpoint, PeerLink } from "./link.ts";
import { END_MARK, encodeEmpty, encodeReady, FrameType, type Hello } from "./protocol.ts";
import { StrangerLog } from "./strangers.ts";
import type { InStream, OutStream, SocketHandler } from "./streams.ts";

export { MismatchError } from "./handshake.ts";

export interface MeshEvents {
  /** Records from peer `from`; valid only during the call. */
  onRecords(from: number, buf: Uint8Array, offset: number, length: number): void;
}

/** Our own announcements, in order. */
type OwnPhase = "exchanging" | "ready" | "committed" | "confirmed";
const ownOrder: readonly OwnPhase[] = ["exchanging", "ready", "committed", "confirmed"];

type Barrier = "connected" | "allSampled" | "allReceived" | "allReady" | "allCommitted" | "allConfirmed";

export class Mesh {
  readonly self: ServerEntry;
  readonly peers: number;
  /** One link per other peer, by id (null at our own index). */
  readonly links: Array<PeerLink | null>;
  private readonly local: LocalIdentity;
  private readonly clock: MeshClock;
  private readonly failure: MeshFailure;
  private readonly strangers = new StrangerLog();
  private listener: TCPSocketListener<SocketHandler> | null = null;
  private readonly handshakes = new Set<AcceptHandshake>();
  private readonly barriers = new Map<Barrier, PromiseWithResolvers<void>>();
  private ownPhase: OwnPhase = "exchanging";
  private started = false;
  private finished = false;
  /** Set while tellByDialing runs: dialing continues after the failure, to deliver it. */
  private dialingToAbort = false;
  /** When the last HELLO arrived, for the linger window. */
  private lastHelloMs = Number.NEGATIVE_INFINITY;
  private readonly deadlineMs: number;
  /**
   * The first hello that showed a misconfiguration we do not act on at once
   * (see HelloRefusal): it fails us if the mesh is still not up mismatchGraceMs
   * later, or at the connect deadline, as the cause.
   */
  private suspicion: { error: MismatchError; atMs: number } | null = null;
  /** When the mesh was fully up (performance.now()), 0 before. */
  connectedAtMs = 0;
  /** Called after any stream moved forward (a MARK, a DONE, ...): the drain looks at lowestMark(). */
  onStreamProgress: (() => void) | null = null;

  constructor(
    private readonly options: SortOptions,
    events: MeshEvents,
    /** Our input's size in records, told to every peer in HELLO. */
    inputRecords: number,
  ) {
    const { config, serverId } = options;
    this.self = config.servers[serverId];
    this.peers = config.servers.length;
    this.deadlineMs = performance.now() + options.connectTimeoutMs;
    this.local = {
      serverId,
      peers: this.peers,
      secret: options.secret,
      hello: {
        flags: helloFlags(options),
        settings: wireSettings(options),
        inputRecords,
        fingerprint: fingerprintBytes(config.fingerprint),
        outputTag: outputTag(options.outputFile),
      },
    };
    this.failure = new MeshFailure(serverId, this.peers - 1);
    this.clock = new MeshClock(options.idleTimeoutMs, (now) => this.tick(now));
    const linkEvents = {
      onRecords: events.onRecords,
      onProgress: () => this.checkBarriers(),
      onFail: (error: NetsortError, told: boolean) => this.failFromLink(error, told),
      mayDial: () => !this.finished && (this.failure.error === null || this.dialingToAbort),
      failureFrame: () => (this.failure.error === null ? null : this.failure.frame(FrameType.Abort)),
      onTold: (peer: number) => this.failure.markTold(peer),
    };
    this.links = config.servers.map((s) =>
      s.serverId === serverId
        ? null
        : new PeerLink(
            s,
            this.peers,
            this.local,
            this.clock,
            options.helloTimeoutMs,
            options.retryIntervalMs,
            linkEvents,
            options.partition === "sample",
          ),
    );
    for (const b of [
      "connected",
      "allSampled",
      "allReceived",
      "allReady",
      "allCommitted",
      "allConfirmed",
    ] as const) {
      const d = Promise.withResolvers<void>();
      d.promise.catch(() => {});
      this.barriers.set(b, d);
    }
    this.checkBarriers();
  }

  /** Our outgoing streams by peer id (null at our own index), for the partitioner. */
  get out(): Array<OutStream | null> {
    return this.links.map((l) => l?.out ?? null);
  }

  /** Incoming streams by peer id (null at our own index or before they connect). */
  get in(): Array<InStream | null> {
    return this.links.map((l) => l?.in ?? null);
  }

  /** Rejects with the first failure. Race every wait against it. */
  get failed(): Promise<never> {
    return this.failure.promise;
  }

  get error(): NetsortError | null {
    return this.failure.error;
  }

  /** Peers not connected both ways yet, for progress lines and the connect timeout. */
  missingPeers(): ServerEntry[] {
    return this.otherLinks()
      .filter((l) => !l.connected)
      .map((l) => l.peer);
  }

  /** Listen on our host:port. A busy port is a usage error (exit 2) naming it. */
  listen(): void {
    if (this.peers === 1) return;
    try {
      this.listener = Bun.listen<SocketHandler>({
        hostname: this.self.host,
        port: this.self.port,
        socket: {
          binaryType: "uint8array",
          open: (socket) => this.accept(socket),
          data: (socket, chunk) => socket.data?.onData(chunk),
          drain: (socket) => socket.data?.onDrain(),
          close: (socket, error) => socket.data?.onClose(error ? errorMessage(error) : "closed"),
          error: (socket, error) => socket.data?.onClose(errorMessage(error)),
        },
      });
      this.clock.start(); // hello timeouts of accepted sockets
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
      throw new UsageError(`cannot listen on ${endpoint(this.self)} (peer ${this.self.serverId}): ${code}`);
    }
  }

  /** Start dialing every other peer. */
  start(): void {
    if (this.peers === 1) return;
    this.started = true;
    this.clock.start();
    for (const link of this.otherLinks()) link.startDial();
  }

  whenConnected(): Promise<void> {
    return this.wait("connected");
  }

  /** --partition sample: every other peer's SAMPLE arrived (their streams are held until releaseStreams). */
  whenAllSampled(): Promise<void> {
    return this.wait("allSampled");
  }

  /** Send our sample first on every outgoing stream (the mesh must be up). */
  sendSample(frame: Uint8Array): void {
    assert(this.options.partition === "sample", "SAMPLE only with --partition sample");
    for (const link of this.otherLinks()) {
      assert(link.out.state === "open" && link.out.records === 0, "SAMPLE comes first");
      link.announce(frame);
    }
  }

  /** Every sample is in and our store exists: read the held streams on. */
  releaseStreams(): void {
    for (const link of this.otherLinks()) link.release();
  }

  /** Every incoming stream has delivered DONE (checked). */
  whenAllReceived(): Promise<void> {
    return this.wait("allReceived");
  }

  /** Every peer said READY and acknowledged our stream. */
  whenAllReady(): Promise<void> {
    return this.wait("allReady");
  }

  whenAllCommitted(): Promise<void> {
    return this.wait("allCommitted");
  }

  whenAllConfirmed(): Promise<void> {
    return this.wait("allConfirmed");
  }

  /**
   * Every other peer has sent us all its records with a 48-bit prefix below
   * this: the least MARK over the incoming streams. A stream that delivered
   * DONE is past everything (2^48); one not connected yet has said nothing (0).
   */
  lowestMark(): number {
    let lowest = END_MARK;
    for (const link of this.otherLinks()) {
      const stream = link.in;
      if (stream === null) return 0;
      if (!stream.reached("done")) lowest = Math.min(lowest, stream.mark);
    }
    return lowest;
  }

  /** End every outgoing stream with DONE (the mesh must be up). */
  finishStreams(): void {
    for (const link of this.otherLinks()) link.out.finish();
  }

  /**
   * Our output is durable under its temporary name; with --validate the frame
   * carries our valsort summary and input checksum.
   */
  sendReady(validation: Uint8Array | null = null): void {
    this.announce("ready", encodeReady(validation));
  }

  /** Our output is linked into place under its final name, durably. */
  sendCommitted(): void {
    this.announce("committed", encodeEmpty(FrameType.Committed));
  }

  /** After every peer's COMMITTED, our output is still ours and in place. */
  sendConfirmed(): void {
    this.announce("confirmed", encodeEmpty(FrameType.Confirmed));
  }

  /** Have we told the others our output is in place for good? Then it must stay. */
  get confirmedSent(): boolean {
    return this.ownPhase === "confirmed";
  }

  private announce(phase: OwnPhase, frame: Uint8Array): void {
    assert(ownOrder.indexOf(phase) === ownOrder.indexOf(this.ownPhase) + 1, `${this.ownPhase} -> ${phase}`);
    if (this.failure.error !== null) return;
    this.ownPhase = phase;
    for (const link of this.otherLinks()) link.announce(frame);
    this.checkBarriers();
  }

  /**
   * Fail the whole mesh: keep the first error, tell every connected peer why.
   * Later failures are ignored (the first is the root cause).
   */
  fail(error: unknown): void {
    if (this.finished || !this.failure.set(error)) return;
    const frame = this.failure.frame(FrameType.Abort);
    for (const link of this.otherLinks()) {
      if (link.sendAbort(frame)) this.failure.markTold(link.id);
    }
  }

  private failFromLink(error: NetsortError, told: boolean): void {
    // A peer that reported its own abort needs no telling; a refusal does.
    if (told) for (const l of this.otherLinks()) if (l.told) this.failure.markTold(l.id);
    this.fail(error);
  }

  /**
   * After a failure, keep the listener up for at most `maxMs` so peers that were
   * not connected yet learn why (their next dial gets our reason) instead of
   * waiting for their connect timeout. Ends early once all are told.
   */
  async linger(maxMs: number): Promise<void> {
    if (this.failure.error === null || this.listener === null || this.failure.everyoneTold) return;
    // A peer not up by our connect deadline will hit its own soon: no point waiting past it.
    const endMs = Math.min(performance.now() + maxMs, this.deadlineMs);
    await this.failure.linger(endMs, this.options.retryIntervalMs, () => this.lastHelloMs);
  }

  /**
   * After a failure, when we could not listen (so nobody can be told by our
   * answer), dial every peer not told yet, deliver ABORT after the hello, and
   * hang up. Bounded by `maxMs` and by our connect deadline.
   */
  async tellByDialing(maxMs: number): Promise<void> {
    if (this.failure.error === null || this.listener !== null || this.peers === 1) return;
    if (this.failure.everyoneTold) return;
    this.dialingToAbort = true;
    this.clock.start();
    for (const link of this.otherLinks()) if (!this.failure.told.has(link.id)) link.startDial();
    await this.failure.whenAllTold(Math.min(maxMs, this.deadlineMs - performance.now()));
    this.dialingToAbort = false;
  }

  /**
   * Close everything. Queued frames (CONFIRMED, ABORT) get up to flushTimeoutMs
   * to reach the kernel first, so peers learn the outcome.
   */
  async close(): Promise<void> {
    this.finished = true;
    this.clock.stop();
    const links = this.otherLinks();
    // After a failure, a dial under way may still deliver our ABORT: drain() waits for it.
    if (this.failure.error === null) for (const l of links) l.stopDialing();
    const conns = links.flatMap((l) => l.connections());
    const flushed = Promise.all(conns.map((c) => c.whenFlushed()));
    await settledWithin(flushed, flushTimeoutMs);
    if (this.failure.error !== null) await this.drain();
    for (const l of links) l.stopDialing();
    for (const c of conns) c.close();
    for (const h of this.handshakes) h.abandon();
    this.handshakes.clear();
    this.listener?.stop(true);
    this.listener = null;
  }

  /**
   * After a failure, peers may still be sending: closing a socket with unread
   * bytes makes the kernel send RST, and a peer that gets RST can lose our ABORT
   * still unread in its buffer (it then reports "connection reset" instead of
   * the cause). So we end our side, read and drop what still comes until each
   * peer closes too, for at most abortDrainMs.
   */
  private async drain(): Promise<void> {
    const links = this.otherLinks();
    for (const link of links) link.drain();
    const allClosed = () =>
      links.every((l) => !l.dialing && l.connections().every((c) => c.closed || c.socket === null));
    const fromMs = performance.now();
    while (!allClosed() && performance.now() - fromMs < abortDrainMs) await Bun.sleep(drainPollMs);
  }

  // ---- accepting ----------------------------------------------------------------

  private accept(socket: LinkSocket): void {
    const handshake: AcceptHandshake = new AcceptHandshake(
      socket,
      this.local,
      this.clock,
      this.options.helloTimeoutMs,
      {
        checkHello: (hello) => {
          this.lastHelloMs = performance.now();
          return this.checkHello(hello);
        },
        failureFrame: () => (this.failure.error === null ? null : this.failure.frame(FrameType.Refuse)),
        onTold: (peer) => this.failure.markTold(peer),
        onOpen: (s, hello, rest, keys) => {
          const senderId = hello.senderId;
          this.handshakes.delete(handshake);
          const link = this.links[senderId];
          assert(link !== null && link !== undefined, "checkHello admits only other peers");
          link.attachIn(s, rest, hello.inputRecords, keys);
        },
        onMismatch: (error: MismatchError, when) => {
          if (when === "now") this.fail(error);
          else this.suspicion ??= { error, atMs: performance.now() };
        },
        onDropped: (why) => {
          this.handshakes.delete(handshake);
          this.strangers.log(why);
        },
      },
    );
    this.handshakes.add(handshake);
  }

  /** Why a hello must be refused (and whether it shows a misconfiguration), or null. */
  private checkHello(h: Hello): HelloRefusal | null {
    return helloRefusal(this.local, h, {
      configPath: this.options.config.path,
      outputFile: this.options.outputFile,
      endpoint: endpoint(this.self),
      alreadyConnected: this.links[h.senderId]?.in != null,
    });
  }

  // ---- barriers and timers ------------------------------------------------------------

  private otherLinks(): PeerLink[] {
    return this.links.filter((l): l is PeerLink => l !== null);
  }

  private wait(barrier: Barrier): Promise<void> {
    const d = this.barriers.get(barrier);
    assert(d !== undefined, barrier);
    return Promise.race([d.promise, this.failed]);
  }

  private checkBarriers(): void {
    const links = this.otherLinks();
    const own = ownOrder.indexOf(this.ownPhase);
    const all = (pred: (l: PeerLink) => boolean) => links.every(pred);
    const reached = {
      connected: all((l) => l.connected),
      allSampled: all((l) => l.in?.sample != null),
      allReceived: all((l) => l.in?.reached("done") === true),
      allReady: own >= 1 && all((l) => l.in?.reached("ready") === true && l.out.state === "acked"),
      allCommitted: own >= 2 && all((l) => l.in?.reached("committed") === true),
      allConfirmed: own >= 3 && all((l) => l.in?.reached("confirmed") === true),
    };
    if (reached.connected && this.connectedAtMs === 0) this.connectedAtMs = performance.now();
    for (const [name, ok] of Object.entries(reached)) if (ok) this.barriers.get(name as Barrier)?.resolve();
    this.onStreamProgress?.();
  }

  /**
   * For a long synchronous step (a spill inside the receive callback): queued
   * frames go to the kernel and quiet connections PING, so peers do not take
   * our busy seconds for silence. Our own idle clocks restart after the step
   * (MeshClock's stall detection), so theirs queued meanwhile are not blamed.
   */
  keepAlive(): void {
    if (this.finished || this.failure.error !== null || !this.started) return;
    const now = performance.now();
    for (const link of this.otherLinks()) link.keepAlive(now, this.options.idleTimeoutMs);
  }

  /** Every clock tick: the connect deadline, then each link's liveness. */
  private tick(now: number): void {
    if (this.finished || this.failure.error !== null || !this.started) return;
    const suspicion = this.suspicion;
    if (this.connectedAtMs === 0 && suspicion !== null) {
      if (now - suspicion.atMs >= mismatchGraceMs || now >= this.deadlineMs) this.fail(suspicion.error);
      return;
    }
    if (this.connectedAtMs === 0 && now >= this.deadlineMs) {
      const missing = this.missingPeers();
      const names = missing.map((s) => `peer ${s.serverId} (${endpoint(s)})`).join(", ");
      // Missing peers had the whole connect timeout to reach us: no lingering for them.
      for (const s of missing) this.failure.markTold(s.serverId);
      this.fail(
        new NetsortError(`mesh not up after ${this.options.connectTimeoutMs} ms: no answer from ${names}`),
      );
      return;
    }
    for (const link of this.otherLinks()) {
      const error = link.checkLiveness(now, this.clock.forgiveFromMs, this.options.idleTimeoutMs);
      if (error !== null) {
        this.fail(error);
        // Nothing queued for a silent peer will drain: close both directions now
        // so closing the mesh does not wait on them.
        link.closeAll();
        return;
      }
    }
  }
}
