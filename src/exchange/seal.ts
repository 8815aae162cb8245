/**
 * The sealed channel that carries every frame after the handshake when a shared
 * secret is configured (docs/security.md). Standard parts only:
 *
 * - keys: HKDF-SHA256 (RFC 5869) from the secret, salted with both sides' fresh
 *   nonces, with the connection's identity (fingerprint, dialer id, listener id)
 *   and the direction in `info`: one key per direction per connection;
 * - records: AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce made of 4 zero
 *   bytes and a 64-bit per-direction record counter that starts at 0, is never
 *   reused, and is bounded (running out is an error, never a wrap).
 *
 * A sealed record is [u32 length][ciphertext][16-byte tag], the length big-endian
 * and authenticated as additional data; each plaintext frame becomes one record.
 * The receiver derives the nonce from its own counter, so a dropped, replayed or
 * reordered record fails the tag check like a modified one.
 */
import {
  type CipherGCMTypes,
  createCipheriv,
  createDecipheriv,
  type DecipherGCM,
  hkdfSync,
} from "node:crypto";
import { assert } from "../errors.ts";
import type { ProofContext, ProofRole } from "./auth.ts";
import {
  FINGERPRINT_BYTES,
  FRAME_HEADER_BYTES,
  maxDataPayloadBytes,
  NONCE_BYTES,
  ProtocolError,
} from "./protocol.ts";

export const SEAL_KEY_BYTES = 32;
export const SEAL_LENGTH_BYTES = 4;
export const SEAL_TAG_BYTES = 16;
/** Bytes a record adds to its plaintext frame. */
export const sealOverheadBytes = SEAL_LENGTH_BYTES + SEAL_TAG_BYTES;
/**
 * Where to put a record in a pooled output buffer so its ciphertext starts 64
 * bytes in. Measured in Bun 1.4.5 on x86-64: copying the 256 KB ciphertext that
 * `update()` returns (a fresh buffer, in practice page-aligned at this size)
 * into the output ran at ~1 GB/s when the destination sat 4 to 16 bytes past a
 * 64-byte boundary and at ~2 GB/s from a 64-byte boundary on (likely the CPU's
 * "4K aliasing" stall between the copy's loads and stores).
 */
export const sealOutOffsetBytes = 64 - SEAL_LENGTH_BYTES;
/**
 * Room a pooled frame buffer keeps before its frame header so the frame can be
 * sealed in place: the record starts at sealOutOffsetBytes, its length field
 * fills the rest, and the ciphertext lands 64 bytes in (over the plaintext).
 */
export const sealRoomBeforeBytes = sealOutOffsetBytes + SEAL_LENGTH_BYTES;
/** Room a pooled frame buffer keeps after its frame for the record's tag. */
export const sealRoomAfterBytes = SEAL_TAG_BYTES;
/** The largest plaintext a record may carry: the largest legal frame (a full DATA frame). */
export const maxSealedPlaintextBytes = FRAME_HEADER_BYTES + maxDataPayloadBytes;
/**
 * Records one key may seal. The nonce counter has 64 bits; this bound stops far
 * below, and far above any sort (256 GB in 256 KB frames is 2^20 records).
 */
export const maxSealedRecordsPerKey = 2 ** 32;
/**
 * Plaintext bytes one key may seal: 2^40 B (1 TiB) is 2^36 AES blocks, which keeps
 * AES-GCM's confidentiality and integrity bounds near 2^-56 (the reasoning behind
 * RFC 8446 section 5.5's record limits).
 */
export const maxSealedBytesPerKey = 2 ** 40;

const CIPHER: CipherGCMTypes = "aes-256-gcm";
const NONCE_BYTES_GCM = 12;
const HKDF_LABEL = "netsort-v2 seal ";

/** A sealed stream failed: modified, dropped, replayed, reordered, truncated or keyed differently. */
export class SealError extends ProtocolError {
  constructor(message: string) {
    super(message);
    this.name = "SealError";
  }
}

/** The connection identity and both fresh nonces: the same fields the proofs are bound to. */
export type LinkContext = ProofContext;

export type LinkRole = ProofRole;

/** One key per direction of one connection. */
export interface LinkKeys {
  dialerToListener: Uint8Array;
  listenerToDialer: Uint8Array;
}

