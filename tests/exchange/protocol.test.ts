import { describe, expect, test } from "bun:test";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import {
  decodeAuth,
  decodeHello,
  decodeMark,
  decodeReason,
  decodeReasonExitCode,
  decodeSummary,
  decodeWelcome,
  encodeAuth,
  encodeEmpty,
  encodeHello,
  encodeMark,
  encodeReason,
  encodeSummary,
  encodeWelcome,
  FINGERPRINT_BYTES,
  FRAME_HEADER_BYTES,
  FrameType,
  maxDataPayloadBytes,
  maxSamplePayloadBytes,
  NONCE_BYTES,
  OUTPUT_TAG_BYTES,
  PROOF_BYTES,
  ProtocolError,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import { maxAbortReasonBytes } from "../../src/limits.ts";
import { RECORD_BYTES } from "../../src/record.ts";
import { concat, prng as rng } from "../helpers.ts";

/** Seeded random bytes, four per PRNG step (record payloads are big; keep this cheap). */
function randomBytes(next: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const word = Math.floor(next() * 2 ** 32);
    out[i] = word;
    if (i + 1 < n) out[i + 1] = word >>> 8;
    if (i + 2 < n) out[i + 2] = word >>> 16;
    if (i + 3 < n) out[i + 3] = word >>> 24;
  }
  return out;
}

const plainSettings = { validate: false, partition: "bits", idleTimeoutMs: 5000 } as const;

const allTypes: ReadonlySet<FrameType> = new Set(
  Object.values(FrameType).filter((v): v is FrameType => typeof v === "number"),
);

/** A DATA frame built by hand from the documented header layout. */
function dataFrame(records: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + records.length);
  out[0] = FrameType.Data;
  new DataView(out.buffer).setUint32(4, records.length);
  out.set(records, FRAME_HEADER_BYTES);
  return out;
}

/** A header with arbitrary fields, for error cases. */
function rawHeader(type: number, length: number, reserved: [number, number, number] = [0, 0, 0]): Uint8Array {
  const h = new Uint8Array(FRAME_HEADER_BYTES);
  h[0] = type;
  h.set(reserved, 1);
  new DataView(h.buffer).setUint32(4, length);
  return h;
}

interface Received {
  records: Uint8Array[];
  recordBytes: number;
  /** Control frames with the number of record bytes received before each. */
  controls: Array<{ type: FrameType; payload: Uint8Array; afterRecordBytes: number }>;
}

function collectingDecoder(allowed: ReadonlySet<FrameType> = allTypes): {
  decoder: FrameDecoder;
  got: Received;
} {
  const got: Received = { records: [], recordBytes: 0, controls: [] };
  const decoder = new FrameDecoder(
    {
      onControl(type, payload) {
        got.controls.push({ type, payload: payload.slice(), afterRecordBytes: got.recordBytes });
      },
      onRecords(buf, offset, length) {
        // Whole records only, inside the buffer handed over.
        if (length <= 0 || length % RECORD_BYTES !== 0 || offset < 0 || offset + length > buf.length) {
          throw new Error(`onRecords(${offset}, ${length}) on a buffer of ${buf.length}`);
        }
        got.records.push(buf.slice(offset, offset + length));
        got.recordBytes += length;
      },
    },
    allowed,
  );
  return { decoder, got };
}

/** Decode one whole frame and return its single control payload. */
function decodeOne(frame: Uint8Array): { type: FrameType; payload: Uint8Array } {
  const { decoder, got } = collectingDecoder();
  decoder.push(frame);
  expect(got.controls.length).toBe(1);
  expect(decoder.atFrameBoundary).toBe(true);
  return got.controls[0];
}

function headerOf(frame: Uint8Array): { type: number; reserved: number[]; length: number } {
  return {
    type: frame[0],
    reserved: [frame[1], frame[2], frame[3]],
    length: new DataView(frame.buffer, frame.byteOffset).getUint32(4),
  };
}

function protocolError(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  return (caught as Error).message;
}

