/**
 * FrameDecoder: reassembles the frames of src/exchange/protocol.ts from a byte
 * stream split anywhere by TCP. Lengths are checked against each type's limit
 * at the header, before a byte of payload is kept.
 */
import { assert } from "../errors.ts";
import { maxControlPayloadBytes } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";
import {
  FRAME_HEADER_BYTES,
  FrameType,
  ProtocolError,
  payloadLimitOf,
  READY_VALIDATION_BYTES,
} from "./protocol.ts";

/** What a FrameDecoder hands to its owner. */
export interface FrameHandlers {
  /** A whole control frame; `payload` is only valid during the call. */
  onControl(type: FrameType, payload: Uint8Array): void;
  /**
   * Whole records from DATA frames: buf[offset, offset + length), length a
   * multiple of RECORD_BYTES. Valid only during the call (buffers are reused).
   */
  onRecords(buf: Uint8Array, offset: number, length: number): void;
}

/**
 * Reassembles frames from a byte stream split anywhere. Control payloads are
 * gathered in a fixed buffer; DATA payloads are passed through without copying,
 * except a record that straddles two chunks, which is completed in `carry`.
 * Throws ProtocolError on the first bad byte; the caller then drops the stream.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private type: FrameType = FrameType.Ping;
  private remaining = -1; // payload bytes still expected; -1 = reading a header
  private readonly control = new Uint8Array(maxControlPayloadBytes);
  /** A SAMPLE payload (the one control frame larger than `control`), sized by its checked length. */
  private bulk: Uint8Array | null = null;
  private controlFill = 0;
  private readonly carry = new Uint8Array(RECORD_BYTES);
  private carryFill = 0;
  private stopped = false;
  /** Frame types this decoder accepts now; anything else is a protocol error. */
  allowed: ReadonlySet<FrameType>;

  constructor(
    private readonly handlers: FrameHandlers,
    allowed: ReadonlySet<FrameType>,
  ) {
    this.allowed = allowed;
  }

  /**
   * Feed the next chunk of the stream. Returns the bytes consumed: all of them,
   * unless a handler called `stop()` (the handshake hands the rest of the chunk
   * to the stream's own decoder).
   */
  push(chunk: Uint8Array): number {
    let pos = 0;
    const end = chunk.length;
    while (pos < end && !this.stopped) {
      if (this.remaining < 0) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, end - pos);
        this.header.set(chunk.subarray(pos, pos + take), this.headerFill);
        this.headerFill += take;
        pos += take;
        if (this.headerFill === FRAME_HEADER_BYTES) this.startFrame();
        continue;
      }
      if (this.type === FrameType.Data) {
        pos = this.pushData(chunk, pos, end);
      } else {
        const take = Math.min(this.remaining, end - pos);
        (this.type === FrameType.Sample && this.bulk !== null ? this.bulk : this.control).set(
          chunk.subarray(pos, pos + take),
          this.controlFill,
        );
        this.controlFill += take;
        this.remaining -= take;
        pos += take;
      }
      if (this.remaining === 0) this.endFrame();
    }
    return pos;
  }

  /** Stop after the current frame: the rest of the stream belongs to another decoder. */
  stop(): void {
    this.stopped = true;
  }

  /** Take frames again after stop(): the caller pushes the bytes it held meanwhile. */
  resume(): void {
    this.stopped = false;
  }

  /** True when no frame is half-received: the stream may end here. */
  get atFrameBoundary(): boolean {
    return this.remaining < 0 && this.headerFill === 0;
  }

  private startFrame(): void {
    const h = this.header;
    const type = h[0] as FrameType;
    const limit = payloadLimitOf(type);
    if (limit === undefined) throw new ProtocolError(`unknown frame type ${h[0]}`);
    if (!this.allowed.has(type)) throw new ProtocolError(`unexpected ${FrameType[type]} frame`);
    if (h[1] !== 0 || h[2] !== 0 || h[3] !== 0) throw new ProtocolError("reserved header bytes are not zero");
    const length = ((h[4] << 24) | (h[5] << 16) | (h[6] << 8) | h[7]) >>> 0;
    if (length > limit) {
      throw new ProtocolError(`${FrameType[type]} frame of ${length} bytes exceeds the ${limit} limit`);
    }
    if (type === FrameType.Ready && length !== 0 && length !== READY_VALIDATION_BYTES) {
      throw new ProtocolError(`READY frame of ${length} bytes: expected 0 or ${READY_VALIDATION_BYTES}`);
    }
    if (type === FrameType.Data && (length === 0 || length % RECORD_BYTES !== 0)) {
      throw new ProtocolError(`DATA frame of ${length} bytes is not a whole number of records`);
    }
    this.type = type;
    this.remaining = length;
    this.controlFill = 0;
    this.headerFill = 0;
    // Allocated only after the length passed its limit above (at most maxSamplePayloadBytes).
    if (type === FrameType.Sample) this.bulk = new Uint8Array(length);
    if (length === 0) this.endFrame();
  }

  private pushData(chunk: Uint8Array, start: number, end: number): number {
    let pos = start;
    const available = Math.min(this.remaining, end - pos);
    let left = available;
    if (this.carryFill > 0) {
      const take = Math.min(RECORD_BYTES - this.carryFill, left);
      this.carry.set(chunk.subarray(pos, pos + take), this.carryFill);
      this.carryFill += take;
      pos += take;
      left -= take;
      if (this.carryFill === RECORD_BYTES) {
        this.handlers.onRecords(this.carry, 0, RECORD_BYTES);
        this.carryFill = 0;
      }
    }
    const whole = left - (left % RECORD_BYTES);
    if (whole > 0) {
      this.handlers.onRecords(chunk, pos, whole);
      pos += whole;
      left -= whole;
    }
    if (left > 0) {
      this.carry.set(chunk.subarray(pos, pos + left), 0);
      this.carryFill = left;
      pos += left;
    }
    this.remaining -= available;
    return pos;
  }

  private endFrame(): void {
    const type = this.type;
    this.remaining = -1;
    if (type === FrameType.Data) {
      assert(this.carryFill === 0, "a DATA frame ends on a record boundary");
      return;
    }
    if (type === FrameType.Sample && this.bulk !== null) {
      const payload = this.bulk;
      this.bulk = null;
      this.handlers.onControl(type, payload);
      return;
    }
    this.handlers.onControl(type, this.control.subarray(0, this.controlFill));
  }
}