/** Limits a Sealer/Opener enforces; tests inject small ones. */
export interface SealBounds {
  maxRecords: number;
  maxBytes: number;
}

const defaultBounds: SealBounds = { maxRecords: maxSealedRecordsPerKey, maxBytes: maxSealedBytesPerKey };

/**
 * HKDF-SHA256(ikm = secret, salt = dialer nonce | listener nonce,
 * info = "netsort-v2 seal <direction>" | fingerprint | u16 dialer id | u16 listener id).
 */
export function deriveLinkKeys(secret: Uint8Array, c: LinkContext): LinkKeys {
  assert(secret.length > 0, "a secret to derive keys from");
  assert(c.dialerNonce.length === NONCE_BYTES && c.listenerNonce.length === NONCE_BYTES, "nonce sizes");
  assert(c.fingerprint.length === FINGERPRINT_BYTES, "fingerprint size");
  const salt = new Uint8Array(2 * NONCE_BYTES);
  salt.set(c.dialerNonce, 0);
  salt.set(c.listenerNonce, NONCE_BYTES);
  const ids = new Uint8Array(4);
  const view = new DataView(ids.buffer);
  view.setUint16(0, c.dialerId);
  view.setUint16(2, c.listenerId);
  const key = (direction: string) => {
    const label = new TextEncoder().encode(`${HKDF_LABEL}${direction}`);
    const info = new Uint8Array(label.length + FINGERPRINT_BYTES + ids.length);
    info.set(label, 0);
    info.set(c.fingerprint, label.length);
    info.set(ids, label.length + FINGERPRINT_BYTES);
    return new Uint8Array(hkdfSync("sha256", secret, salt, info, SEAL_KEY_BYTES));
  };
  return { dialerToListener: key("dialer->listener"), listenerToDialer: key("listener->dialer") };
}

/** The key this side seals with. */
export function sendKey(keys: LinkKeys, role: LinkRole): Uint8Array {
  return role === "dialer" ? keys.dialerToListener : keys.listenerToDialer;
}

/** The key this side opens with. */
export function receiveKey(keys: LinkKeys, role: LinkRole): Uint8Array {
  return role === "dialer" ? keys.listenerToDialer : keys.dialerToListener;
}

function checkKey(key: Uint8Array): Uint8Array {
  assert(key.length === SEAL_KEY_BYTES, "AES-256 key size");
  return key.slice(); // our own copy: the caller may wipe or reuse its buffer
}

/** Counter -> 96-bit nonce: 4 zero bytes, then the counter as u64 big-endian. */
function writeNonce(nonce: Uint8Array, counter: number): void {
  const view = new DataView(nonce.buffer, nonce.byteOffset, NONCE_BYTES_GCM);
  view.setUint32(0, 0);
  view.setUint32(4, Math.floor(counter / 2 ** 32));
  view.setUint32(8, counter >>> 0);
}

/** Seals plaintext frames, one record each, in order. One per direction per connection. */
export class Sealer {
  private readonly key: Uint8Array;
  private readonly nonce = new Uint8Array(NONCE_BYTES_GCM);
  private readonly lengthBytes = new Uint8Array(SEAL_LENGTH_BYTES);
  private counter = 0;
  private bytes = 0;
  private broken: string | null = null;

  constructor(
    key: Uint8Array,
    private readonly bounds: SealBounds = defaultBounds,
  ) {
    this.key = checkKey(key);
  }

  /** Records sealed so far (the next record's counter). */
  get records(): number {
    return this.counter;
  }

  /** Bytes of the sealed record for a plaintext of `plainLength` bytes. */
  static sealedLength(plainLength: number): number {
    return plainLength + sealOverheadBytes;
  }

