/**
 * The mesh: one listener, and one outgoing stream to every other peer.
 *
 * Peer i dials peer j and sends i's records for j on that connection; j answers
 * with small control frames on the same socket (docs/protocol.md). The mesh owns
 * every socket and every timer, and turns anything that goes wrong into one
 * failure: the first one is kept, sent to every peer as ABORT, and rejects
 * `failed`. All waits are bounded: connect timeout, hello timeout, idle timeout.
 */

import { createHash } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { assert, errorMessage, NetsortError, UsageError } from "../errors.ts";
import { flushTimeoutMs } from "../limits.ts";
import { log } from "../log.ts";
import type { ServerEntry, SortOptions } from "../types.ts";
import { isNoProof, makeProof, newNonce, noProof, type ProofContext, proofMatches } from "./auth.ts";
import { Connection } from "./connection.ts";
import {
  decodeAuth,
  decodeHello,
  decodeReady,
  decodeReason,
  decodeReasonExitCode,
  decodeSummary,
  decodeWelcome,
  encodeAuth,
  encodeEmpty,
  encodeHello,
  encodeReady,
  encodeReason,
  encodeSummary,
  encodeWelcome,
  FrameDecoder,
  FrameType,
  ProtocolError,
} from "./protocol.ts";
import { InStream, OutStream, type SocketHandler } from "./streams.ts";

export interface MeshEvents {
  /** Records from peer `from`; valid only during the call. */
  onRecords(from: number, buf: Uint8Array, offset: number, length: number): void;
}

/** Lingering ends once no peer has dialed for this many retry intervals (and at least lingerQuietMinMs). */
const lingerQuietRetries = 4;
const lingerQuietMinMs = 1_000;
const lingerPollMs = 50;
/** A gap between ticks this many tick periods long means this process stalled (CPU starved or blocked). */
const stallTicks = 3;
/** The first few dial retries wait only this long, so a mesh started together is up fast. */
const fastRetries = 4;
const fastRetryMs = 50;
/** A dialer waits this many hello timeouts for WELCOME: the listener may be a busy peer, not a stranger. */
const welcomeWaitHelloTimeouts = 5;

interface Deadline {
  atMs: number;
  fire: () => void;
}

/** Strangers are logged at most this often (plus a count of the ones not logged). */
const strangerLogIntervalMs = 5_000;

const inAllowed = new Set([FrameType.Data, FrameType.Done, FrameType.Ready, FrameType.Abort, FrameType.Ping]);
// REFUSE may follow WELCOME when the listener rejects our AUTH proof.
const outAllowed = new Set([FrameType.Ack, FrameType.Abort, FrameType.Ping, FrameType.Refuse]);

/**
 * The cluster is misconfigured (configs or secrets differ): exit 2 on every
 * peer that learns of it, not only on the one that found it.
 */
export class MismatchError extends UsageError {}

/** An ABORT or REFUSE payload as the error it reports, with the exit code it asks for. */
function reportedError(payload: Uint8Array, prefix = ""): NetsortError {
  const reason = `${prefix}${decodeReason(payload)}`;
  return decodeReasonExitCode(payload) === 2 ? new MismatchError(reason) : new NetsortError(reason);
}

const abortedPrefix = /^peer \d+ aborted: /;

/**
 * The fingerprint peers compare at hello: the config's, plus the options every
 * peer must share (a peer validating with --validate needs every other peer's
 * summary, so a mix must be refused up front, not found after some renamed).
 */
function wireFingerprint(configFingerprint: string, validate: boolean): Uint8Array {
  if (!validate) return new Uint8Array(Buffer.from(configFingerprint, "hex"));
  return new Uint8Array(createHash("sha256").update(`${configFingerprint}:validate`).digest());
}

