/**
 * Challenge-response proof of a shared secret. Each side sends a fresh random
 * nonce (dialer in HELLO, listener in WELCOME); each proves it knows the secret
 * with HMAC-SHA256 over both nonces and the stream's identity, with a different
 * label per direction so a proof cannot be reflected back. The secret itself
 * never crosses the wire.
 *
 * Order (docs/security.md): the dialer proves first (AUTH), the listener checks
 * that proof before it sends its own (AUTH back). A stranger who connects to a
 * port therefore never sees a proof, so it gets nothing to guess the secret
 * against offline. After its own AUTH each side seals every frame it sends
 * (seal.ts), and after verifying the other's AUTH it opens every frame it receives.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { NONCE_BYTES, PROOF_BYTES } from "./protocol.ts";

export type ProofRole = "listener" | "dialer";

/** The connection's identity and both fresh nonces: what proofs and link keys are bound to. */
export interface ProofContext {
  fingerprint: Uint8Array;
  dialerId: number;
  listenerId: number;
  dialerNonce: Uint8Array;
  listenerNonce: Uint8Array;
}

/** The label's version moves with the handshake order, so proofs of one order are never valid in another. */
const PROOF_LABEL = "netsort-v2-";

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** All zeros: the proof field when no secret is configured. */
export const noProof = new Uint8Array(PROOF_BYTES);

/** HMAC-SHA256(secret, "netsort-v2-<role>" | fingerprint | u16 dialer id | u16 listener id | dialer nonce | listener nonce). */
export function makeProof(secret: Uint8Array, role: ProofRole, c: ProofContext): Uint8Array {
  const ids = new Uint8Array(4);
  new DataView(ids.buffer).setUint16(0, c.dialerId);
  new DataView(ids.buffer).setUint16(2, c.listenerId);
  const mac = createHmac("sha256", secret)
    .update(`${PROOF_LABEL}${role}`)
    .update(c.fingerprint)
    .update(ids)
    .update(c.dialerNonce)
    .update(c.listenerNonce)
    .digest();
  return new Uint8Array(mac);
}

export function proofMatches(expected: Uint8Array, got: Uint8Array): boolean {
  return expected.length === got.length && timingSafeEqual(expected, got);
}

export function isNoProof(proof: Uint8Array): boolean {
  return proof.every((b) => b === 0);
}

/** Step 3, dialer: the proof it sends in AUTH once WELCOME (with the listener's nonce) arrived. */
export function dialerProof(secret: Uint8Array, c: ProofContext): Uint8Array {
  return makeProof(secret, "dialer", c);
}

/** Step 4, listener: true when the dialer's AUTH proves the secret. Only then may it send listenerProof. */
export function dialerProofValid(secret: Uint8Array, c: ProofContext, got: Uint8Array): boolean {
  return proofMatches(makeProof(secret, "dialer", c), got);
}

/** Step 4, listener: the proof it answers a valid dialer AUTH with. */
export function listenerProof(secret: Uint8Array, c: ProofContext): Uint8Array {
  return makeProof(secret, "listener", c);
}

/** Step 5, dialer: true when the listener's AUTH proves the secret. */
export function listenerProofValid(secret: Uint8Array, c: ProofContext, got: Uint8Array): boolean {
  return proofMatches(makeProof(secret, "listener", c), got);
}
