/**
 * Connection with a sealer (src/exchange/connection.ts): every queued frame
 * becomes one sealed record when it is first written, in queue order (frames
 * queued before the socket existed included); a frame sent with `room` is
 * sealed in place in its pooled buffer, any other frame into a new buffer,
 * leaving the caller's (possibly shared) bytes unchanged. A stand-in socket
 * takes a few bytes at a time, like a full kernel buffer.
 */
import { describe, expect, test } from "bun:test";
import { Connection } from "../../src/exchange/connection.ts";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import { encodeEmpty, FRAME_HEADER_BYTES, FrameType, writeHeader } from "../../src/exchange/protocol.ts";
import {
  deriveLinkKeys,
  linkOpener,
  linkSealer,
  sealOutOffsetBytes,
  sealRoomAfterBytes,
  sealRoomBeforeBytes,
} from "../../src/exchange/seal.ts";
import { RECORD_BYTES } from "../../src/record.ts";

const keys = deriveLinkKeys(new TextEncoder().encode("connection seal test secret 0123456789"), {
  fingerprint: new Uint8Array(32).fill(1),
  dialerId: 0,
  listenerId: 1,
  dialerNonce: new Uint8Array(32).fill(2),
  listenerNonce: new Uint8Array(32).fill(3),
});

/** A socket that takes at most `room` bytes per write; the test refills it. */
function fakeSocket() {
  const sink: number[] = [];
  const state = { room: 0 };
  const socket = {
    write(buf: Uint8Array, offset = 0, length = buf.length - offset): number {
      const n = Math.min(length, state.room);
      for (let i = 0; i < n; i++) sink.push(buf[offset + i]);
      state.room -= n;
      return n;
    },
    end() {},
  };
  return { socket, sink, state };
}

/** A pooled slot as OutStream lays it out: room, [header][records], room. */
function pooledDataFrame(
  records: number,
  seed: number,
): { slot: Uint8Array; frame: Uint8Array; plain: Uint8Array } {
  const payload = records * RECORD_BYTES;
  const slot = new Uint8Array(sealRoomBeforeBytes + FRAME_HEADER_BYTES + payload + sealRoomAfterBytes);
  const frame = slot.subarray(sealRoomBeforeBytes, sealRoomBeforeBytes + FRAME_HEADER_BYTES + payload);
  writeHeader(frame, 0, FrameType.Data, payload);
  for (let i = 0; i < payload; i++) frame[FRAME_HEADER_BYTES + i] = (seed * 7 + i * 13) & 255;
  return { slot, frame, plain: frame.slice() };
}

describe("Connection with a sealer", () => {
  test("pooled DATA sealed in place, shared control frames untouched; the opener gets every frame in order", () => {
    const { socket, sink, state } = fakeSocket();
    const conn = new Connection();
    conn.sealer = linkSealer(keys, "dialer");
    const data = [pooledDataFrame(30, 1), pooledDataFrame(1, 2), pooledDataFrame(300, 3)];
    const ping = encodeEmpty(FrameType.Ping);
    const pingCopy = ping.slice();
    const written: string[] = [];
    // Queued before the socket exists (the handshake is under way): sealed once attached.
    conn.send(data[0].frame, data[0].frame.length, () => written.push("d0"), true);
    conn.send(ping, ping.length, () => written.push("ping"));
    // biome-ignore lint/suspicious/noExplicitAny: stand-in socket
    conn.attach(socket as any);
    conn.send(data[1].frame, data[1].frame.length, () => written.push("d1"), true);
    conn.send(ping, ping.length, () => written.push("ping"));
    conn.send(data[2].frame, data[2].frame.length, () => written.push("d2"), true);
    while (conn.queuedFrames > 0) {
      state.room = 777;
      conn.flush();
    }
    expect(written).toEqual(["d0", "ping", "d1", "ping", "d2"]);
    // The shared PING was sealed into a copy; the pooled frames were overwritten by their records.
    expect(ping).toEqual(pingCopy);
    for (const d of data) {
      expect(Buffer.from(d.frame).equals(Buffer.from(d.plain))).toBe(false);
      // The record sits at sealOutOffsetBytes of the slot: its length field, then the ciphertext.
      const length = new DataView(d.slot.buffer, d.slot.byteOffset + sealOutOffsetBytes, 4).getUint32(0);
      expect(length).toBe(d.plain.length);
    }
    // No plaintext record on the "wire".
    const wire = Buffer.from(sink);
    for (const d of data)
      expect(wire.indexOf(Buffer.from(d.plain.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 64)))).toBe(
        -1,
      );
    // The receiving side opens it all, in order.
    const got: string[] = [];
    const records: Uint8Array[] = [];
    const decoder = new FrameDecoder(
      {
        onControl: (type) => got.push(FrameType[type]),
        onRecords: (buf, offset, length) => {
          got.push(`records ${length / RECORD_BYTES}`);
          records.push(buf.slice(offset, offset + length));
        },
      },
      new Set([FrameType.Data, FrameType.Ping]),
    );
    const opener = linkOpener(keys, "listener", (b) => {
      decoder.push(b);
    });
    for (let i = 0; i < wire.length; i += 1000)
      opener.push(wire.subarray(i, Math.min(wire.length, i + 1000)));
    opener.finish();
    expect(opener.records).toBe(5);
    const joined = Buffer.concat(records);
    const expected = Buffer.concat(data.map((d) => d.plain.subarray(FRAME_HEADER_BYTES)));
    expect(joined.equals(expected)).toBe(true);
    expect(got.filter((g) => g === "Ping").length).toBe(2);
  });

  test("without a sealer the bytes on the wire are the frames themselves (the plain path)", () => {
    const { socket, sink, state } = fakeSocket();
    const conn = new Connection();
    const d = pooledDataFrame(5, 9);
    // biome-ignore lint/suspicious/noExplicitAny: stand-in socket
    conn.attach(socket as any);
    conn.send(d.frame, d.frame.length, null, true);
    while (conn.queuedFrames > 0) {
      state.room = 100;
      conn.flush();
    }
    expect(Buffer.from(sink).equals(Buffer.from(d.plain))).toBe(true);
    expect(Buffer.from(d.frame).equals(Buffer.from(d.plain))).toBe(true);
  });
});
