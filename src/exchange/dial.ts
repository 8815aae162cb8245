import { assert, errorMessage, NetsortError } from "../errors.ts";
import { makeProof, newNonce, proofMatches } from "./auth.ts";
import type { Deadline, MeshClock } from "./clock.ts";
import { FrameDecoder } from "./decoder.ts";
import { type LinkSocket, type LocalIdentity, MismatchError, proofContext } from "./handshake.ts";
import { endpoint } from "./link-terms.ts";
import {
  decodeAuth,
  decodeWelcome,
  encodeAuth,
  encodeHello,
  FLAG_SECRET,
  FrameType,
  type Hello,
  ProtocolError,
} from "./protocol.ts";
import { deriveLinkKeys, type LinkKeys } from "./seal.ts";
import type { SocketHandler } from "./streams.ts";

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
        `peer ${this.peer.serverId} at ${endpoint(this.peer)} failed to prove the shared secret to peer ${this.local.serverId}: the secrets differ`,
      );
      this.end(() => this.events.onRejected(error, null));
      return;
    }
    this.keys = deriveLinkKeys(secret, context);
    this.open();
  }

  private checkWelcome(listenerId: number, theirSecret: boolean): MismatchError | null {
    const { serverId } = this.peer;
    if (listenerId !== serverId) {
      return new MismatchError(
        `${endpoint(this.peer)} answered as peer ${listenerId}, expected peer ${serverId}: configs differ`,
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
