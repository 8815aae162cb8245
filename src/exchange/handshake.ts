/**
 * The two handshakes of a connection, each a small object with explicit states
 * (docs/protocol.md, "Life of a stream" 1-2):
 *
 *   dialer:   connecting -> hello-sent -> [auth-sent] -> open      (or ended)
 *   listener: awaiting-hello -> [awaiting-auth] -> open            (or ended)
 *
 * With a shared secret the dialer proves it first (AUTH), and only then does the
 * listener answer with its own proof and compare configs and settings: a
 * connection that has proved nothing learns nothing (no proof to guess against
 * offline, no failure reason, no settings verdict). From the byte after the
 * listener's AUTH on, both directions are sealed (src/exchange/seal.ts): the
 * listener's verdict (a refusal, or its failure during the linger) goes out as a
 * sealed frame, and the link's keys go to whoever owns the open stream. Without
 * a secret the listener compares at HELLO and answers WELCOME or REFUSE.
 *
 * A handshake never fails the mesh itself: it reports to its owner (PeerLink for
 * dials, Mesh for accepts), which decides.
 */
import type { Socket } from "bun";
import { assert, errorMessage, NetsortError } from "../errors.ts";
import { makeProof, newNonce, type ProofContext, proofMatches } from "./auth.ts";
import type { Deadline, MeshClock } from "./clock.ts";
import { FrameDecoder } from "./decoder.ts";
import {
  decodeAuth,
  decodeHello,
  decodeWelcome,
  encodeAuth,
  encodeHello,
  encodeReason,
  encodeWelcome,
  FLAG_SECRET,
  FrameType,
  type Hello,
  ProtocolError,
} from "./protocol.ts";
import { deriveLinkKeys, type LinkKeys, linkSealer } from "./seal.ts";
import type { SocketHandler } from "./streams.ts";

export type LinkSocket = Socket<SocketHandler>;

/** The cluster is misconfigured (configs, settings or secrets differ): exit 2 on every peer that learns of it. */
export class MismatchError extends NetsortError {
  constructor(message: string) {
    super(message, 2);
    this.name = "MismatchError";
  }
}

/** What this peer puts in its HELLO and checks in others'. */
export interface LocalIdentity {
  serverId: number;
  peers: number;
  secret: Uint8Array | null;
  /** HELLO fields, less receiver and nonce. */
  hello: Omit<Hello, "receiverId" | "nonce" | "senderId" | "peers">;
}

function proofContext(h: Hello, listenerId: number, listenerNonce: Uint8Array): ProofContext {
  return {
    fingerprint: h.fingerprint,
    dialerId: h.senderId,
    listenerId,
    dialerNonce: h.nonce,
    listenerNonce,
  };
}

// ---- dialer -------------------------------------------------------------------

export interface DialEvents {
  /**
   * The stream is open; `rest` are bytes that followed the handshake in the same
   * chunk. `keys`: with a secret, the link's keys; `rest` and everything after
   * it is sealed, and so must be everything sent.
   */
  onOpen(socket: LinkSocket, rest: Uint8Array, keys: LinkKeys | null): void;
  /** Nobody (or a stranger) answered: try again later. */
  onRetry(why: string): void;
  /** The listener refused us or reported an abort, or its answer proves a misconfiguration. */
  onRejected(error: NetsortError, reasonPayload: Uint8Array | null): void;
}

type DialState = "connecting" | "hello-sent" | "auth-sent" | "open" | "ended";

export class DialHandshake {
  state: DialState = "connecting";
  private readonly nonce = newNonce();
  private hello: Hello | null = null;
  private listenerNonce: Uint8Array | null = null;
  private keys: LinkKeys | null = null;
  private socket: LinkSocket | null = null;
  private timer: Deadline | null = null;
  private readonly decoder: FrameDecoder;

  constructor(
    private readonly local: LocalIdentity,
    private readonly peer: { serverId: number; host: string; port: number },
    private readonly clock: MeshClock,
    private readonly answerWaitMs: number,
    private readonly events: DialEvents,
  ) {
    this.decoder = new FrameDecoder(
      { onRecords: () => {}, onControl: (type, payload) => this.onFrame(type, payload) },
      new Set([FrameType.Welcome, FrameType.Refuse, FrameType.Abort]),
    );
  }

