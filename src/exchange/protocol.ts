/**
 * The wire protocol, in one place. docs/protocol.md describes it for people;
 * this file is the truth for code. Every message is a frame:
 *
 *   offset 0  u8   type        (FrameType below)
 *   offset 1  u8   flags       must be 0 (reserved)
 *   offset 2  u16  reserved    must be 0
 *   offset 4  u32  length      payload bytes, big-endian, checked against the type's limit
 *   offset 8  ...  payload
 *
 * The 8-byte header keeps DATA payloads 4-byte aligned, so records are copied as
 * u32 words on both ends. No allocation is ever driven by an unchecked length:
 * each type has a hard payload limit, checked before a byte of payload is kept.
 */
import { assert } from "../errors.ts";
import { maxAbortReasonBytes, maxControlPayloadBytes, sampleMaxRecords } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";

export const FRAME_HEADER_BYTES = 8;
export const PROTOCOL_MAGIC = 0x4e535254; // "NSRT"
/**
 * Version 2: settings and an output tag in HELLO, the dialer proves the secret
 * first, COMMITTED and CONFIRMED. Version 3: MARK (key-range rounds).
 */
export const PROTOCOL_VERSION = 3;
export const FINGERPRINT_BYTES = 32;
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
/** Hard limit on one DATA frame's payload; senders use limits.batchBytes (smaller). */
export const maxDataPayloadBytes = 1024 * 1024 - ((1024 * 1024) % RECORD_BYTES);

export enum FrameType {
  /** dialer -> listener: who I am, which cluster, whom I want. */
  Hello = 1,
  /** listener -> dialer: accepted; the listener's id, fingerprint, nonce, proof. */
  Welcome = 2,
  /** dialer -> listener: the dialer's proof of the shared secret. */
  Auth = 3,
  /** dialer -> listener: whole records. */
  Data = 4,
  /** dialer -> listener: end of this stream, with its record count and digest. */
  Done = 5,
  /** listener -> dialer: the stream was received whole (count and digest matched). */
  Ack = 6,
  /** dialer -> listener: my output is written and fsynced under its temporary name. */
  Ready = 7,
  /** either way, any time: stop the sort, with the reason. */
  Abort = 8,
  /** either way: keep-alive while a side has nothing else to say. */
  Ping = 9,
  /** listener -> dialer: hello refused, with the reason. */
  Refuse = 10,
  /** dialer -> listener: my output is linked into place under its final name, durably. */
  Committed = 11,
  /** dialer -> listener: after everyone's COMMITTED, my output is still mine and in place. */
  Confirmed = 12,
  /** dialer -> listener, first on the stream with --partition sample: my input's size and a sample of it. */
  Sample = 13,
  /**
   * dialer -> listener, between DATA frames: every record still to come on this
   * stream has a 48-bit key prefix of at least this (u64). Marks never go down.
   */
  Mark = 14,
}

export const OUTPUT_TAG_BYTES = 32;
const HELLO_BYTES = 4 + 2 + 2 + 2 + 2 + 4 + 4 + 8 + FINGERPRINT_BYTES + OUTPUT_TAG_BYTES + NONCE_BYTES;
/** SAMPLE: the sender's input record count (u64), then whole sampled records. */
const SAMPLE_HEADER_BYTES = 8;
export const maxSamplePayloadBytes = SAMPLE_HEADER_BYTES + sampleMaxRecords * RECORD_BYTES;
const WELCOME_BYTES = 2 + 2 + NONCE_BYTES;
const DONE_BYTES = 8 + 4;
const MARK_BYTES = 8;
/** READY's optional payload (--validate): a valsort summary, then the input checksum and record count. */
export const VALSORT_SUMMARY_BYTES = 280;
export const READY_VALIDATION_BYTES = VALSORT_SUMMARY_BYTES + 16 + 8;