describe("encode / decode round trips", () => {
  const next = rng(1);

  test("hello: header, magic, version and every field", () => {
    for (const [senderId, receiverId, peers] of [
      [0, 1, 2],
      [1023, 0, 1024],
      [65535, 65535, 65535],
    ]) {
      const hello = {
        senderId,
        receiverId,
        peers,
        flags: senderId & 1,
        settings: {
          validate: (receiverId & 1) === 1,
          partition: peers % 2 === 0 ? ("bits" as const) : ("sample" as const),
          idleTimeoutMs: senderId * 1000 + 7,
        },
        inputRecords: receiverId * 1_000_003 + 5,
        fingerprint: randomBytes(next, FINGERPRINT_BYTES),
        outputTag: randomBytes(next, OUTPUT_TAG_BYTES),
        nonce: randomBytes(next, NONCE_BYTES),
      };
      const frame = encodeHello(hello);
      const h = headerOf(frame);
      expect(h).toEqual({
        type: FrameType.Hello,
        reserved: [0, 0, 0],
        length: frame.length - FRAME_HEADER_BYTES,
      });
      // Magic "NSRT" and version 3, big-endian, lead the payload.
      expect(new TextDecoder().decode(frame.subarray(8, 12))).toBe("NSRT");
      expect([frame[12], frame[13]]).toEqual([0, 3]);
      const { type, payload } = decodeOne(frame);
      expect(type).toBe(FrameType.Hello);
      expect(decodeHello(payload)).toEqual(hello);
    }
  });

  test("welcome", () => {
    const welcome = { listenerId: 513, flags: 1, nonce: randomBytes(next, NONCE_BYTES) };
    const frame = encodeWelcome(welcome);
    expect(headerOf(frame).type).toBe(FrameType.Welcome);
    const { type, payload } = decodeOne(frame);
    expect(type).toBe(FrameType.Welcome);
    expect(decodeWelcome(payload)).toEqual(welcome);
  });

  test("auth", () => {
    const proof = randomBytes(next, PROOF_BYTES);
    const { type, payload } = decodeOne(encodeAuth(proof));
    expect(type).toBe(FrameType.Auth);
    expect(decodeAuth(payload)).toEqual(proof);
    expect(() => encodeAuth(new Uint8Array(PROOF_BYTES - 1))).toThrow("assertion failed");
  });

  test("mark carries any 48-bit prefix up to 2^48; more, or a wrong length, is refused", () => {
    for (const mark of [0, 1, 65536, 2 ** 32, 2 ** 48 - 65536, 2 ** 48]) {
      const { type, payload } = decodeOne(encodeMark(mark));
      expect(type).toBe(FrameType.Mark);
      expect(payload.length).toBe(8);
      expect(decodeMark(payload)).toBe(mark);
    }
    expect(() => encodeMark(2 ** 48 + 1)).toThrow();
    expect(() => encodeMark(-1)).toThrow();
    const tooBig = new Uint8Array(8);
    new DataView(tooBig.buffer).setBigUint64(0, 2n ** 48n + 1n);
    expect(protocolError(() => decodeMark(tooBig))).toBe(
      `MARK ${2 ** 48 + 1} is past the largest 48-bit prefix`,
    );
    expect(protocolError(() => decodeMark(new Uint8Array(7)))).toBe("MARK of 7 bytes, expected 8");
  });

  test("done and ack carry counts up to 2^53-1 and any u32 digest", () => {
    for (const frameType of [FrameType.Done, FrameType.Ack] as const) {
      for (const [records, digest] of [
        [0, 0],
        [1, 0xffffffff],
        [10_000_000_000, 0x80000000],
        [Number.MAX_SAFE_INTEGER, 12345],
      ]) {
        const { type, payload } = decodeOne(encodeSummary(frameType, { records, digest }));
        expect(type).toBe(frameType);
        expect(decodeSummary(payload)).toEqual({ records, digest });
      }
      // A negative (signed) digest is sent as its u32 bit pattern.
      const { payload } = decodeOne(encodeSummary(frameType, { records: 5, digest: -1 }));
      expect(decodeSummary(payload)).toEqual({ records: 5, digest: 0xffffffff });
    }
  });

  test("abort and refuse carry a reason; control characters become spaces", () => {
    for (const frameType of [FrameType.Abort, FrameType.Refuse] as const) {
      for (const reason of ["", "peer 3 failed: disk full", "ünïcödé ✓ 日本"]) {
        const { type, payload } = decodeOne(encodeReason(frameType, reason));
        expect(type).toBe(frameType);
        expect(decodeReason(payload)).toBe(reason);
        expect(decodeReasonExitCode(payload)).toBe(1);
      }
      const asUsage = decodeOne(encodeReason(frameType, "configs differ", 2)).payload;
      expect([decodeReason(asUsage), decodeReasonExitCode(asUsage)]).toEqual(["configs differ", 2]);
      const { payload } = decodeOne(encodeReason(frameType, "line1\nline2\u0000\u001b[31m\u007f"));
      expect(decodeReason(payload)).toBe("line1 line2  [31m ");
    }
  });

  test("a long reason is cut to maxAbortReasonBytes", () => {
    const frame = encodeReason(FrameType.Abort, "x".repeat(maxAbortReasonBytes * 3));
    expect(headerOf(frame).length).toBe(maxAbortReasonBytes);
    expect(decodeReason(decodeOne(frame).payload)).toBe("x".repeat(maxAbortReasonBytes - 1));
    // Cutting inside a multi-byte character still decodes (to a replacement character).
    const cut = decodeOne(encodeReason(FrameType.Abort, `${"y".repeat(maxAbortReasonBytes - 2)}é`)).payload;
    expect(cut.length).toBe(maxAbortReasonBytes);
    expect(decodeReason(cut).startsWith("y".repeat(maxAbortReasonBytes - 2))).toBe(true);
  });

  test("ready and ping are empty frames", () => {
    for (const frameType of [FrameType.Ready, FrameType.Ping] as const) {
      const frame = encodeEmpty(frameType);
      expect(Array.from(frame)).toEqual([frameType, 0, 0, 0, 0, 0, 0, 0]);
      const { type, payload } = decodeOne(frame);
      expect(type).toBe(frameType);
      expect(payload.length).toBe(0);
    }
  });

  test("writeHeader writes the documented layout at an offset and asserts the length limit", () => {
    const buf = new Uint8Array(20).fill(0xaa);
    writeHeader(buf, 5, FrameType.Data, 300);
    expect(Array.from(buf.subarray(5, 13))).toEqual([FrameType.Data, 0, 0, 0, 0, 0, 1, 44]);
    expect(buf[4]).toBe(0xaa);
    expect(buf[13]).toBe(0xaa);
    expect(() => writeHeader(buf, 0, FrameType.Ping, 1)).toThrow("assertion failed");
    expect(() => writeHeader(buf, 0, FrameType.Data, maxDataPayloadBytes + 1)).toThrow("assertion failed");
  });
});