  start(): void {
    assert(this.state === "connecting", "a dial starts once");
    const handler: SocketHandler = {
      onData: (chunk) => this.onData(chunk),
      onDrain: () => {},
      onClose: (why) => this.end(() => this.events.onRetry(why)),
    };
    Bun.connect<SocketHandler>({
      hostname: this.peer.host,
      port: this.peer.port,
      data: handler,
      socket: {
        binaryType: "uint8array",
        open: (s) => this.onConnected(s),
        data: (s, chunk) => s.data.onData(chunk),
        drain: (s) => s.data.onDrain(),
        close: (s, error) => s.data.onClose(error ? errorMessage(error) : "closed"),
        error: (s, error) => s.data.onClose(errorMessage(error)),
        connectError: (_s, error) => this.end(() => this.events.onRetry(errorMessage(error))),
      },
    }).catch((error) => this.end(() => this.events.onRetry(errorMessage(error))));
  }

  /** Give up on this attempt (the mesh closed or failed). */
  abandon(): void {
    this.end(() => {});
  }

  private onConnected(socket: LinkSocket): void {
    if (this.state !== "connecting") {
      socket.end();
      return;
    }
    this.socket = socket;
    const local = this.local;
    this.hello = {
      ...local.hello,
      senderId: local.serverId,
      receiverId: this.peer.serverId,
      peers: local.peers,
      nonce: this.nonce,
    };
    const frame = encodeHello(this.hello);
    if (socket.write(frame) !== frame.length) {
      this.end(() => this.events.onRetry("could not send hello"));
      return;
    }
    this.state = "hello-sent";
    this.timer = this.clock.after(this.answerWaitMs, () =>
      this.end(() => this.events.onRetry(`no answer to hello within ${this.answerWaitMs} ms`)),
    );
  }

  private onData(chunk: Uint8Array): void {
    let used: number;
    try {
      used = this.decoder.push(chunk);
    } catch (error) {
      // Not a netsort peer on that port (yet): try again, as for a refused connection.
      const why =
        error instanceof ProtocolError ? `bad answer to hello: ${error.message}` : errorMessage(error);
      this.end(() => this.events.onRetry(why));
      return;
    }
    if (this.state === "open" && this.socket !== null) {
      const socket = this.socket;
      this.socket = null;
      this.events.onOpen(socket, chunk.subarray(used), this.keys);
    }
  }

  private onFrame(type: FrameType, payload: Uint8Array): void {
    if (type === FrameType.Refuse || type === FrameType.Abort) {
      const copy = payload.slice();
      this.end(() => this.events.onRejected(new NetsortError("refused"), copy));
      return;
    }
    const secret = this.local.secret;
    if (type === FrameType.Welcome) {
      assert(this.state === "hello-sent", "WELCOME answers HELLO");
      const welcome = decodeWelcome(payload);
      const mismatch = this.checkWelcome(welcome.listenerId, (welcome.flags & FLAG_SECRET) !== 0);
      if (mismatch !== null) {
        this.end(() => this.events.onRejected(mismatch, null));
        return;
      }
      if (secret === null) {
        this.open();
        return;
      }
      this.listenerNonce = welcome.nonce;
      const hello = this.hello;
      assert(hello !== null, "hello sent before WELCOME");
      this.send(
        encodeAuth(makeProof(secret, "dialer", proofContext(hello, this.peer.serverId, welcome.nonce))),
      );
      this.state = "auth-sent";
      // A listener with a secret sends its failure reason only sealed, after its AUTH.
      this.decoder.allowed = new Set([FrameType.Auth, FrameType.Refuse]);
      return;
    }
    assert(type === FrameType.Auth && this.state === "auth-sent", "AUTH answers our AUTH");
    assert(secret !== null && this.hello !== null && this.listenerNonce !== null, "auth context");
    const context = proofContext(this.hello, this.peer.serverId, this.listenerNonce);
    const expected = makeProof(secret, "listener", context);
    if (!proofMatches(expected, decodeAuth(payload))) {
      const error = new MismatchError(
        `peer ${this.peer.serverId} at ${this.peer.host}:${this.peer.port} failed to prove the shared secret to peer ${this.local.serverId}: the secrets differ`,
      );
      this.end(() => this.events.onRejected(error, null));
      return;
    }
    this.keys = deriveLinkKeys(secret, context);
    this.open();
  }

  private checkWelcome(listenerId: number, theirSecret: boolean): MismatchError | null {
    const { serverId, host, port } = this.peer;
    if (listenerId !== serverId) {
      return new MismatchError(
        `${host}:${port} answered as peer ${listenerId}, expected peer ${serverId}: configs differ`,
      );
    }
    const ours = this.local.secret !== null;
    if (ours && !theirSecret) {
      return new MismatchError(
        `peer ${serverId} has no shared secret configured but peer ${this.local.serverId} has one`,
      );
    }
    if (!ours && theirSecret) {
      return new MismatchError(
        `peer ${serverId} requires a shared secret but peer ${this.local.serverId} has none (give every peer --secret-file or NETSORT_SECRET)`,
      );
    }
    return null;
  }