  /**
   * Seal `plain` into `out` at `outOffset`; returns the bytes written
   * (plain.length + sealOverheadBytes). `out` can be a pooled buffer the caller
   * recycles once it is written. Sealing in place works: put the plaintext at
   * out[outOffset + SEAL_LENGTH_BYTES] with SEAL_TAG_BYTES of room after it.
   * For 256 KB frames use outOffset = sealOutOffsetBytes in a buffer of
   * sealOutOffsetBytes + Sealer.sealedLength(frame) bytes (twice as fast).
   */
  sealInto(plain: Uint8Array, out: Uint8Array, outOffset = 0): number {
    const n = plain.length;
    assert(n > 0 && n <= maxSealedPlaintextBytes, `sealed plaintext of ${n} bytes`);
    assert(outOffset >= 0 && outOffset + n + sealOverheadBytes <= out.length, "room for the sealed record");
    this.reserve(n);
    new DataView(this.lengthBytes.buffer).setUint32(0, n);
    writeNonce(this.nonce, this.counter - 1);
    const cipher = createCipheriv(CIPHER, this.key, this.nonce, { authTagLength: SEAL_TAG_BYTES });
    cipher.setAAD(this.lengthBytes);
    // update() returns a fresh buffer, so `plain` may overlap `out` (sealing in place).
    const body = cipher.update(plain);
    const tail = cipher.final();
    assert(body.length + tail.length === n, "GCM keeps the length");
    out.set(this.lengthBytes, outOffset);
    out.set(body, outOffset + SEAL_LENGTH_BYTES);
    if (tail.length > 0) out.set(tail, outOffset + SEAL_LENGTH_BYTES + body.length);
    out.set(cipher.getAuthTag(), outOffset + SEAL_LENGTH_BYTES + n);
    return n + sealOverheadBytes;
  }

  /** Seal into a new buffer (control frames; DATA should use sealInto with a pooled buffer). */
  seal(plain: Uint8Array): Uint8Array {
    const out = new Uint8Array(plain.length + sealOverheadBytes);
    this.sealInto(plain, out, 0);
    return out;
  }

  /** Take the next counter value, or fail for good when the key is used up. */
  private reserve(n: number): void {
    if (this.broken !== null) throw new SealError(this.broken);
    if (this.counter >= this.bounds.maxRecords || this.bytes + n > this.bounds.maxBytes) {
      this.broken = `send key used up after ${this.counter} records (${this.bytes} bytes): the connection must be re-established`;
      throw new SealError(this.broken);
    }
    this.counter++;
    this.bytes += n;
  }
}

/** Where an Opener hands verified plaintext; `bytes` is valid only during the call. */
export type PlaintextSink = (bytes: Uint8Array) => void;

enum Phase {
  Length = 0,
  Body = 1,
  Tag = 2,
}

/**
 * Opens a sealed stream fed as arbitrary TCP chunks. Plaintext reaches the sink
 * only after its record's tag verified, in record order, possibly in several
 * pieces per record (the FrameDecoder reassembles frames split anywhere). Holds
 * at most one record's plaintext. The first failure is final: every later push
 * throws the same error.
 */
export class Opener {
  private readonly key: Uint8Array;
  private readonly nonce = new Uint8Array(NONCE_BYTES_GCM);
  private readonly lengthBytes = new Uint8Array(SEAL_LENGTH_BYTES);
  private readonly tag = new Uint8Array(SEAL_TAG_BYTES);
  private phase = Phase.Length;
  private fill = 0; // bytes of the length or tag field gathered so far
  private remaining = 0; // ciphertext bytes of the current record still to come
  private length = 0;
  private decipher: DecipherGCM | null = null;
  /** Decrypted but not yet verified pieces of the current record. */
  private pieces: Uint8Array[] = [];
  private counter = 0;
  private bytes = 0;
  private broken: SealError | null = null;

  constructor(
    key: Uint8Array,
    private readonly sink: PlaintextSink,
    private readonly bounds: SealBounds = defaultBounds,
  ) {
    this.key = checkKey(key);
  }

  /** Records opened so far. */
  get records(): number {
    return this.counter;
  }

  /** True when no record is half-received: the stream may end here. */
  get atRecordBoundary(): boolean {
    return this.phase === Phase.Length && this.fill === 0;
  }

  /** Feed the next chunk of the stream. Throws SealError on the first bad byte. */
  push(chunk: Uint8Array): void {
    if (this.broken !== null) throw this.broken;
    try {
      this.consume(chunk);
    } catch (error) {
      this.decipher = null;
      this.pieces = [];
      // A sink's own error (e.g. the FrameDecoder's ProtocolError) passes through unchanged.
      this.broken =
        error instanceof SealError
          ? error
          : new SealError(`sealed stream stopped after record ${this.counter}`);
      throw error;
    }
  }

