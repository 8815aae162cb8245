/**
 * The sealed channel over real loopback TCP, the way a link will use it: DATA
 * frames of 256 KB sealed in place in a small pool of buffers, queued on a
 * Connection (backpressure; buffers recycled from onWritten), opened from
 * whatever chunks the socket delivers into a FrameDecoder. A capture of the
 * wire holds no plaintext record; a proxy that flips one byte makes the
 * receiver fail with SealError.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { Connection } from "../../src/exchange/connection.ts";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import { encodeSummary, FRAME_HEADER_BYTES, FrameType, writeHeader } from "../../src/exchange/protocol.ts";
import {
  deriveLinkKeys,
  linkOpener,
  linkSealer,
  SEAL_LENGTH_BYTES,
  SealError,
  Sealer,
  sealOutOffsetBytes,
} from "../../src/exchange/seal.ts";
import { batchBytes } from "../../src/limits.ts";
import { RECORD_BYTES } from "../../src/record.ts";
import { prng } from "../helpers.ts";

/** Frames each run sends: 24 x 256 KB = 6 MB, enough to fill the socket and exercise backpressure. */
const framesPerRun = 24;
/** Pooled send buffers, as the mesh bounds its batches. */
const poolBuffers = 3;
/** A run that takes longer than this on a loaded machine has hung. */
const runTimeoutMs = 30_000;

const keys = deriveLinkKeys(new TextEncoder().encode("socket test secret 0123456789abcdef0123"), {
  fingerprint: new Uint8Array(32).fill(3),
  dialerId: 4,
  listenerId: 5,
  dialerNonce: new Uint8Array(32).fill(6),
  listenerNonce: new Uint8Array(32).fill(7),
});

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Received {
  records: number;
  hash: number;
  controls: FrameType[];
  wire: Uint8Array[];
  error: unknown;
}

/** A listener that opens the sealed stream into a FrameDecoder; resolves when the peer closes. */
function listen(): { port: number; done: Promise<Received> } {
  const got: Received = { records: 0, hash: 2166136261, controls: [], wire: [], error: null };
  let resolve!: (r: Received) => void;
  const done = new Promise<Received>((r) => {
    resolve = r;
  });
  const decoder = new FrameDecoder(
    {
      onControl: (type) => got.controls.push(type),
      onRecords(buf, offset, length) {
        for (let i = offset; i < offset + length; i++) got.hash = Math.imul(got.hash ^ buf[i], 16777619);
        got.records += length / RECORD_BYTES;
      },
    },
    new Set([FrameType.Data, FrameType.Done]),
  );
  const opener = linkOpener(keys, "listener", (bytes) => decoder.push(bytes));
  const server: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, chunk) {
        got.wire.push(new Uint8Array(chunk));
        if (got.error !== null) return;
        try {
          opener.push(chunk);
        } catch (error) {
          got.error = error;
          socket.end();
        }
      },
      close() {
        if (got.error === null) {
          try {
            opener.finish();
          } catch (error) {
            got.error = error;
          }
        }
        resolve(got);
      },
      error(_socket, error) {
        got.error = error;
      },
    },
  });
  cleanups.push(() => server.stop(true));
  return { port: server.port, done };
}

/** Send `framesPerRun` sealed DATA frames and a sealed DONE to `port`; returns what was sent. */
async function send(port: number, seed: number) {
  const random = prng(seed);
  const sealer = linkSealer(keys, "dialer");
  const frameBytes = FRAME_HEADER_BYTES + batchBytes;
  const poolBytes = sealOutOffsetBytes + Sealer.sealedLength(frameBytes);
  const free: Uint8Array[] = Array.from({ length: poolBuffers }, () => new Uint8Array(poolBytes));
  let waiter: (() => void) | null = null;
  const conn = new Connection<undefined>();
  let closed!: () => void;
  const closedPromise = new Promise<void>((r) => {
    closed = r;
  });
  const socket: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(s) {
        conn.attach(s);
      },
      drain() {
        conn.flush();
      },
      close() {
        conn.markClosed();
        closed();
      },
      data() {},
    },
  });
  cleanups.push(() => socket.terminate());
  let hash = 2166136261;
  const firstRecords: Uint8Array[] = [];
  for (let f = 0; f < framesPerRun; f++) {
    while (free.length === 0) await new Promise<void>((r) => (waiter = r));
    const buf = free.pop()!;
    // The plaintext frame goes where its ciphertext will be, and is sealed in place.
    const at = sealOutOffsetBytes + SEAL_LENGTH_BYTES;
    writeHeader(buf, at, FrameType.Data, batchBytes);
    for (let i = at + FRAME_HEADER_BYTES; i < at + frameBytes; i++) {
      buf[i] = Math.floor(random() * 256);
      hash = Math.imul(hash ^ buf[i], 16777619);
    }
    if (f === 0) {
      for (let r = 0; r < 5; r++) {
        const start = at + FRAME_HEADER_BYTES + r * RECORD_BYTES;
        firstRecords.push(buf.slice(start, start + RECORD_BYTES));
      }
    }
    const n = sealer.sealInto(buf.subarray(at, at + frameBytes), buf, sealOutOffsetBytes);
    conn.send(buf.subarray(sealOutOffsetBytes), n, () => {
      free.push(buf);
      const w = waiter;
      waiter = null;
      w?.();
    });
  }
  const records = (framesPerRun * batchBytes) / RECORD_BYTES;
  conn.send(sealer.seal(encodeSummary(FrameType.Done, { records, digest: hash >>> 0 })));
  await conn.whenFlushed();
  socket.end();
  await Promise.race([closedPromise, Bun.sleep(runTimeoutMs)]);
  return { records, hash, firstRecords };
}