describe("FrameDecoder under random splits", () => {
  interface Stream {
    bytes: Uint8Array;
    records: Uint8Array;
    controls: Received["controls"];
  }

  /** Many DATA frames of random record counts, interleaved with every kind of control frame. */
  function makeStream(next: () => number, frames: number, bigFrames: boolean): Stream {
    const parts: Uint8Array[] = [];
    const records: Uint8Array[] = [];
    const controls: Received["controls"] = [];
    let recordBytes = 0;
    const control = (frame: Uint8Array) => {
      parts.push(frame);
      controls.push({
        type: frame[0] as FrameType,
        payload: frame.slice(FRAME_HEADER_BYTES),
        afterRecordBytes: recordBytes,
      });
    };
    for (let i = 0; i < frames; i++) {
      const pick = next();
      if (pick < 0.6) {
        // Mostly small frames, sometimes a big one, rarely the largest allowed.
        const r = bigFrames ? next() : 1;
        const count =
          r < 0.02
            ? maxDataPayloadBytes / RECORD_BYTES
            : r < 0.1
              ? 1 + Math.floor(next() * 3000)
              : 1 + Math.floor(next() * 40);
        const recs = randomBytes(next, count * RECORD_BYTES);
        parts.push(dataFrame(recs));
        records.push(recs);
        recordBytes += recs.length;
      } else {
        const kind = Math.floor(next() * 8);
        if (kind === 0) {
          control(
            encodeHello({
              senderId: Math.floor(next() * 1024),
              receiverId: Math.floor(next() * 1024),
              peers: 1024,
              flags: 0,
              settings: plainSettings,
              inputRecords: 0,
              fingerprint: randomBytes(next, FINGERPRINT_BYTES),
              outputTag: new Uint8Array(OUTPUT_TAG_BYTES),
              nonce: randomBytes(next, NONCE_BYTES),
            }),
          );
        } else if (kind === 1) {
          control(
            encodeWelcome({
              listenerId: 7,
              flags: 0,
              nonce: randomBytes(next, NONCE_BYTES),
            }),
          );
        } else if (kind === 2) {
          control(encodeAuth(randomBytes(next, PROOF_BYTES)));
        } else if (kind === 3) {
          control(
            encodeSummary(next() < 0.5 ? FrameType.Done : FrameType.Ack, {
              records: Math.floor(next() * 1e12),
              digest: Math.floor(next() * 2 ** 32),
            }),
          );
        } else if (kind === 4) {
          control(encodeReason(next() < 0.5 ? FrameType.Abort : FrameType.Refuse, "r".repeat(next() * 2000)));
        } else {
          control(encodeEmpty(next() < 0.5 ? FrameType.Ready : FrameType.Ping));
        }
      }
    }
    return { bytes: concat(parts), records: concat(records), controls };
  }

  /** Cut `bytes` into pieces: 1-byte, small, large or mixed sizes. */
  function cut(next: () => number, bytes: Uint8Array, style: number): Uint8Array[] {
    // Pieces are views at an odd byteOffset of one copy, as socket buffers can be.
    const host = new Uint8Array(bytes.length + 3);
    host.set(bytes, 3);
    const pieces: Uint8Array[] = [];
    let at = 0;
    while (at < bytes.length) {
      let size: number;
      if (style === 0) size = 1;
      else if (style === 1) size = 1 + Math.floor(next() * 250);
      else if (style === 2) size = 1 + Math.floor(next() * 600_000);
      else
        size =
          next() < 0.3 ? 1 : next() < 0.5 ? 1 + Math.floor(next() * 199) : 1 + Math.floor(next() * 70_000);
      size = Math.min(size, bytes.length - at);
      pieces.push(host.subarray(3 + at, 3 + at + size));
      at += size;
    }
    return pieces;
  }

  function expectSameStream(got: Received, want: Stream): void {
    expect(got.recordBytes).toBe(want.records.length);
    expect(Buffer.from(concat(got.records)).equals(Buffer.from(want.records))).toBe(true);
    expect(got.controls.length).toBe(want.controls.length);
    for (let i = 0; i < want.controls.length; i++) {
      expect(got.controls[i].type).toBe(want.controls[i].type);
      expect(got.controls[i].afterRecordBytes).toBe(want.controls[i].afterRecordBytes);
      expect(Buffer.from(got.controls[i].payload).equals(Buffer.from(want.controls[i].payload))).toBe(true);
    }
  }

  test("many seeds and split styles reassemble the same records and control frames", () => {
    let streams = 0;
    let bytes = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const next = rng(seed * 7919);
      const style = seed % 4;
      // 1-byte pieces cost a call per byte: keep those streams small.
      const stream = makeStream(next, style === 0 ? 60 : 150, style !== 0);
      const { decoder, got } = collectingDecoder();
      for (const piece of cut(next, stream.bytes, style)) decoder.push(piece);
      expect(decoder.atFrameBoundary).toBe(true);
      expectSameStream(got, stream);
      streams++;
      bytes += stream.bytes.length;
    }
    expect(streams).toBe(40);
    expect(bytes).toBeGreaterThan(1_000_000);
  }, 20_000);

  test("a whole stream in one push gives the same result", () => {
    const next = rng(42);
    const stream = makeStream(next, 200, true);
    const { decoder, got } = collectingDecoder();
    decoder.push(stream.bytes);
    expectSameStream(got, stream);
  });

  test("atFrameBoundary is false inside a header, a control payload and a DATA payload", () => {
    const frames = [
      encodeEmpty(FrameType.Ping),
      encodeAuth(new Uint8Array(PROOF_BYTES)),
      dataFrame(new Uint8Array(300)),
    ];
    for (const frame of frames) {
      for (let split = 1; split < frame.length; split++) {
        const { decoder } = collectingDecoder();
        decoder.push(frame.subarray(0, split));
        expect(decoder.atFrameBoundary).toBe(false);
        decoder.push(frame.subarray(split));
        expect(decoder.atFrameBoundary).toBe(true);
      }
    }
  });

  test("a handler can change `allowed` and it applies to the next frame of the same chunk", () => {
    const handshake: ReadonlySet<FrameType> = new Set([FrameType.Hello]);
    const streaming: ReadonlySet<FrameType> = new Set([FrameType.Data, FrameType.Done]);
    const records = randomBytes(rng(5), 3 * RECORD_BYTES);
    let recordBytes = 0;
    const decoder: FrameDecoder = new FrameDecoder(
      {
        onControl(type) {
          if (type === FrameType.Hello) decoder.allowed = streaming;
        },
        onRecords(_buf, _offset, length) {
          recordBytes += length;
        },
      },
      handshake,
    );
    const hello = encodeHello({
      senderId: 0,
      receiverId: 1,
      peers: 2,
      flags: 0,
      settings: plainSettings,
      inputRecords: 0,
      fingerprint: new Uint8Array(FINGERPRINT_BYTES),
      outputTag: new Uint8Array(OUTPUT_TAG_BYTES),
      nonce: new Uint8Array(NONCE_BYTES),
    });
    decoder.push(concat([hello, dataFrame(records)]));
    expect(recordBytes).toBe(records.length);
    // Hello is no longer allowed.
    expect(protocolError(() => decoder.push(hello))).toBe("unexpected Hello frame");
  });
});