/** The most payload bytes each frame type may declare. */
const payloadLimit: Record<FrameType, number> = {
  [FrameType.Hello]: HELLO_BYTES,
  [FrameType.Welcome]: WELCOME_BYTES,
  [FrameType.Auth]: PROOF_BYTES,
  [FrameType.Data]: maxDataPayloadBytes,
  [FrameType.Done]: DONE_BYTES,
  [FrameType.Ack]: DONE_BYTES,
  [FrameType.Ready]: READY_VALIDATION_BYTES,
  [FrameType.Abort]: maxAbortReasonBytes,
  [FrameType.Ping]: 0,
  [FrameType.Refuse]: maxAbortReasonBytes,
  [FrameType.Committed]: 0,
  [FrameType.Confirmed]: 0,
  [FrameType.Sample]: maxSamplePayloadBytes,
  [FrameType.Mark]: MARK_BYTES,
};
assert(
  Object.values(payloadLimit).every(
    (n) => n <= maxControlPayloadBytes || n === maxDataPayloadBytes || n === maxSamplePayloadBytes,
  ),
  "control frames fit the control buffer",
);

/** The most payload bytes a frame of `type` may declare, or undefined for a type that does not exist. */
export function payloadLimitOf(type: number): number | undefined {
  return type in payloadLimit ? payloadLimit[type as FrameType] : undefined;
}

/** A peer sent bytes that break the protocol. The message names what was wrong. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

export function writeHeader(buf: Uint8Array, offset: number, type: FrameType, length: number): void {
  assert(length >= 0 && length <= payloadLimit[type], `frame ${FrameType[type]} length ${length}`);
  buf[offset] = type;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  new DataView(buf.buffer, buf.byteOffset + offset, 4 + 4).setUint32(4, length);
}

function frame(type: FrameType, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeHeader(out, 0, type, payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** HELLO and WELCOME flag: this side has a shared secret configured. */
export const FLAG_SECRET = 1;

/**
 * Settings every peer must share, compared at hello so a mismatch is refused by
 * name instead of surfacing later as a misleading failure.
 */
export interface WireSettings {
  validate: boolean;
  partition: "bits" | "sample";
  idleTimeoutMs: number;
}

export interface Hello {
  senderId: number;
  receiverId: number;
  peers: number;
  /** FLAG_SECRET when the sender has a shared secret. */
  flags: number;
  settings: WireSettings;
  /** The sender's input size in records (for the fair share every peer expects). */
  inputRecords: number;
  /** SHA-256 of the config's normalised server list. */
  fingerprint: Uint8Array;
  /** SHA-256 of (host identity, resolved output path): equal tags mean two peers write one file. */
  outputTag: Uint8Array;
  nonce: Uint8Array;
}

const partitionCodes = ["bits", "sample"] as const;

export function encodeHello(h: Hello): Uint8Array {
  const p = new Uint8Array(HELLO_BYTES);
  const v = new DataView(p.buffer);
  v.setUint32(0, PROTOCOL_MAGIC);
  v.setUint16(4, PROTOCOL_VERSION);
  v.setUint16(6, h.senderId);
  v.setUint16(8, h.receiverId);
  v.setUint16(10, h.peers);
  p[12] = h.flags;
  p[13] = h.settings.validate ? 1 : 0;
  p[14] = partitionCodes.indexOf(h.settings.partition);
  p[15] = 0;
  v.setUint32(16, h.settings.idleTimeoutMs);
  v.setBigUint64(20, BigInt(h.inputRecords));
  p.set(h.fingerprint, 28);
  p.set(h.outputTag, 28 + FINGERPRINT_BYTES);
  p.set(h.nonce, 28 + FINGERPRINT_BYTES + OUTPUT_TAG_BYTES);
  return frame(FrameType.Hello, p);
}