  private open(): void {
    this.clock.cancel(this.timer);
    this.decoder.stop();
    this.state = "open";
  }

  private send(frame: Uint8Array): void {
    this.socket?.write(frame);
  }

  /** End this attempt once; `then` reports why. */
  private end(then: () => void): void {
    if (this.state === "ended" || this.state === "open") return;
    this.state = "ended";
    this.clock.cancel(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.end();
    then();
  }
}

// ---- listener -------------------------------------------------------------------

/**
 * Why a hello is refused, and what it says about the cluster: "now": a
 * misconfiguration this peer must fail on at once; "unless-up": one it fails on
 * only if the mesh does not come up (without a secret a stranger can send the
 * same hello, and must not stop a healthy run); "no": just a stranger.
 */
export interface HelloRefusal {
  reason: string;
  mismatch: "now" | "unless-up" | "no";
}

export interface AcceptEvents {
  /**
   * A structurally valid hello from `hello.senderId`: return a refusal (the
   * reason sent back, and whether it is a misconfiguration this peer must fail
   * on) or null to go on.
   */
  checkHello(hello: Hello): HelloRefusal | null;
  /** The ABORT to send an authenticated (or, without a secret, any) peer after our failure; null while healthy. */
  failureFrame(): Uint8Array | null;
  /** We told `peerId` of our failure. */
  onTold(peerId: number): void;
  /**
   * The stream from `hello.senderId` is open; `rest` are bytes after the handshake.
   * `keys`: with a secret, the link's keys (`rest` on is sealed, and so must be
   * everything sent).
   */
  onOpen(socket: LinkSocket, hello: Hello, rest: Uint8Array, keys: LinkKeys | null): void;
  /** A hello showed a cluster misconfiguration: fail this peer too, now or unless the mesh comes up. */
  onMismatch(error: MismatchError, when: "now" | "unless-up"): void;
  /** The connection was dropped (a stranger, a bad hello, a timeout): log it, rate-limited. */
  onDropped(why: string): void;
}

type AcceptState = "awaiting-hello" | "awaiting-auth" | "open" | "ended";

export class AcceptHandshake {
  state: AcceptState = "awaiting-hello";
  private readonly nonce = newNonce();
  private hello: Hello | null = null;
  private keys: LinkKeys | null = null;
  private readonly timer: Deadline;
  private readonly decoder: FrameDecoder;
  /** Read at accept: once the socket has closed Bun no longer knows it. */
  private readonly remote: string;

  constructor(
    private readonly socket: LinkSocket,
    private readonly local: LocalIdentity,
    clock: MeshClock,
    helloTimeoutMs: number,
    private readonly events: AcceptEvents,
  ) {
    this.remote = `${socket.remoteAddress ?? "?"}`;
    this.decoder = new FrameDecoder(
      { onRecords: () => {}, onControl: (type, payload) => this.onFrame(type, payload) },
      new Set([FrameType.Hello]),
    );
    this.timer = clock.after(helloTimeoutMs, () =>
      this.drop(`no valid hello within ${helloTimeoutMs} ms`, null),
    );
    this.clock = clock;
    socket.data = {
      onData: (chunk) => this.onData(chunk),
      onDrain: () => {},
      onClose: (why) => this.drop(`closed before hello (${why})`, null),
    };
  }

  private readonly clock: MeshClock;

  /** Close a handshake still under way (the mesh is closing). */
  abandon(): void {
    if (this.state === "open" || this.state === "ended") return;
    this.state = "ended";
    this.clock.cancel(this.timer);
    this.socket.end();
  }

  private onData(chunk: Uint8Array): void {
    let used: number;
    try {
      used = this.decoder.push(chunk);
    } catch (error) {
      const why = error instanceof ProtocolError ? error.message : errorMessage(error);
      this.drop(why, this.hello !== null && this.local.secret === null ? `protocol error: ${why}` : null);
      return;
    }
    if (this.state === "open" && this.hello !== null) {
      this.events.onOpen(this.socket, this.hello, chunk.subarray(used), this.keys);
    }
  }