describe("FrameDecoder errors, raised at the header before any payload", () => {
  /** The exact payload size of each control type, from its encoder; DATA and reasons from their limits. */
  const sizes: Array<[FrameType, number]> = [
    [
      FrameType.Hello,
      encodeHello({
        senderId: 0,
        receiverId: 0,
        peers: 1,
        flags: 0,
        settings: plainSettings,
        inputRecords: 0,
        fingerprint: new Uint8Array(FINGERPRINT_BYTES),
        outputTag: new Uint8Array(OUTPUT_TAG_BYTES),
        nonce: new Uint8Array(NONCE_BYTES),
      }).length - FRAME_HEADER_BYTES,
    ],
    [FrameType.Welcome, 2 + 2 + NONCE_BYTES],
    [FrameType.Auth, PROOF_BYTES],
    [FrameType.Data, maxDataPayloadBytes],
    [FrameType.Done, 12],
    [FrameType.Ack, 12],
    [FrameType.Ready, 280 + 16 + 8], // --validate: valsort summary, input checksum, input count
    [FrameType.Abort, maxAbortReasonBytes],
    [FrameType.Ping, 0],
    [FrameType.Refuse, maxAbortReasonBytes],
    [FrameType.Committed, 0],
    [FrameType.Confirmed, 0],
    [FrameType.Sample, maxSamplePayloadBytes],
    [FrameType.Mark, 8],
  ];

  test("the limit table covers every frame type", () => {
    expect(sizes.map(([t]) => t).sort((a, b) => a - b)).toEqual([...allTypes].sort((a, b) => a - b));
  });

  test("READY is empty or exactly a validation payload; anything between is refused at the header", () => {
    for (const length of [1, 2, 100, 303]) {
      const { decoder } = collectingDecoder();
      expect(protocolError(() => decoder.push(rawHeader(FrameType.Ready, length)))).toContain(
        "expected 0 or 304",
      );
    }
  });

  test("unknown frame types", () => {
    for (const type of [0, 15, 16, 100, 255]) {
      const { decoder } = collectingDecoder();
      expect(protocolError(() => decoder.push(rawHeader(type, 0)))).toBe(`unknown frame type ${type}`);
    }
  });

  test("nonzero reserved bytes", () => {
    for (const reserved of [
      [1, 0, 0],
      [0, 0x80, 0],
      [0, 0, 0xff],
    ] as Array<[number, number, number]>) {
      const { decoder } = collectingDecoder();
      expect(protocolError(() => decoder.push(rawHeader(FrameType.Ping, 0, reserved)))).toBe(
        "reserved header bytes are not zero",
      );
    }
  });

  test("a length over each type's limit, up to 4 GiB, throws at the header; the limit itself is accepted", () => {
    for (const [type, limit] of sizes) {
      for (const length of [limit + 1, limit + RECORD_BYTES, 0x7fffffff, 0xffffffff]) {
        const { decoder } = collectingDecoder();
        const message = protocolError(() => decoder.push(rawHeader(type, length)));
        expect(message).toContain(FrameType[type]);
        expect(message).toMatch(/exceeds the \d+ limit|not a whole number of records/);
      }
      // Exactly the limit: header accepted, and the frame completes once its payload arrives.
      const { decoder, got } = collectingDecoder();
      const bytes = new Uint8Array(limit);
      decoder.push(rawHeader(type, limit));
      decoder.push(bytes);
      expect(decoder.atFrameBoundary).toBe(true);
      if (type === FrameType.Data) expect(got.recordBytes).toBe(limit);
      else expect(got.controls.map((c) => [c.type, c.payload.length])).toEqual([[type, limit]]);
    }
  });

  test("DATA length of 0 or not a multiple of 100", () => {
    for (const length of [0, 1, 50, 99, 101, 150, 199, 1000 * RECORD_BYTES + 1]) {
      const { decoder } = collectingDecoder();
      expect(protocolError(() => decoder.push(rawHeader(FrameType.Data, length)))).toBe(
        `DATA frame of ${length} bytes is not a whole number of records`,
      );
    }
  });

  test("a type not in `allowed`, for every type and the set of all others", () => {
    for (const type of allTypes) {
      const others = new Set([...allTypes].filter((t) => t !== type));
      const { decoder } = collectingDecoder(others);
      const length = type === FrameType.Data ? RECORD_BYTES : 0;
      expect(protocolError(() => decoder.push(rawHeader(type, length)))).toBe(
        `unexpected ${FrameType[type]} frame`,
      );
      const empty = collectingDecoder(new Set()).decoder;
      expect(protocolError(() => empty.push(rawHeader(type, length)))).toBe(
        `unexpected ${FrameType[type]} frame`,
      );
    }
  });

  test("an error in a header split across pushes is raised when the header completes", () => {
    const { decoder } = collectingDecoder();
    const header = rawHeader(FrameType.Auth, 0xffffffff);
    for (let i = 0; i < FRAME_HEADER_BYTES - 1; i++) decoder.push(header.subarray(i, i + 1));
    expect(protocolError(() => decoder.push(header.subarray(FRAME_HEADER_BYTES - 1)))).toContain("exceeds");
  });
});

