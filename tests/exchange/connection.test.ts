import { describe, expect, test } from "bun:test";
import { Connection } from "../../src/exchange/connection.ts";

/**
 * A stand-in for Bun's socket: write() takes at most `room` bytes (like a full
 * kernel buffer) and returns how many it took; -1 once closed.
 */
function fakeSocket() {
  const sink: number[] = [];
  const state = { room: 0, closed: false, ended: false };
  const socket = {
    write(buf: Uint8Array, offset = 0, length = buf.length - offset): number {
      if (state.closed) return -1;
      const n = Math.min(length, state.room);
      for (let i = 0; i < n; i++) sink.push(buf[offset + i]);
      state.room -= n;
      return n;
    },
    end() {
      state.ended = true;
    },
  };
  return { socket, sink, state };
}

function frame(seed: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i) & 255);
}

describe("Connection", () => {
  test("partial writes: bytes arrive whole and in order across drains; onWritten runs once per frame, after its last byte", async () => {
    const { socket, sink, state } = fakeSocket();
    const conn = new Connection();
    const frames = [frame(1, 1000), frame(2, 1), frame(3, 4096), frame(4, 77)];
    const written: number[] = [];
    // Queued before the socket exists: nothing is lost.
    for (const [i, f] of frames.entries()) conn.send(f, f.length, () => written.push(i));
    // biome-ignore lint/suspicious/noExplicitAny: stand-in socket
    conn.attach(socket as any);
    expect(sink.length).toBe(0);
    let flushed = false;
    conn.whenFlushed().then(() => (flushed = true));
    while (sink.length < 1000 + 1 + 4096 + 77) {
      state.room = 333; // the kernel takes a little each time it drains
      conn.flush();
      for (const i of written) {
        // Only frames whose last byte has been taken are reported.
        const end = frames.slice(0, i + 1).reduce((n, f) => n + f.length, 0);
        expect(sink.length).toBeGreaterThanOrEqual(end);
      }
    }
    await Promise.resolve();
    expect(flushed).toBe(true);
    expect(written).toEqual([0, 1, 2, 3]);
    expect(Buffer.from(sink).equals(Buffer.concat(frames))).toBe(true);
    expect(conn.queuedFrames).toBe(0);
  });

  test("a closed socket releases every queued frame's buffer and every flush waiter", async () => {
    const { socket, state } = fakeSocket();
    const conn = new Connection();
    // biome-ignore lint/suspicious/noExplicitAny: stand-in socket
    conn.attach(socket as any);
    const released: number[] = [];
    conn.send(frame(1, 10), 10, () => released.push(1));
    conn.send(frame(2, 10), 10, () => released.push(2));
    const waiting = conn.whenFlushed();
    state.closed = true;
    conn.flush(); // write() returns -1
    await waiting;
    expect(released).toEqual([1, 2]);
    expect(conn.closed).toBe(true);
    conn.send(frame(3, 5), 5, () => released.push(3)); // after close: released at once, not queued
    expect(released).toEqual([1, 2, 3]);
  });

  test("whenFlushed does not wait on a connection that never got a socket", async () => {
    const conn = new Connection();
    conn.send(frame(1, 10));
    await conn.whenFlushed(); // resolves: nothing could ever flush it
    expect(conn.queuedFrames).toBe(1);
  });
});