export function decodeHello(p: Uint8Array): Hello {
  if (p.length < 6) throw new ProtocolError(`hello of ${p.length} bytes, expected ${HELLO_BYTES}`);
  const v = new DataView(p.buffer, p.byteOffset, p.length);
  if (v.getUint32(0) !== PROTOCOL_MAGIC) throw new ProtocolError("hello without the netsort magic");
  // The version comes before the size check: an older netsort's shorter hello is named as such.
  const version = v.getUint16(4);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`protocol version ${version}, this netsort speaks ${PROTOCOL_VERSION}`);
  }
  if (p.length !== HELLO_BYTES)
    throw new ProtocolError(`hello of ${p.length} bytes, expected ${HELLO_BYTES}`);
  const partition = partitionCodes[p[14]];
  if (partition === undefined) throw new ProtocolError(`hello with unknown partition mode ${p[14]}`);
  if (p[13] > 1 || p[15] !== 0) throw new ProtocolError("hello with malformed settings");
  const inputRecords = v.getBigUint64(20);
  if (inputRecords > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ProtocolError(`hello claims ${inputRecords} records`);
  return {
    senderId: v.getUint16(6),
    receiverId: v.getUint16(8),
    peers: v.getUint16(10),
    flags: p[12],
    settings: { validate: p[13] === 1, partition, idleTimeoutMs: v.getUint32(16) },
    inputRecords: Number(inputRecords),
    fingerprint: p.slice(28, 28 + FINGERPRINT_BYTES),
    outputTag: p.slice(28 + FINGERPRINT_BYTES, 28 + FINGERPRINT_BYTES + OUTPUT_TAG_BYTES),
    nonce: p.slice(28 + FINGERPRINT_BYTES + OUTPUT_TAG_BYTES, HELLO_BYTES),
  };
}

export interface Welcome {
  listenerId: number;
  /** FLAG_SECRET when the listener has a shared secret (then AUTH frames follow, dialer first). */
  flags: number;
  nonce: Uint8Array;
}

export function encodeWelcome(w: Welcome): Uint8Array {
  const p = new Uint8Array(WELCOME_BYTES);
  const v = new DataView(p.buffer);
  v.setUint16(0, w.listenerId);
  v.setUint16(2, w.flags);
  p.set(w.nonce, 4);
  return frame(FrameType.Welcome, p);
}

export function decodeWelcome(p: Uint8Array): Welcome {
  if (p.length !== WELCOME_BYTES)
    throw new ProtocolError(`welcome of ${p.length} bytes, expected ${WELCOME_BYTES}`);
  const v = new DataView(p.buffer, p.byteOffset, p.length);
  return { listenerId: v.getUint16(0), flags: v.getUint16(2), nonce: p.slice(4, WELCOME_BYTES) };
}

export function encodeAuth(proof: Uint8Array): Uint8Array {
  assert(proof.length === PROOF_BYTES, "proof size");
  return frame(FrameType.Auth, proof);
}

export function decodeAuth(p: Uint8Array): Uint8Array {
  if (p.length !== PROOF_BYTES) throw new ProtocolError(`auth of ${p.length} bytes, expected ${PROOF_BYTES}`);
  return p.slice();
}

/** Record count and digest of one stream (DONE and ACK carry the same fields). */
export interface StreamSummary {
  records: number;
  digest: number;
}

export function encodeSummary(type: FrameType.Done | FrameType.Ack, s: StreamSummary): Uint8Array {
  const p = new Uint8Array(DONE_BYTES);
  const v = new DataView(p.buffer);
  v.setBigUint64(0, BigInt(s.records));
  v.setUint32(8, s.digest >>> 0);
  return frame(type, p);
}