describe("payload decoders reject malformed payloads", () => {
  const hello = encodeHello({
    senderId: 1,
    receiverId: 2,
    peers: 3,
    flags: 0,
    settings: plainSettings,
    inputRecords: 0,
    fingerprint: new Uint8Array(FINGERPRINT_BYTES).fill(1),
    outputTag: new Uint8Array(OUTPUT_TAG_BYTES),
    nonce: new Uint8Array(NONCE_BYTES).fill(2),
  }).slice(FRAME_HEADER_BYTES);

  test("hello: wrong length, bad magic, other version", () => {
    expect(protocolError(() => decodeHello(hello.subarray(0, hello.length - 1)))).toBe(
      `hello of ${hello.length - 1} bytes, expected ${hello.length}`,
    );
    expect(protocolError(() => decodeHello(new Uint8Array(0)))).toContain("hello of 0 bytes");
    for (let i = 0; i < 4; i++) {
      const bad = hello.slice();
      bad[i] ^= 0x20;
      expect(protocolError(() => decodeHello(bad))).toBe("hello without the netsort magic");
    }
    for (const version of [0, 1, 2, 0x0101, 0xffff]) {
      const bad = hello.slice();
      new DataView(bad.buffer).setUint16(4, version);
      expect(protocolError(() => decodeHello(bad))).toBe(
        `protocol version ${version}, this netsort speaks 3`,
      );
    }
  });

  test("hello decodes from a view at a nonzero offset", () => {
    const host = new Uint8Array(hello.length + 5);
    host.set(hello, 5);
    expect(decodeHello(host.subarray(5)).peers).toBe(3);
  });

  test("welcome, auth and summary: wrong lengths", () => {
    expect(protocolError(() => decodeWelcome(new Uint8Array(35)))).toContain("welcome of 35 bytes");
    expect(protocolError(() => decodeWelcome(new Uint8Array(37)))).toContain("welcome of 37 bytes");
    expect(protocolError(() => decodeAuth(new Uint8Array(31)))).toContain("auth of 31 bytes");
    expect(protocolError(() => decodeAuth(new Uint8Array(0)))).toContain("auth of 0 bytes");
    expect(protocolError(() => decodeSummary(new Uint8Array(11)))).toContain("done/ack of 11 bytes");
  });

  test("summary: a record count above 2^53-1 is impossible", () => {
    const p = new Uint8Array(12);
    new DataView(p.buffer).setBigUint64(0, BigInt(Number.MAX_SAFE_INTEGER) + 1n);
    expect(protocolError(() => decodeSummary(p))).toContain("is impossible");
    new DataView(p.buffer).setBigUint64(0, 0xffffffffffffffffn);
    expect(protocolError(() => decodeSummary(p))).toContain("is impossible");
  });
});