  private onFrame(type: FrameType, payload: Uint8Array): void {
    if (type === FrameType.Hello) {
      this.onHello(decodeHello(payload));
      return;
    }
    assert(type === FrameType.Auth && this.state === "awaiting-auth", "AUTH follows WELCOME");
    const hello = this.hello;
    const secret = this.local.secret;
    assert(hello !== null && secret !== null, "auth context");
    const context = proofContext(hello, this.local.serverId, this.nonce);
    const expected = makeProof(secret, "dialer", context);
    if (!proofMatches(expected, decodeAuth(payload))) {
      // Says nothing else: whoever this is has proved nothing.
      this.drop(
        `peer ${hello.senderId} failed to prove the shared secret`,
        `peer ${hello.senderId} failed to prove the shared secret to peer ${this.local.serverId}: the secrets differ`,
      );
      return;
    }
    // Proved: our proof, then everything sealed, the verdict included.
    this.socket.write(encodeAuth(makeProof(secret, "listener", context)));
    const keys = deriveLinkKeys(secret, context);
    const failure = this.events.failureFrame();
    if (failure !== null) {
      this.tell(hello.senderId, linkSealer(keys, "listener").seal(failure));
      return;
    }
    const refusal = this.events.checkHello(hello);
    if (refusal !== null) {
      // After a proof, nothing is a stranger's doing: every refusal is a misconfiguration.
      const sealed = linkSealer(keys, "listener").seal(encodeReason(FrameType.Refuse, refusal.reason, 2));
      this.refuse(refusal.mismatch === "no" ? refusal : { ...refusal, mismatch: "now" }, sealed);
      return;
    }
    this.keys = keys;
    this.open();
  }

  private onHello(hello: Hello): void {
    assert(this.state === "awaiting-hello", "one HELLO per connection");
    this.hello = hello;
    const secret = this.local.secret;
    const theirSecret = (hello.flags & FLAG_SECRET) !== 0;
    if (secret === null) {
      // No secret: anyone reaching the port is trusted as far as the protocol goes.
      if (this.tellFailure(hello.senderId)) return;
      if (theirSecret) {
        this.refuse({
          reason: `peer ${hello.senderId} has a shared secret but peer ${this.local.serverId} has none (give every peer the same --secret-file or NETSORT_SECRET)`,
          mismatch: "now",
        });
        return;
      }
      if (!this.compare(hello)) return;
      this.socket.write(encodeWelcome({ listenerId: this.local.serverId, flags: 0, nonce: this.nonce }));
      this.open();
      return;
    }
    if (!theirSecret) {
      // Not proved to be one of ours: refuse, but do not fail on its word.
      this.drop(
        `peer ${hello.senderId} has no shared secret`,
        `peer ${this.local.serverId} requires a shared secret but peer ${hello.senderId} has none (give every peer --secret-file or NETSORT_SECRET)`,
      );
      return;
    }
    this.socket.write(
      encodeWelcome({ listenerId: this.local.serverId, flags: FLAG_SECRET, nonce: this.nonce }),
    );
    this.state = "awaiting-auth";
    this.decoder.allowed = new Set([FrameType.Auth]);
  }

  /**
   * Without a secret, after our failure any dialer gets our reason instead of a
   * stream (with a secret, only a proved one, sealed: see onFrame).
   */
  private tellFailure(senderId: number): boolean {
    assert(this.local.secret === null, "the reason goes out in clear only without a secret");
    const frame = this.events.failureFrame();
    if (frame === null) return false;
    this.tell(senderId, frame);
    return true;
  }

  /** Deliver our failure (`frame`, as it goes on the wire) and hang up. */
  private tell(senderId: number, frame: Uint8Array): void {
    this.end();
    this.socket.write(frame);
    this.socket.end();
    if (senderId < this.local.peers) this.events.onTold(senderId);
  }

  /** Compare configs and settings (no secret); on a mismatch refuse with the reason (and maybe fail). */
  private compare(hello: Hello): boolean {
    const refusal = this.events.checkHello(hello);
    if (refusal === null) return true;
    this.refuse(refusal);
    return false;
  }

  /** `sealed`: the REFUSE as a sealed record (after a proof); else it goes in clear. */
  private refuse(refusal: HelloRefusal, sealed: Uint8Array | null = null): void {
    if (sealed === null) this.drop(refusal.reason, refusal.reason);
    else this.drop(refusal.reason, null, sealed);
    if (refusal.mismatch !== "no")
      this.events.onMismatch(new MismatchError(refusal.reason), refusal.mismatch);
  }

  private open(): void {
    this.decoder.stop();
    this.clock.cancel(this.timer);
    this.state = "open";
  }

  private end(): void {
    this.state = "ended";
    this.clock.cancel(this.timer);
  }

  /** Hang up, saying `refuse` in clear first, or sending the already sealed `sealed` frame. */
  private drop(why: string, refuse: string | null, sealed: Uint8Array | null = null): void {
    if (this.state === "ended" || this.state === "open") return;
    this.end();
    if (refuse !== null) this.socket.write(encodeReason(FrameType.Refuse, refuse, 2));
    if (sealed !== null) this.socket.write(sealed);
    this.socket.end();
    this.events.onDropped(`dropped a connection from ${this.remote}: ${why}`);
  }
}