export function decodeSummary(p: Uint8Array): StreamSummary {
  if (p.length !== DONE_BYTES)
    throw new ProtocolError(`done/ack of ${p.length} bytes, expected ${DONE_BYTES}`);
  const v = new DataView(p.buffer, p.byteOffset, p.length);
  const records = v.getBigUint64(0);
  if (records > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ProtocolError(`record count ${records} is impossible`);
  return { records: Number(records), digest: v.getUint32(8) };
}

/** Past every 48-bit key prefix: the highest MARK ("nothing more at all"), and what a finished stream has passed. */
export const END_MARK = 2 ** 48;

/** MARK: every record still to come on the stream has a 48-bit prefix of at least `prefix48`. */
export function encodeMark(prefix48: number): Uint8Array {
  assert(Number.isInteger(prefix48) && prefix48 >= 0 && prefix48 <= END_MARK, `mark ${prefix48}`);
  const p = new Uint8Array(MARK_BYTES);
  new DataView(p.buffer).setBigUint64(0, BigInt(prefix48));
  return frame(FrameType.Mark, p);
}

export function decodeMark(p: Uint8Array): number {
  if (p.length !== MARK_BYTES) throw new ProtocolError(`MARK of ${p.length} bytes, expected ${MARK_BYTES}`);
  const mark = new DataView(p.buffer, p.byteOffset, MARK_BYTES).getBigUint64(0);
  if (mark > BigInt(END_MARK)) throw new ProtocolError(`MARK ${mark} is past the largest 48-bit prefix`);
  return Number(mark);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * ABORT or REFUSE: one byte, the exit code the receiver should use (1: the job
 * failed; 2: the cluster is misconfigured, e.g. configs or secrets differ), then
 * the UTF-8 reason, cut to fit maxAbortReasonBytes.
 */
export function encodeReason(
  type: FrameType.Abort | FrameType.Refuse,
  reason: string,
  exitCode: 1 | 2 = 1,
): Uint8Array {
  let bytes = encoder.encode(reason);
  if (bytes.length > maxAbortReasonBytes - 1) bytes = bytes.subarray(0, maxAbortReasonBytes - 1);
  const payload = new Uint8Array(1 + bytes.length);
  payload[0] = exitCode;
  payload.set(bytes, 1);
  return frame(type, payload);
}

export function decodeReason(p: Uint8Array): string {
  // Strip control characters: the text ends up in the receiving peer's log line.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  return decoder.decode(p.subarray(1)).replace(/[\u0000-\u001f\u007f]/g, " ");
}

/** The exit code an ABORT or REFUSE asks for: 2 only when it says so, else 1. */
export function decodeReasonExitCode(p: Uint8Array): 1 | 2 {
  return p.length > 0 && p[0] === 2 ? 2 : 1;
}

/** READY, with the validation payload when the sort runs with --validate. */
export function encodeReady(validation: Uint8Array | null): Uint8Array {
  if (validation === null) return frame(FrameType.Ready, new Uint8Array(0));
  assert(validation.length === READY_VALIDATION_BYTES, "validation payload size");
  return frame(FrameType.Ready, validation);
}

/** The validation payload of a READY, or null for a plain READY. */
export function decodeReady(p: Uint8Array): Uint8Array | null {
  if (p.length === 0) return null;
  if (p.length !== READY_VALIDATION_BYTES) {
    throw new ProtocolError(`READY of ${p.length} bytes, expected 0 or ${READY_VALIDATION_BYTES}`);
  }
  return p.slice();
}

/** One peer's sample, as SAMPLE carries it. */
export interface SamplePayload {
  inputRecords: number;
  /** Whole records (a copy: safe to keep). */
  records: Uint8Array;
}

export function encodeSample(s: SamplePayload): Uint8Array {
  assert(s.records.length % RECORD_BYTES === 0, "a sample holds whole records");
  const p = new Uint8Array(SAMPLE_HEADER_BYTES + s.records.length);
  new DataView(p.buffer).setBigUint64(0, BigInt(s.inputRecords));
  p.set(s.records, SAMPLE_HEADER_BYTES);
  return frame(FrameType.Sample, p);
}

export function decodeSample(p: Uint8Array): SamplePayload {
  if (p.length < SAMPLE_HEADER_BYTES || (p.length - SAMPLE_HEADER_BYTES) % RECORD_BYTES !== 0) {
    throw new ProtocolError(`SAMPLE of ${p.length} bytes is not a count and whole records`);
  }
  const inputRecords = new DataView(p.buffer, p.byteOffset, SAMPLE_HEADER_BYTES).getBigUint64(0);
  const records = (p.length - SAMPLE_HEADER_BYTES) / RECORD_BYTES;
  if (inputRecords > BigInt(Number.MAX_SAFE_INTEGER) || Number(inputRecords) < records) {
    throw new ProtocolError(`SAMPLE claims ${inputRecords} input records but holds ${records}`);
  }
  return { inputRecords: Number(inputRecords), records: p.slice(SAMPLE_HEADER_BYTES) };
}

export function encodeEmpty(
  type: FrameType.Ready | FrameType.Ping | FrameType.Committed | FrameType.Confirmed,
): Uint8Array {
  return frame(type, new Uint8Array(0));
}
