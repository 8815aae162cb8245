import { describe, expect, test } from "bun:test";
import {
  dialerProof,
  dialerProofValid,
  isNoProof,
  listenerProof,
  listenerProofValid,
  makeProof,
  newNonce,
  noProof,
  type ProofContext,
  proofMatches,
} from "../../src/exchange/auth.ts";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import {
  decodeAuth,
  decodeHello,
  decodeWelcome,
  encodeAuth,
  encodeHello,
  encodeSummary,
  encodeWelcome,
  FINGERPRINT_BYTES,
  FLAG_SECRET,
  FRAME_HEADER_BYTES,
  FrameType,
  NONCE_BYTES,
  PROOF_BYTES,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import { SealError, sealedLink } from "../../src/exchange/seal.ts";
import { RECORD_BYTES } from "../../src/record.ts";

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
  const label = new TextEncoder().encode(`netsort-v2-${role}`);
  const ids = new Uint8Array([c.dialerId >> 8, c.dialerId & 0xff, c.listenerId >> 8, c.listenerId & 0xff]);
  const message = Buffer.concat([label, c.fingerprint, ids, c.dialerNonce, c.listenerNonce]);
  const key = new Uint8Array(secretBytes); // an ArrayBuffer-backed copy, as WebCrypto's types want
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, message));
}