  /** The stream ended: throws if it ended inside a record (truncation). */
  finish(): void {
    if (this.broken !== null) throw this.broken;
    if (this.atRecordBoundary) return;
    const got =
      this.phase === Phase.Length
        ? `${this.fill} of ${SEAL_LENGTH_BYTES} length bytes`
        : this.phase === Phase.Body
          ? `${this.length - this.remaining} of ${this.length} ciphertext bytes`
          : `${this.fill} of ${SEAL_TAG_BYTES} tag bytes`;
    this.broken = new SealError(`stream truncated inside sealed record ${this.counter} (${got})`);
    throw this.broken;
  }

  private consume(chunk: Uint8Array): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.phase === Phase.Length) {
        const take = Math.min(SEAL_LENGTH_BYTES - this.fill, end - pos);
        this.lengthBytes.set(chunk.subarray(pos, pos + take), this.fill);
        this.fill += take;
        pos += take;
        if (this.fill === SEAL_LENGTH_BYTES) this.startRecord();
      } else if (this.phase === Phase.Body) {
        const take = Math.min(this.remaining, end - pos);
        const piece = this.decipher!.update(chunk.subarray(pos, pos + take));
        if (piece.length > 0) this.pieces.push(piece);
        this.remaining -= take;
        pos += take;
        if (this.remaining === 0) {
          this.phase = Phase.Tag;
          this.fill = 0;
        }
      } else {
        const take = Math.min(SEAL_TAG_BYTES - this.fill, end - pos);
        this.tag.set(chunk.subarray(pos, pos + take), this.fill);
        this.fill += take;
        pos += take;
        if (this.fill === SEAL_TAG_BYTES) this.endRecord();
      }
    }
  }

  private startRecord(): void {
    const length = new DataView(this.lengthBytes.buffer).getUint32(0);
    // Checked before anything is decrypted or kept: no allocation follows a peer's length unchecked.
    if (length === 0 || length > maxSealedPlaintextBytes) {
      throw new SealError(
        `sealed record ${this.counter} claims ${length} bytes (allowed 1..${maxSealedPlaintextBytes})`,
      );
    }
    if (this.counter >= this.bounds.maxRecords || this.bytes + length > this.bounds.maxBytes) {
      throw new SealError(
        `receive key used up after ${this.counter} records (${this.bytes} bytes): the peer sent past the limit`,
      );
    }
    writeNonce(this.nonce, this.counter);
    const decipher = createDecipheriv(CIPHER, this.key, this.nonce, { authTagLength: SEAL_TAG_BYTES });
    decipher.setAAD(this.lengthBytes);
    this.decipher = decipher;
    this.length = length;
    this.remaining = length;
    this.phase = Phase.Body;
    this.fill = 0;
  }

  private endRecord(): void {
    const decipher = this.decipher!;
    decipher.setAuthTag(this.tag);
    let tail: Uint8Array;
    try {
      tail = decipher.final();
    } catch {
      throw new SealError(
        `sealed record ${this.counter} failed authentication (bytes modified, dropped, replayed or reordered, or the keys differ)`,
      );
    }
    const pieces = this.pieces;
    this.pieces = [];
    this.decipher = null;
    this.counter++;
    this.bytes += this.length;
    this.phase = Phase.Length;
    this.fill = 0;
    for (const piece of pieces) this.sink(piece);
    if (tail.length > 0) this.sink(tail);
  }
}

/** The Sealer for this side of a link. */
export function linkSealer(keys: LinkKeys, role: LinkRole, bounds: SealBounds = defaultBounds): Sealer {
  return new Sealer(sendKey(keys, role), bounds);
}

/** The Opener for this side of a link, handing plaintext to `sink` (e.g. a FrameDecoder's push). */
export function linkOpener(
  keys: LinkKeys,
  role: LinkRole,
  sink: PlaintextSink,
  bounds: SealBounds = defaultBounds,
): Opener {
  return new Opener(receiveKey(keys, role), sink, bounds);
}

/** This side's sealed channel for one link: derive the keys, then the Sealer and Opener. */
export function sealedLink(
  secret: Uint8Array,
  c: LinkContext,
  role: LinkRole,
  sink: PlaintextSink,
  bounds: SealBounds = defaultBounds,
): { sealer: Sealer; opener: Opener } {
  const keys = deriveLinkKeys(secret, c);
  return { sealer: linkSealer(keys, role, bounds), opener: linkOpener(keys, role, sink, bounds) };
}