/** A proxy from a free port to `target` that flips one bit of the byte at stream offset `flipAt`. */
function tamperingProxy(target: number, flipAt: number): number {
  let forwarded = 0;
  // Bytes the upstream socket has not taken yet (Bun's write takes what the kernel takes, queues nothing).
  const pending: Uint8Array[] = [];
  let upstream: Socket<undefined> | null = null;
  const pump = () => {
    while (upstream !== null && pending.length > 0) {
      const head = pending[0];
      const wrote = upstream.write(head);
      if (wrote < head.length) {
        if (wrote > 0) pending[0] = head.subarray(wrote);
        return; // drain calls pump again
      }
      pending.shift();
    }
  };
  const proxy = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(client) {
        upstream = await Bun.connect({
          hostname: "127.0.0.1",
          port: target,
          socket: {
            data() {},
            drain: pump,
            close() {
              client.end();
            },
          },
        });
        const u = upstream;
        cleanups.push(() => u.terminate());
        pump();
      },
      data(_client, chunk) {
        const copy = new Uint8Array(chunk);
        if (flipAt >= forwarded && flipAt < forwarded + copy.length) copy[flipAt - forwarded] ^= 0x10;
        forwarded += copy.length;
        pending.push(copy);
        pump();
      },
      close() {
        upstream?.end();
      },
    },
  });
  cleanups.push(() => proxy.stop(true));
  return proxy.port;
}

describe("sealed frames over loopback TCP", () => {
  test(
    "256 KB DATA frames sealed in place from a pool arrive whole, and the wire holds no plaintext record",
    async () => {
      const { port, done } = listen();
      const sent = await send(port, 11);
      const got = await Promise.race([done, Bun.sleep(runTimeoutMs).then(() => null)]);
      expect(got).not.toBeNull();
      if (got === null) throw new Error(`the receiver saw no end within ${runTimeoutMs} ms`);
      expect(got.error).toBeNull();
      expect(got.records).toBe(sent.records);
      expect(got.hash >>> 0).toBe(sent.hash >>> 0);
      expect(got.controls).toEqual([FrameType.Done]);
      const wire = Buffer.concat(got.wire);
      expect(wire.length).toBe(
        framesPerRun * Sealer.sealedLength(FRAME_HEADER_BYTES + batchBytes) + Sealer.sealedLength(20),
      );
      for (const record of sent.firstRecords) expect(wire.indexOf(Buffer.from(record))).toBe(-1);
      // Not even a 16-byte piece of a record crosses in clear.
      for (const record of sent.firstRecords)
        expect(wire.indexOf(Buffer.from(record.subarray(40, 56)))).toBe(-1);
    },
    runTimeoutMs * 2 + 5_000,
  );

  test(
    "a proxy that flips one byte mid-stream makes the receiver fail with SealError before the end",
    async () => {
      const { port, done } = listen();
      const recordBytes = Sealer.sealedLength(FRAME_HEADER_BYTES + batchBytes);
      const flipAt = 5 * recordBytes + 1234; // inside the sixth record's ciphertext
      const proxyPort = tamperingProxy(port, flipAt);
      const sent = await send(proxyPort, 12);
      const got = await Promise.race([done, Bun.sleep(runTimeoutMs).then(() => null)]);
      expect(got).not.toBeNull();
      if (got === null) throw new Error(`the receiver saw no end within ${runTimeoutMs} ms`);
      expect(got.error).toBeInstanceOf(SealError);
      expect((got.error as Error).message).toMatch(/sealed record 5 failed authentication/);
      // Exactly the five intact frames were delivered; nothing of the damaged one.
      expect(got.records).toBe((5 * batchBytes) / RECORD_BYTES);
      expect(got.records).toBeLessThan(sent.records);
      expect(got.controls).toEqual([]);
    },
    runTimeoutMs * 2 + 5_000,
  );
});
