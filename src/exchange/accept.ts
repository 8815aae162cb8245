import { assert, errorMessage } from "../errors.ts";
import { makeProof, newNonce, proofMatches } from "./auth.ts";
import type { Deadline, MeshClock } from "./clock.ts";
import { FrameDecoder } from "./decoder.ts";
import {
  type HelloRefusal,
  type LinkSocket,
  type LocalIdentity,
  MismatchError,
  proofContext,
} from "./handshake.ts";
import {
  decodeAuth,
  decodeHello,
  encodeAuth,
  encodeReason,
  encodeWelcome,
  FLAG_SECRET,
  FrameType,
  type Hello,
  ProtocolError,
} from "./protocol.ts";
import { deriveLinkKeys, type LinkKeys, linkSealer } from "./seal.ts";

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