describe("makeProof", () => {
  test("is HMAC-SHA256 over the v2 role label, fingerprint, ids and both nonces", async () => {
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

describe("handshake steps: the dialer proves first", () => {
  const c = context();
  const wrong = new TextEncoder().encode("correct horse battery stapler");

  test("each check accepts only the other side's proof under the same secret and context", () => {
    expect(dialerProofValid(secret, c, dialerProof(secret, c))).toBe(true);
    expect(listenerProofValid(secret, c, listenerProof(secret, c))).toBe(true);
    // Reflection: a side's own proof sent back is not the other side's.
    expect(dialerProofValid(secret, c, listenerProof(secret, c))).toBe(false);
    expect(listenerProofValid(secret, c, dialerProof(secret, c))).toBe(false);
    // Another secret, another connection's nonces, nothing at all.
    expect(dialerProofValid(secret, c, dialerProof(wrong, c))).toBe(false);
    expect(listenerProofValid(secret, c, listenerProof(wrong, c))).toBe(false);
    const other = context({ listenerNonce: new Uint8Array(NONCE_BYTES).fill(0x2f) });
    expect(dialerProofValid(secret, c, dialerProof(secret, other))).toBe(false);
    expect(dialerProofValid(secret, c, noProof)).toBe(false);
    expect(hex(dialerProof(secret, c))).toBe(hex(makeProof(secret, "dialer", c)));
    expect(hex(listenerProof(secret, c))).toBe(hex(makeProof(secret, "listener", c)));
  });

  /**
   * The documented order run over in-memory byte streams with the real encoders,
   * FrameDecoder and seal.ts: HELLO -> WELCOME (no proof) -> AUTH (dialer) ->
   * AUTH (listener) -> sealed frames both ways. Returns what each side saw.
   */
  function handshake(dialerSecret: Uint8Array, listenerSecret: Uint8Array) {
    const fingerprint = new Uint8Array(FINGERPRINT_BYTES).fill(0x42);
    const toListener: Uint8Array[] = [];
    const toDialer: Uint8Array[] = [];
    const dialerNonce = newNonce();
    toListener.push(
      encodeHello({
        senderId: 1,
        receiverId: 2,
        peers: 3,
        flags: FLAG_SECRET,
        settings: { validate: false, partition: "bits", idleTimeoutMs: 5_000 },
        inputRecords: 0,
        fingerprint,
        outputTag: new Uint8Array(32),
        nonce: dialerNonce,
      }),
    );
    // Listener: reads HELLO, answers WELCOME with its nonce and no proof.
    const hello = decodeHello(toListener[0].subarray(FRAME_HEADER_BYTES));
    const listenerNonce = newNonce();
    toDialer.push(encodeWelcome({ listenerId: 2, flags: FLAG_SECRET, nonce: listenerNonce }));
    // Dialer: reads WELCOME, proves first.
    const welcome = decodeWelcome(toDialer[0].subarray(FRAME_HEADER_BYTES));
    // WELCOME has no proof field at all: the listener proves nothing before the dialer has.
    expect(toDialer[0].length).toBe(FRAME_HEADER_BYTES + 2 + 2 + 32);
    const dialerCtx: ProofContext = {
      fingerprint,
      dialerId: 1,
      listenerId: welcome.listenerId,
      dialerNonce,
      listenerNonce: welcome.nonce,
    };
    toListener.push(encodeAuth(dialerProof(dialerSecret, dialerCtx)));
    // Listener: verifies before it says anything that depends on its secret.
    const listenerCtx: ProofContext = {
      fingerprint,
      dialerId: hello.senderId,
      listenerId: 2,
      dialerNonce: hello.nonce,
      listenerNonce,
    };
    const got = decodeAuth(toListener[1].subarray(FRAME_HEADER_BYTES));
    if (!dialerProofValid(listenerSecret, listenerCtx, got)) return { listenerAccepted: false, toDialer };
    toDialer.push(encodeAuth(listenerProof(listenerSecret, listenerCtx)));
    const dialerAccepted = listenerProofValid(
      dialerSecret,
      dialerCtx,
      decodeAuth(toDialer[1].subarray(FRAME_HEADER_BYTES)),
    );
    return { listenerAccepted: true, dialerAccepted, dialerCtx, listenerCtx, toDialer };
  }

  test("same secret: both accept, then sealed DATA and DONE reach the listener's FrameDecoder intact", () => {
    const h = handshake(secret, secret);
    expect(h.listenerAccepted).toBe(true);
    expect(h.dialerAccepted).toBe(true);
    const records = new Uint8Array(3 * RECORD_BYTES).map((_, i) => i);
    const data = new Uint8Array(FRAME_HEADER_BYTES + records.length);
    writeHeader(data, 0, FrameType.Data, records.length);
    data.set(records, FRAME_HEADER_BYTES);
    const received: Uint8Array[] = [];
    const controls: FrameType[] = [];
    const decoder = new FrameDecoder(
      {
        onControl: (type) => controls.push(type),
        onRecords: (buf, offset, length) => received.push(buf.slice(offset, offset + length)),
      },
      new Set([FrameType.Data, FrameType.Done]),
    );
    const dialer = sealedLink(secret, h.dialerCtx!, "dialer", () => {});
    const listener = sealedLink(secret, h.listenerCtx!, "listener", (bytes) => decoder.push(bytes));
    const wire = Buffer.concat([
      dialer.sealer.seal(data),
      dialer.sealer.seal(encodeSummary(FrameType.Done, { records: 3, digest: 7 })),
    ]);
    // No record byte crosses in clear: the plaintext frame is nowhere in the wire bytes.
    expect(wire.indexOf(Buffer.from(records.subarray(0, 32)))).toBe(-1);
    for (let at = 0; at < wire.length; at += 37) listener.opener.push(wire.subarray(at, at + 37));
    listener.opener.finish();
    expect(hex(Buffer.concat(received))).toBe(hex(records));
    expect(controls).toEqual([FrameType.Done]);
    // The listener's answers open on the dialer's side, not on its own.
    const ack = encodeSummary(FrameType.Ack, { records: 3, digest: 7 });
    const back: Uint8Array[] = [];
    sealedLink(secret, h.dialerCtx!, "dialer", (b) => back.push(b.slice())).opener.push(
      listener.sealer.seal(ack),
    );
    expect(hex(Buffer.concat(back))).toBe(hex(ack));
  });

  test("wrong secret on the dialer: the listener refuses and has sent no proof (no offline guessing oracle)", () => {
    const h = handshake(wrong, secret);
    expect(h.listenerAccepted).toBe(false);
    // All the dialer ever received: WELCOME, which carries no proof.
    expect(h.toDialer.length).toBe(1);
    expect(decodeWelcome(h.toDialer[0].subarray(FRAME_HEADER_BYTES)).flags).toBe(FLAG_SECRET);
  });

  test("a listener that does not hold the secret cannot produce a proof or open sealed frames", () => {
    const c = context();
    expect(listenerProofValid(secret, c, listenerProof(wrong, c))).toBe(false);
    const frame = encodeSummary(FrameType.Done, { records: 1, digest: 1 });
    const sealed = sealedLink(secret, c, "dialer", () => {}).sealer.seal(frame);
    const impostor = sealedLink(wrong, c, "listener", () => {});
    expect(() => impostor.opener.push(sealed)).toThrow(SealError);
  });
});