function endpoint(s: ServerEntry): string {
  return `${s.host}:${s.port}`;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** A deferred promise, settled once. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export class Mesh {
  readonly self: ServerEntry;
  readonly peers: number;
  readonly out: Array<OutStream | null>;
  readonly in: Array<InStream | null>;
  private readonly fingerprint: Uint8Array;
  private listener: TCPSocketListener<SocketHandler> | null = null;
  private readonly handshakes = new Set<Socket<SocketHandler>>();
  private ticker: Timer | null = null;
  private started = false;
  /** Set while tellByDialing runs: dialing continues after the failure, to deliver it. */
  private dialingToAbort = false;
  /** Tick period: a quarter of the idle timeout, at most 250 ms. */
  private readonly tickMs: number;
  private lastTickMs = 0;
  /** Idle clocks restart here after this process stalled (it could not have heard anyone). */
  private forgiveFromMs = 0;
  /** Hello waits, checked by tick() so a stall of this process does not count against a peer. */
  private readonly deadlines = new Set<Deadline>();
  private readonly deadlineMs: number;
  private failure: NetsortError | null = null;
  private readonly failedDeferred = deferred<never>();
  private readonly connected = deferred<void>();
  private readonly allDone = deferred<void>();
  private readonly committed = deferred<void>();
  private finished = false;
  private strangerLastLogMs = -Infinity;
  /** Peers that have been told of our failure (ABORT on a stream, or REFUSE to their hello). */
  private readonly told = new Set<number>();
  private readonly toldAll = deferred<void>();
  /** When the last HELLO arrived, for the linger window. */
  private lastHelloMs = -Infinity;
  private strangersUnlogged = 0;
  /** When the mesh was fully up, for the phase log. */
  connectedAtMs = 0;

  constructor(
    private readonly options: SortOptions,
    private readonly events: MeshEvents,
  ) {
    const { config, serverId } = options;
    this.self = config.servers[serverId];
    this.peers = config.servers.length;
    this.fingerprint = wireFingerprint(config.fingerprint, options.validate === true);
    this.out = config.servers.map((s) => (s.serverId === serverId ? null : new OutStream(s, this.peers)));
    this.in = config.servers.map(() => null);
    this.deadlineMs = performance.now() + options.connectTimeoutMs;
    this.tickMs = Math.max(10, Math.min(250, options.idleTimeoutMs / 4));
    // Nobody waits on these in every path; keep an unobserved rejection from crashing the process.
    for (const d of [this.failedDeferred, this.connected, this.allDone, this.committed])
      d.promise.catch(() => {});
    if (this.peers === 1) {
      this.connected.resolve();
      this.allDone.resolve();
    }
  }

  /** Rejects with the first failure. Race every wait against it. */
  get failed(): Promise<never> {
    return this.failedDeferred.promise;
  }

  get error(): NetsortError | null {
    return this.failure;
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
      this.startTicker(); // hello timeouts of accepted sockets
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
      throw new UsageError(`cannot listen on ${endpoint(this.self)} (peer ${this.self.serverId}): ${code}`);
    }
  }

  /** Start dialing every other peer. */
  start(): void {
    if (this.peers === 1) return;
    this.started = true;
    this.startTicker();
    for (const out of this.out) if (out !== null) this.dial(out);
  }

  private startTicker(): void {
    if (this.ticker !== null) return;
    this.lastTickMs = performance.now();
    this.ticker = setInterval(() => this.tick(), this.tickMs);
  }

  /** Run `fire` after `ms` of our own responsive time (see tick: stalls do not count). */
  private after(ms: number, fire: () => void): Deadline {
    const deadline = { atMs: performance.now() + ms, fire };
    this.deadlines.add(deadline);
    return deadline;
  }

  private cancel(deadline: Deadline | undefined): void {
    if (deadline !== undefined) this.deadlines.delete(deadline);
  }

  /** Resolves when every outgoing and incoming stream has finished its hello. */
  whenConnected(): Promise<void> {
    return Promise.race([this.connected.promise, this.failed]);
  }

  /** Resolves when every incoming stream has delivered DONE (checked). */
  whenAllReceived(): Promise<void> {
    return Promise.race([this.allDone.promise, this.failed]);
  }

  /** Resolves when every peer said READY and acknowledged our stream. */
  whenCommitted(): Promise<void> {
    if (this.peers === 1) return Promise.resolve();
    return Promise.race([this.committed.promise, this.failed]);
  }

  /**
   * Tell every peer our output is durable under its temporary name; with
   * --validate the frame carries our valsort summary and input checksum.
   */
  sendReady(validation: Uint8Array | null = null): void {
    const frame = encodeReady(validation);
    for (const out of this.out) {
      if (out === null) continue;
      out.readySent = true;
      out.conn.send(frame);
    }
    this.checkCommitted();
  }

  /**
   * Fail the whole mesh: keep the first error, tell every connected peer why.
   * Later failures are ignored (the first is the root cause).
   */
  fail(error: unknown): void {
    if (this.failure !== null || this.finished) return;
    const failure = error instanceof NetsortError ? error : new NetsortError(errorMessage(error));
    this.failure = failure;
    const frame = this.abortFrame(FrameType.Abort);
    for (const s of [...this.out, ...this.in]) {
      if (s !== null && s.conn.socket !== null && !s.conn.closed) {
        s.conn.send(frame);
        this.markTold(s.peer.serverId);
      }
    }
    for (const out of this.out) out?.stop();
    this.failedDeferred.reject(failure);
  }

  /**
   * After a failure, keep the listener up for at most `maxMs` so peers that were
   * not connected yet learn why (their next dial gets REFUSE with our reason)
   * instead of waiting for their connect timeout. Ends early once all are told.
   */
  async linger(maxMs: number): Promise<void> {
    if (this.failure === null || this.listener === null || this.told.size >= this.peers - 1) return;
    const startMs = performance.now();
    // A peer not up by our connect deadline will hit its own soon: no point waiting past it.
    const endMs = Math.min(startMs + maxMs, this.deadlineMs);
    // Live peers that have not heard redial every retry interval; when none has
    // dialed for a few intervals, the rest heard through another peer (or never started).
    const quietMs = Math.max(lingerQuietMinMs, lingerQuietRetries * this.options.retryIntervalMs);
    let timer: Timer | undefined;
    const quiet = new Promise<void>((resolve) => {
      const poll = () => {
        const now = performance.now();
        if (now >= endMs || now - Math.max(startMs, this.lastHelloMs) >= quietMs) resolve();
        else timer = setTimeout(poll, lingerPollMs);
      };
      poll();
    });
    await Promise.race([this.toldAll.promise, quiet]);
    clearTimeout(timer);
  }

  /**
   * After a failure, when we could not listen (so nobody can be told by our
   * REFUSE), dial every peer not told yet, deliver ABORT after the hello, and
   * hang up. Bounded by `maxMs` and by our connect deadline.
   */
  async tellByDialing(maxMs: number): Promise<void> {
    if (this.failure === null || this.listener !== null || this.peers === 1) return;
    if (this.told.size >= this.peers - 1) return;
    this.dialingToAbort = true;
    this.startTicker();
    for (const out of this.out) if (out !== null && out.state === "dialing") this.dial(out);
    const waitMs = Math.min(maxMs, this.deadlineMs - performance.now());
    let timer: Timer | undefined;
    await Promise.race([
      this.toldAll.promise,
      new Promise((r) => (timer = setTimeout(r, Math.max(0, waitMs)))),
    ]);
    clearTimeout(timer);
    this.dialingToAbort = false;
  }

  private markTold(peer: number): void {
    this.told.add(peer);
    if (this.told.size >= this.peers - 1) this.toldAll.resolve();
  }

  /** ABORT / REFUSE carrying our failure, as "peer K aborted: ..." unless it came from another peer. */
  private abortFrame(type: FrameType.Abort | FrameType.Refuse): Uint8Array {
    const failure = this.failure;
    assert(failure !== null, "abortFrame after a failure");
    const reason = abortedPrefix.test(failure.message)
      ? failure.message
      : `peer ${this.self.serverId} aborted: ${failure.message}`;
    return encodeReason(type, reason, failure instanceof MismatchError ? 2 : 1);
  }

  /**
   * Close everything. Queued frames (READY, ABORT) get up to flushTimeoutMs to
   * reach the kernel first, so peers learn the outcome.
   */
  async close(): Promise<void> {
    this.finished = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.deadlines.clear();
    const conns = [...this.out, ...this.in].filter((s) => s !== null).map((s) => s.conn);
    const flushed = Promise.all(conns.map((c) => c.whenFlushed()));
    let timer: Timer | undefined;
    await Promise.race([flushed, new Promise((r) => (timer = setTimeout(r, flushTimeoutMs)))]);
    clearTimeout(timer);
    for (const c of conns) c.close();
    for (const s of this.handshakes) s.end();
    this.handshakes.clear();
    this.listener?.stop(true);
    this.listener = null;
  }

  // ---- dialing ------------------------------------------------------------

  private dial(out: OutStream): void {
    if ((this.failure !== null && !this.dialingToAbort) || this.finished || this.told.has(out.peer.serverId))
      return;
    const peer = out.peer;
    const nonce = newNonce();
    let settled = false;
    let helloTimer: Deadline | undefined;
    const retry = (why: string) => {
      if (settled) return;
      settled = true;
      this.cancel(helloTimer);
      if ((this.failure !== null && !this.dialingToAbort) || this.finished) return;
      if (performance.now() >= this.deadlineMs) return; // the connect deadline in tick() reports it
      log.debug(`peer ${peer.serverId} at ${endpoint(peer)} not up yet (${why}); retrying`);
      // Peers started together are usually a few ms from listening: the first
      // retries come sooner, then every --retry-ms.
      out.dialAttempts++;
      const waitMs =
        out.dialAttempts <= fastRetries
          ? Math.min(fastRetryMs, this.options.retryIntervalMs)
          : this.options.retryIntervalMs;
      setTimeout(() => this.dial(out), waitMs);
    };
    const decoder = new FrameDecoder(
      {
        onRecords: () => {},
        onControl: (type, payload) => {
          if (type === FrameType.Refuse || type === FrameType.Abort) {
            settled = true;
            this.cancel(helloTimer);
            // A peer reporting its own abort needs no telling; one that merely refused our hello does.
            if (abortedPrefix.test(decodeReason(payload))) this.markTold(peer.serverId);
            this.fail(this.refusal(peer, payload));
            return;
          }
          const welcome = decodeWelcome(payload);
          settled = true;
          this.cancel(helloTimer);
          decoder.stop();
          this.completeDial(out, socket, welcome, nonce);
        },
      },
      new Set([FrameType.Welcome, FrameType.Refuse, FrameType.Abort]),
    );
    let socket: Socket<SocketHandler>;
    const handler: SocketHandler = {
      onData: (chunk) => {
        let used: number;
        try {
          used = decoder.push(chunk);
        } catch (error) {
          if (error instanceof ProtocolError) {
            socket.end();
            retry(`bad answer to hello: ${error.message}`);
          } else this.fail(error);
          return;
        }
        // Bytes after WELCOME in the same chunk belong to the open stream.
        if (used < chunk.length && out.state !== "dialing") socket.data.onData(chunk.subarray(used));
      },
      onDrain: () => {},
      onClose: (why) => retry(why),
    };
    Bun.connect<SocketHandler>({
      hostname: peer.host,
      port: peer.port,
      data: handler,
      socket: {
        binaryType: "uint8array",
        open: (s) => {
          socket = s;
          const hello = encodeHello({
            senderId: this.self.serverId,
            receiverId: peer.serverId,
            peers: this.peers,
            fingerprint: this.fingerprint,
            nonce,
          });
          const wrote = s.write(hello);
          if (wrote !== hello.length) s.end();
          const waitMs = this.options.helloTimeoutMs * welcomeWaitHelloTimeouts;
          helloTimer = this.after(waitMs, () => {
            s.end();
            retry(`no answer to hello within ${waitMs} ms`);
          });
        },
        data: (s, chunk) => s.data.onData(chunk),
        drain: (s) => s.data.onDrain(),
        close: (s, error) => s.data.onClose(error ? errorMessage(error) : "closed"),
        error: (s, error) => s.data.onClose(errorMessage(error)),
        connectError: (_s, error) => retry(errorMessage(error)),
      },
    }).catch((error) => retry(errorMessage(error)));
  }

  /** WELCOME arrived: check it, prove the secret if any, and open the stream for records. */
  private completeDial(
    out: OutStream,
    socket: Socket<SocketHandler>,
    welcome: ReturnType<typeof decodeWelcome>,
    nonce: Uint8Array,
  ): void {
    const peer = out.peer;
    if (welcome.listenerId !== peer.serverId) {
      throw this.refusedByUs(
        `${endpoint(peer)} answered as peer ${welcome.listenerId}, expected peer ${peer.serverId}: configs differ`,
      );
    }
    if (hex(welcome.fingerprint) !== hex(this.fingerprint)) {
      throw this.refusedByUs(
        `peer ${peer.serverId} at ${endpoint(peer)} has a different config or --validate setting: fingerprint ${hex(welcome.fingerprint).slice(0, 16)}, peer ${this.self.serverId} has ${hex(this.fingerprint).slice(0, 16)}`,
      );
    }
    const secret = this.options.secret;
    const ctx: ProofContext = {
      fingerprint: this.fingerprint,
      dialerId: this.self.serverId,
      listenerId: peer.serverId,
      dialerNonce: nonce,
      listenerNonce: welcome.nonce,
    };
    if (secret === null && !isNoProof(welcome.proof)) {
      throw this.refusedByUs(
        `peer ${peer.serverId} requires a shared secret but peer ${this.self.serverId} has none (give every peer --secret-file or NETSORT_SECRET)`,
      );
    }
    if (secret !== null) {
      if (isNoProof(welcome.proof)) {
        throw this.refusedByUs(
          `peer ${peer.serverId} has no shared secret configured but peer ${this.self.serverId} has one`,
        );
      }
      if (!proofMatches(makeProof(secret, "listener", ctx), welcome.proof)) {
        throw this.refusedByUs(
          `peer ${peer.serverId} failed to prove the shared secret to peer ${this.self.serverId}: the secrets differ`,
        );
      }
      socket.write(encodeAuth(makeProof(secret, "dialer", ctx)));
    }
    if (this.failure !== null) {
      // We dialed only to deliver our abort (we could not listen): say why, hang up.
      socket.write(this.abortFrame(FrameType.Abort));
      this.markTold(peer.serverId);
      socket.end();
      return;
    }
    // The stream is open: switch the socket to the stream's handler.
    const decoder = new FrameDecoder(
      {
        onRecords: () => {},
        onControl: (type, payload) => this.onOutControl(out, type, payload),
      },
      outAllowed,
    );
    socket.data = {
      onData: (chunk) => {
        out.conn.lastReceivedMs = performance.now();
        try {
          decoder.push(chunk);
        } catch (error) {
          this.fail(new NetsortError(`stream to peer ${peer.serverId}: ${errorMessage(error)}`));
        }
      },
      onDrain: () => out.conn.flush(),
      onClose: (why) => this.onOutClosed(out, why),
    };
    out.state = "open";
    out.conn.attach(socket);
    log.debug(`connected to peer ${peer.serverId} at ${endpoint(peer)}`);
    this.checkConnected();
  }

  /** A REFUSE or ABORT from `peer`: its own words when it reports an abort, else "refused us". */
  private refusal(peer: ServerEntry, payload: Uint8Array): NetsortError {
    if (abortedPrefix.test(decodeReason(payload))) return reportedError(payload);
    return reportedError(payload, `peer ${peer.serverId} at ${endpoint(peer)} refused us: `);
  }

  private refusedByUs(message: string): UsageError {
    const error = new MismatchError(message);
    this.fail(error);
    return error;
  }

  private onOutControl(out: OutStream, type: FrameType, payload: Uint8Array): void {
    const peer = out.peer.serverId;
    if (type === FrameType.Abort || type === FrameType.Refuse) {
      if (abortedPrefix.test(decodeReason(payload))) this.markTold(peer);
      this.fail(this.refusal(out.peer, payload));
    } else if (type === FrameType.Ack) {
      const ack = decodeSummary(payload);
      if (!out.doneSent || ack.records !== out.records || ack.digest !== out.digest) {
        this.fail(
          new NetsortError(`peer ${peer} acknowledged ${ack.records} records, we sent ${out.records}`),
        );
        return;
      }
      out.state = "acked";
      this.checkCommitted();
    }
  }

  private onOutClosed(out: OutStream, why: string): void {
    out.conn.markClosed();
    if (this.finished || this.failure !== null) return;
    // Once they acknowledged all our records, the stream has done its job. A peer
    // that commits closes both connections right after sending READY on the other
    // one, and this close can be handled before that READY is read (two sockets,
    // no order between them): the inbound stream decides. It either delivers READY
    // (commit) or closes without it (onInClosed fails), or goes silent (idle timeout).
    // Seen once (bench, 8 peers): one peer failed with "lost connection ... closed"
    // while the 7 others had committed and exited 0.
    if (out.state !== "acked") {
      this.fail(
        new NetsortError(`lost connection to peer ${out.peer.serverId} (${endpoint(out.peer)}): ${why}`),
      );
    }
  }

  // ---- accepting ----------------------------------------------------------

  private accept(socket: Socket<SocketHandler>): void {
    this.handshakes.add(socket);
    // Read now: once the socket has closed Bun no longer knows it.
    const remote = `${socket.remoteAddress ?? "?"}`;
    const nonce = newNonce();
    let hello: ReturnType<typeof decodeHello> | null = null;
    let dropped = false;
    const drop = (why: string, refuse: string | null) => {
      if (dropped) return;
      dropped = true;
      this.cancel(timer);
      this.handshakes.delete(socket);
      if (refuse !== null) socket.write(encodeReason(FrameType.Refuse, refuse, 2));
      socket.end();
      this.logStranger(`dropped a connection from ${remote}: ${why}`);
    };
    const timer = this.after(this.options.helloTimeoutMs, () =>
      drop(`no valid hello within ${this.options.helloTimeoutMs} ms`, null),
    );
    const decoder = new FrameDecoder(
      {
        onRecords: () => {},
        onControl: (type, payload) => {
          if (type === FrameType.Hello) {
            hello = decodeHello(payload);
            this.lastHelloMs = performance.now();
            if (this.failure !== null && hello.senderId < this.peers) {
              // We already failed: tell this peer why, so it stops now too.
              dropped = true;
              this.cancel(timer);
              this.handshakes.delete(socket);
              socket.write(this.abortFrame(FrameType.Refuse));
              socket.end();
              this.markTold(hello.senderId);
              return;
            }
            const refusal = this.checkHello(hello);
            if (refusal !== null) return drop(refusal, refusal);
            const secret = this.options.secret;
            const ctx: ProofContext = {
              fingerprint: this.fingerprint,
              dialerId: hello.senderId,
              listenerId: this.self.serverId,
              dialerNonce: hello.nonce,
              listenerNonce: nonce,
            };
            socket.write(
              encodeWelcome({
                listenerId: this.self.serverId,
                fingerprint: this.fingerprint,
                nonce,
                proof: secret === null ? noProof : makeProof(secret, "listener", ctx),
              }),
            );
            if (secret === null) return open(hello);
            decoder.allowed = new Set([FrameType.Auth]);
            authCtx = ctx;
          } else if (
            type === FrameType.Auth &&
            hello !== null &&
            authCtx !== null &&
            this.options.secret !== null
          ) {
            if (!proofMatches(makeProof(this.options.secret, "dialer", authCtx), decodeAuth(payload))) {
              return drop(`peer ${hello.senderId} failed to prove the shared secret`, "wrong shared secret");
            }
            open(hello);
          }
        },
      },
      new Set([FrameType.Hello]),
    );
    let authCtx: ProofContext | null = null;
    let opened = false;
    const open = (h: ReturnType<typeof decodeHello>) => {
      opened = true;
      decoder.stop();
      this.cancel(timer);
      this.handshakes.delete(socket);
      this.openInStream(socket, h.senderId);
    };
    socket.data = {
      onData: (chunk) => {
        let used: number;
        try {
          used = decoder.push(chunk);
        } catch (error) {
          const why = error instanceof ProtocolError ? error.message : errorMessage(error);
          drop(why, hello !== null ? `protocol error: ${why}` : null);
          return;
        }
        // Records may follow the handshake in the same chunk: they belong to the stream.
        if (opened && used < chunk.length) socket.data.onData(chunk.subarray(used));
      },
      onDrain: () => {},
      onClose: (why) => {
        if (!opened) drop(`closed before hello (${why})`, null);
      },
    };
  }

  /** Why a hello must be refused, or null when it is fine. */
  private checkHello(h: ReturnType<typeof decodeHello>): string | null {
    if (hex(h.fingerprint) !== hex(this.fingerprint)) {
      return `configs (or --validate settings) differ: peer ${h.senderId} has fingerprint ${hex(h.fingerprint).slice(0, 16)}, peer ${this.self.serverId} has ${hex(this.fingerprint).slice(0, 16)}`;
    }
    if (h.receiverId !== this.self.serverId) {
      return `this is peer ${this.self.serverId}, not peer ${h.receiverId}: configs differ`;
    }
    if (h.peers !== this.peers || h.senderId >= this.peers || h.senderId === this.self.serverId) {
      return `sender id ${h.senderId} is not another peer of this ${this.peers}-peer cluster`;
    }
    if (this.in[h.senderId] !== null) return `peer ${h.senderId} is already connected`;
    return null;
  }

  private openInStream(socket: Socket<SocketHandler>, from: number): void {
    const peer = this.options.config.servers[from];
    const conn = new Connection<SocketHandler>();
    const stream = new InStream(peer, conn);
    this.in[from] = stream;
    const decoder = new FrameDecoder(
      {
        onRecords: (buf, offset, length) => {
          stream.count(buf, offset, length);
          this.events.onRecords(from, buf, offset, length);
        },
        onControl: (type, payload) => this.onInControl(stream, decoder, type, payload),
      },
      inAllowed,
    );
    socket.data = {
      onData: (chunk) => {
        conn.lastReceivedMs = performance.now();
        try {
          decoder.push(chunk);
        } catch (error) {
          this.fail(new NetsortError(`stream from peer ${from}: ${errorMessage(error)}`));
        }
      },
      onDrain: () => conn.flush(),
      onClose: (why) => this.onInClosed(stream, decoder, why),
    };
    conn.attach(socket);
    log.debug(`peer ${from} connected`);
    this.checkConnected();
  }

  private onInControl(stream: InStream, decoder: FrameDecoder, type: FrameType, payload: Uint8Array): void {
    const from = stream.peer.serverId;
    switch (type) {
      case FrameType.Abort:
        this.markTold(from);
        this.fail(reportedError(payload));
        return;
      case FrameType.Done: {
        const done = decodeSummary(payload);
        if (done.records !== stream.records || done.digest !== stream.digest) {
          this.fail(
            new NetsortError(
              `stream from peer ${from} is corrupt: received ${stream.records} records (digest ${stream.digest.toString(16)}), peer ${from} sent ${done.records} (digest ${done.digest.toString(16)})`,
            ),
          );
          return;
        }
        stream.done = true;
        decoder.allowed = new Set([FrameType.Ready, FrameType.Abort, FrameType.Ping]);
        stream.conn.send(encodeSummary(FrameType.Ack, done));
        if (this.in.every((s, i) => i === this.self.serverId || s?.done)) this.allDone.resolve();
        return;
      }
      case FrameType.Ready:
        stream.validation = decodeReady(payload);
        stream.ready = true;
        decoder.allowed = new Set([FrameType.Abort, FrameType.Ping]);
        this.checkCommitted();
        return;
      default:
        return; // Ping: lastReceivedMs already moved
    }
  }

  private onInClosed(stream: InStream, decoder: FrameDecoder, why: string): void {
    stream.conn.markClosed();
    if (this.finished || this.failure !== null || stream.ready) return;
    const from = stream.peer.serverId;
    const where = stream.done ? "before it was ready" : `mid-stream after ${stream.records} records`;
    const partial = decoder.atFrameBoundary ? "" : " inside a frame";
    this.fail(
      new NetsortError(
        `peer ${from} (${endpoint(stream.peer)}) closed its stream ${where}${partial}: ${why}`,
      ),
    );
  }

  // ---- progress checks ----------------------------------------------------

  private checkConnected(): void {
    const outUp = this.out.every((o) => o === null || o.state !== "dialing");
    const inUp = this.in.every((s, i) => i === this.self.serverId || s !== null);
    if (outUp && inUp && this.connectedAtMs === 0) {
      this.connectedAtMs = performance.now();
      this.connected.resolve();
    }
  }

  private checkCommitted(): void {
    const acked = this.out.every((o) => o === null || (o.state === "acked" && o.readySent));
    const ready = this.in.every((s, i) => i === this.self.serverId || s?.ready);
    if (acked && ready) this.committed.resolve();
  }

  /** Timers in one place: connect deadline, idle streams, keep-alive pings. */
  private tick(): void {
    if (this.finished) return;
    const now = performance.now();
    const gapMs = now - this.lastTickMs;
    this.lastTickMs = now;
    if (gapMs > stallTicks * this.tickMs) {
      // This process stalled (starved of CPU, or busy): peers' bytes and hellos may be
      // sitting unread in the kernel. Do not count the stall against them.
      for (const d of this.deadlines) d.atMs += gapMs;
      this.forgiveFromMs = now;
      log.debug(`event loop stalled for ${Math.round(gapMs)} ms; idle and hello clocks restarted`);
    }
    for (const d of [...this.deadlines]) {
      if (now >= d.atMs) {
        this.deadlines.delete(d);
        d.fire();
      }
    }
    if (this.failure !== null || !this.started) return;
    if (this.connectedAtMs === 0 && now >= this.deadlineMs) {
      const missing = this.options.config.servers.filter(
        (_s, i) => i !== this.self.serverId && (this.out[i]?.state === "dialing" || this.in[i] === null),
      );
      const names = missing.map((s) => `peer ${s.serverId} (${endpoint(s)})`).join(", ");
      // Missing peers had the whole connect timeout to reach us: no lingering for them.
      for (const s of missing) this.markTold(s.serverId);
      this.fail(
        new NetsortError(`mesh not up after ${this.options.connectTimeoutMs} ms: no answer from ${names}`),
      );
      return;
    }
    const pingAfterMs = this.options.idleTimeoutMs / 3;
    const ping = encodeEmpty(FrameType.Ping);
    for (const s of [...this.out, ...this.in]) {
      if (s === null || s.conn.socket === null || s.conn.closed) continue;
      const peer = s.peer;
      if (now - Math.max(s.conn.lastReceivedMs, this.forgiveFromMs) > this.options.idleTimeoutMs) {
        this.fail(
          new NetsortError(
            `no traffic from peer ${peer.serverId} (${endpoint(peer)}) for ${this.options.idleTimeoutMs} ms`,
          ),
        );
        // Nothing queued for a silent peer will drain: close both directions now so
        // closing the mesh does not wait on them.
        this.out[peer.serverId]?.conn.close();
        this.in[peer.serverId]?.conn.close();
        return;
      }
      if (now - s.conn.lastSentMs > pingAfterMs && s.conn.queuedFrames === 0) s.conn.send(ping);
    }
  }

  private logStranger(message: string): void {
    const now = performance.now();
    if (now - this.strangerLastLogMs < strangerLogIntervalMs) {
      this.strangersUnlogged++;
      return;
    }
    const more =
      this.strangersUnlogged > 0 ? ` (and ${this.strangersUnlogged} more since the last report)` : "";
    this.strangersUnlogged = 0;
    this.strangerLastLogMs = now;
    log.warn(`${message}${more}`);
  }
}
