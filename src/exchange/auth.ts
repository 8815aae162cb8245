/**
 * Challenge-response proof of a shared secret. Each side sends a fresh random
 * nonce (dialer in HELLO, listener in WELCOME); each proves it knows the secret
 * with HMAC-SHA256 over both nonces and the stream's identity, with a different
 * label per direction so a proof cannot be reflected back. The secret itself
 * never crosses the wire.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { NONCE_BYTES, PROOF_BYTES } from "./protocol.ts";

export type ProofRole = "listener" | "dialer";

export interface ProofContext {
  fingerprint: Uint8Array;
  dialerId: number;
  listenerId: number;
  dialerNonce: Uint8Array;
  listenerNonce: Uint8Array;
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** All zeros: the proof field when no secret is configured. */
export const noProof = new Uint8Array(PROOF_BYTES);

export function makeProof(secret: Uint8Array, role: ProofRole, c: ProofContext): Uint8Array {
  const ids = new Uint8Array(4);
  new DataView(ids.buffer).setUint16(0, c.dialerId);
  new DataView(ids.buffer).setUint16(2, c.listenerId);
  const mac = createHmac("sha256", secret)
    .update(`netsort-v1-${role}`)
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
