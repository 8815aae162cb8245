/**
 * What the two handshakes of a connection share (src/exchange/dial.ts for the
 * dialer, src/exchange/accept.ts for the listener; docs/protocol.md, "Life of a
 * stream" 1-2): who we are on the wire, the proof context, and the errors and
 * verdicts they report.
 *
 *   dialer:   connecting -> hello-sent -> [auth-sent] -> open      (or ended)
 *   listener: awaiting-hello -> [awaiting-auth] -> open            (or ended)
 *
 * A handshake never fails the mesh itself: it reports to its owner (PeerLink for
 * dials, Mesh for accepts), which decides.
 */
import type { Socket } from "bun";
import { NetsortError } from "../errors.ts";
import type { ProofContext } from "./auth.ts";
import type { Hello } from "./protocol.ts";
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

export function proofContext(h: Hello, listenerId: number, listenerNonce: Uint8Array): ProofContext {
  return {
    fingerprint: h.fingerprint,
    dialerId: h.senderId,
    listenerId,
    dialerNonce: h.nonce,
    listenerNonce,
  };
}

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
