import { describe, expect, test } from "bun:test";
import {
  isNoProof,
  makeProof,
  newNonce,
  noProof,
  type ProofContext,
  proofMatches,
} from "../../src/exchange/auth.ts";
import { FINGERPRINT_BYTES, NONCE_BYTES, PROOF_BYTES } from "../../src/exchange/protocol.ts";

const secret = new TextEncoder().encode("correct horse battery staple");

function context(overrides: Partial<ProofContext> = {}): ProofContext {
  return {
    fingerprint: new Uint8Array(FINGERPRINT_BYTES).fill(0x11),
    dialerId: 1,
    listenerId: 2,
    dialerNonce: new Uint8Array(NONCE_BYTES).fill(0xd1),
    listenerNonce: new Uint8Array(NONCE_BYTES).fill(0x1e),
    ...overrides,
  };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The documented construction, computed with WebCrypto (a different implementation than node:crypto). */
async function referenceProof(secretBytes: Uint8Array, role: string, c: ProofContext): Promise<Uint8Array> {
  const label = new TextEncoder().encode(`netsort-v1-${role}`);
  const ids = new Uint8Array([c.dialerId >> 8, c.dialerId & 0xff, c.listenerId >> 8, c.listenerId & 0xff]);
  const message = Buffer.concat([label, c.fingerprint, ids, c.dialerNonce, c.listenerNonce]);
  const key = new Uint8Array(secretBytes); // an ArrayBuffer-backed copy, as WebCrypto's types want
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, message));
}

describe("makeProof", () => {
  test("is HMAC-SHA256 over role label, fingerprint, ids and both nonces", async () => {
    for (const role of ["dialer", "listener"] as const) {
      for (const c of [context(), context({ dialerId: 1023, listenerId: 256 })]) {
        const proof = makeProof(secret, role, c);
        expect(proof.length).toBe(PROOF_BYTES);
        expect(hex(proof)).toBe(hex(await referenceProof(secret, role, c)));
      }
    }
  });

  test("is deterministic for the same inputs", () => {
    expect(hex(makeProof(secret, "dialer", context()))).toBe(hex(makeProof(secret, "dialer", context())));
  });

  test("differs by role, so a proof cannot be reflected back", () => {
    expect(hex(makeProof(secret, "dialer", context()))).not.toBe(
      hex(makeProof(secret, "listener", context())),
    );
  });

  test("differs by secret, by either nonce, by swapped nonces, by fingerprint and by ids", () => {
    const base = hex(makeProof(secret, "dialer", context()));
    const flipped = (b: Uint8Array, i: number) => {
      const out = b.slice();
      out[i] ^= 1;
      return out;
    };
    const c = context();
    const variants: Array<[string, Uint8Array, ProofContext]> = [
      ["secret", new TextEncoder().encode("correct horse battery stapler"), c],
      ["empty secret", new Uint8Array(0), c],
      ["dialer nonce", secret, { ...c, dialerNonce: flipped(c.dialerNonce, 31) }],
      ["listener nonce", secret, { ...c, listenerNonce: flipped(c.listenerNonce, 0) }],
      ["swapped nonces", secret, { ...c, dialerNonce: c.listenerNonce, listenerNonce: c.dialerNonce }],
      ["fingerprint", secret, { ...c, fingerprint: flipped(c.fingerprint, 7) }],
      ["dialer id", secret, { ...c, dialerId: 3 }],
      ["listener id", secret, { ...c, listenerId: 3 }],
      ["swapped ids", secret, { ...c, dialerId: 2, listenerId: 1 }],
      ["id bytes", secret, { ...c, dialerId: 256, listenerId: 2 }],
    ];
    const seen = new Map([[base, "base"]]);
    for (const [what, key, ctx] of variants) {
      const proof = hex(makeProof(key, "dialer", ctx));
      expect(`${what}: ${seen.get(proof) ?? "new"}`).toBe(`${what}: new`);
      seen.set(proof, what);
    }
  });
});

describe("proofMatches / isNoProof / newNonce", () => {
  test("proofMatches accepts only the same bytes", () => {
    const proof = makeProof(secret, "listener", context());
    expect(proofMatches(proof, proof.slice())).toBe(true);
    for (const i of [0, 15, 31]) {
      const bad = proof.slice();
      bad[i] ^= 0x80;
      expect(proofMatches(proof, bad)).toBe(false);
    }
    expect(proofMatches(proof, proof.subarray(0, 31))).toBe(false);
    expect(proofMatches(proof, new Uint8Array(33))).toBe(false);
    expect(proofMatches(proof, noProof)).toBe(false);
  });

  test("isNoProof: all zeros only", () => {
    expect(noProof.length).toBe(PROOF_BYTES);
    expect(isNoProof(noProof)).toBe(true);
    expect(isNoProof(new Uint8Array(PROOF_BYTES))).toBe(true);
    for (const i of [0, 31]) {
      const p = new Uint8Array(PROOF_BYTES);
      p[i] = 1;
      expect(isNoProof(p)).toBe(false);
    }
    expect(isNoProof(makeProof(secret, "dialer", context()))).toBe(false);
  });

  test("newNonce gives fresh 32-byte nonces", () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const n = newNonce();
      expect(n.length).toBe(NONCE_BYTES);
      nonces.add(hex(n));
    }
    expect(nonces.size).toBe(100);
    expect(nonces.has(hex(new Uint8Array(NONCE_BYTES)))).toBe(false);
  });
});
