import { describe, expect, test } from "bun:test";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import { decodeMark, FRAME_HEADER_BYTES, FrameType } from "../../src/exchange/protocol.ts";
import { OutStream } from "../../src/exchange/streams.ts";
import { batchBytes } from "../../src/limits.ts";
import { type KeyRange, Partitioner, roundCut } from "../../src/partition/partitioner.ts";
import { sampleRange } from "../../src/partition/sample.ts";
import { rangeEnd, rangeStart } from "../../src/record.ts";
import type { ServerEntry } from "../../src/types.ts";

function randomRecords(count: number, seed: number): Uint8Array {
  let s = seed >>> 0;
  const out = new Uint8Array(count * 100);
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Independent owner: floor(p * N / 2^48) with BigInt. */
function owner(buf: Uint8Array, o: number, peers: number): number {
  let p = 0n;
  for (let i = 0; i < 6; i++) p = (p << 8n) | BigInt(buf[o + i]);
  return Number((p * BigInt(peers)) >> 48n);
}

/**
 * Streams whose sockets are stand-ins: every frame "written" is decoded at once
 * (so buffers come back to the pool), and its records are collected per peer.
 */
function fakeStreams(peers: number, self: number, attachNow = true) {
  const received: number[][] = Array.from({ length: peers }, () => []);
  const streams = Array.from({ length: peers }, (_, id) => {
    if (id === self) return null;
    const out = new OutStream({ serverId: id, host: "127.0.0.1", port: 1 } as ServerEntry);
    const decoder = new FrameDecoder(
      {
        onControl: () => {},
        onRecords: (buf, offset, length) => {
          for (let o = offset; o < offset + length; o += 100) received[id].push(...buf.subarray(o, o + 100));
        },
      },
      new Set([FrameType.Data, FrameType.Done]),
    );
    const socket = {
      write: (buf: Uint8Array, offset = 0, length = buf.length - offset) => {
        decoder.push(buf.subarray(offset, offset + length));
        return length;
      },
      end: () => {},
    };
    // biome-ignore lint/suspicious/noExplicitAny: a stand-in for Bun's Socket
    const attach = () => out.conn.attach(socket as any);
    if (attachNow) attach();
    return { out, attach };
  });
  return {
    streams: streams.map((s) => (s === null ? null : s.out)),
    received,
    /** Attach the sockets of streams created with attachNow = false: queued batches flow. */
    attachAll: () => {
      for (const s of streams) s?.attach();
    },
  };
}

/** Independent sample-mode owner: the first splitter greater than the record (linear scan, memcmp), else the last peer. */
function splitterOwner(splitters: Uint8Array, peers: number) {
  return (buf: Uint8Array, o: number): number => {
    const record = buf.subarray(o, o + 100);
    for (let i = 0; i < peers - 1; i++)
      if (Buffer.compare(record, splitters.subarray(i * 100, i * 100 + 100)) < 0) return i;
    return peers - 1;
  };
}

/**
 * Each owner got exactly its records of `data`, in input order (ours through the
 * local sink, the others' through their streams). Returns the expected bytes per owner.
 */
function expectEveryRecordAtItsOwner(
  data: Uint8Array,
  peers: number,
  self: number,
  local: number[],
  received: number[][],
  ownerOf: (buf: Uint8Array, o: number) => number = (buf, o) => owner(buf, o, peers),
): number[][] {
  const expected: number[][] = Array.from({ length: peers }, () => []);
  for (let o = 0; o < data.length; o += 100) expected[ownerOf(data, o)].push(...data.subarray(o, o + 100));
  for (let k = 0; k < peers; k++) {
    const got = k === self ? local : received[k];
    expect(got.length).toBe(expected[k].length);
    expect(Buffer.compare(Buffer.from(got), Buffer.from(expected[k]))).toBe(0);
  }
  return expected;
}

describe("Partitioner", () => {
  for (const peers of [1, 2, 3, 4, 5, 8]) {
    test(`${peers} peers: every record reaches its owner, once, in input order`, async () => {
      const self = peers - 1;
      const { streams, received } = fakeStreams(peers, self);
      const local: number[] = [];
      const p = new Partitioner(self, streams, (buf, offset, length) => {
        for (let i = offset; i < offset + length; i++) local.push(buf[i]);
      });
      // Enough records to fill several batches for every peer, in uneven chunks.
      const data = randomRecords(Math.ceil((batchBytes / 100) * peers * 2.5), peers);
      let pos = 0;
      for (const size of [1, 37, 5000, 999, 20000]) {
        const end = Math.min(data.length, pos + size * 100);
        await p.push(data.subarray(pos, end));
        pos = end;
      }
      await p.push(data.subarray(pos));
      p.finish();
      const expected = expectEveryRecordAtItsOwner(data, peers, self, local, received);
      for (let k = 0; k < peers; k++) expect(p.routed[k]).toBe(expected[k].length / 100);
    });
  }

  test("bits mode is the default and unchanged: splitters null routes by the top bits of the key", async () => {
    for (const peers of [3, 4]) {
      const self = 0;
      const { streams, received } = fakeStreams(peers, self);
      const local: number[] = [];
      const p = new Partitioner(
        self,
        streams,
        (buf, offset, length) => {
          for (let i = offset; i < offset + length; i++) local.push(buf[i]);
        },
        null,
      );
      const data = randomRecords(20_000, 5 + peers);
      await p.push(data);
      p.finish();
      expectEveryRecordAtItsOwner(data, peers, self, local, received);
    }
  });

  for (const peers of [2, 5, 8]) {
    test(`sample mode, ${peers} peers: every record reaches the peer its splitters give, once, in input order`, async () => {
      const self = 1;
      // Splitters from the data itself, some sharing their first bytes with many
      // records (the fast table's slow path), one equal to records of the input.
      const data = randomRecords(Math.ceil((batchBytes / 100) * peers * 2.5), 20 + peers);
      for (let o = 0; o < data.length; o += 300) data.set([0x41, 0x42, 0x43], o);
      const picks: Buffer[] = [];
      for (let i = 0; i < peers - 1; i++) {
        const o = Math.floor(((i + 1) * data.length) / peers / 100) * 100;
        picks.push(Buffer.from(data.subarray(o, o + 100)));
      }
      const splitters = new Uint8Array(Buffer.concat(picks.sort(Buffer.compare)));
      const { streams, received } = fakeStreams(peers, self);
      const local: number[] = [];
      const p = new Partitioner(
        self,
        streams,
        (buf, offset, length) => {
          for (let i = offset; i < offset + length; i++) local.push(buf[i]);
        },
        splitters,
      );
      let pos = 0;
      for (const size of [1, 37, 5000, 999, 20000]) {
        const end = Math.min(data.length, pos + size * 100);
        await p.push(data.subarray(pos, end));
        pos = end;
      }
      await p.push(data.subarray(pos));
      p.finish();
      const expected = expectEveryRecordAtItsOwner(
        data,
        peers,
        self,
        local,
        received,
        splitterOwner(splitters, peers),
      );
      for (let k = 0; k < peers; k++) expect(p.routed[k]).toBe(expected[k].length / 100);
      // ...which is not the bits mode's routing (a third of the keys start with 0x41).
      let differs = 0;
      const bySplitters = splitterOwner(splitters, peers);
      for (let o = 0; o < data.length; o += 100)
        if (owner(data, o, peers) !== bySplitters(data, o)) differs++;
      expect(differs).toBeGreaterThan(0);
    });
  }

  test("streams that come up late: push waits inside a chunk, then resumes; every record arrives once, in order", async () => {
    const peers = 4;
    const self = 1;
    const { streams, received, attachAll } = fakeStreams(peers, self, false);
    const local: number[] = [];
    const p = new Partitioner(self, streams, (buf, offset, length) => {
      for (let i = offset; i < offset + length; i++) local.push(buf[i]);
    });
    // ~12 batches per owner in one chunk: more than a stream's pool, so routing has
    // to stop partway through the chunk and wait for the pools to come back.
    const data = randomRecords((batchBytes / 100) * peers * 12, 11);
    let settled = false;
    const pushing = p.push(data).then(() => (settled = true));
    await Bun.sleep(30);
    expect(settled).toBe(false);
    const routedWhileBlocked = p.routed.reduce((a, b) => a + b, 0);
    expect(routedWhileBlocked).toBeGreaterThan(0);
    expect(routedWhileBlocked).toBeLessThan(data.length / 100);
    attachAll();
    await pushing;
    p.finish();
    expectEveryRecordAtItsOwner(data, peers, self, local, received);
  });

  test("a stream that never drains makes push wait (bounded memory), and stop() ends the wait", async () => {
    const out = new OutStream({ serverId: 1, host: "127.0.0.1", port: 1 } as ServerEntry);
    // No socket attached: every batch stays queued, the pool runs dry.
    const p = new Partitioner(0, [null, out], () => {});
    const allToPeer1 = randomRecords(40_000, 3);
    for (let o = 0; o < allToPeer1.length; o += 100) allToPeer1[o] = 0xff; // owner 1 of 2
    let settled = false;
    const pushing = p.push(allToPeer1).then(
      () => (settled = true),
      (e: Error) => {
        settled = true;
        throw e;
      },
    );
    await Bun.sleep(50);
    expect(settled).toBe(false);
    expect(out.conn.queuedFrames * (batchBytes + FRAME_HEADER_BYTES)).toBeLessThanOrEqual(
      8 * (batchBytes + FRAME_HEADER_BYTES),
    );
    out.stop();
    await expect(pushing).rejects.toThrow("stopped");
  });
});

describe("send budget", () => {
  test("per-stream batch pools shrink as the cluster grows, never below two", async () => {
    const { batchBuffersPerStream } = await import("../../src/exchange/streams.ts");
    const { batchBytes: batch, maxQueuedBytesPerPeer, sendBudgetBytes } = await import("../../src/limits.ts");
    for (const peers of [2, 3, 4, 8, 16, 64, 1024]) {
      const n = batchBuffersPerStream(peers);
      expect(n).toBeGreaterThanOrEqual(2);
      expect(n * batch).toBeLessThanOrEqual(maxQueuedBytesPerPeer);
      // All streams together stay within the budget unless the two-buffer floor applies.
      if (n > 2) expect(n * batch * (peers - 1)).toBeLessThanOrEqual(sendBudgetBytes);
    }
    expect(batchBuffersPerStream(16)).toBeLessThan(batchBuffersPerStream(4));
  });
});

/** The first 48 key bits of the record at o, as a number. */
function prefix48(buf: Uint8Array, o: number): number {
  let p = 0;
  for (let i = 0; i < 6; i++) p = p * 256 + buf[o + i];
  return p;
}

/**
 * Streams that keep, per peer, what arrived in order: records (hex) and MARKs,
 * so a test can check that no record comes after a mark above it.
 */
function markingStreams(peers: number, self: number) {
  const arrived: Array<Array<{ mark: number } | { record: string; p48: number }>> = Array.from(
    { length: peers },
    () => [],
  );
  const streams = Array.from({ length: peers }, (_, id) => {
    if (id === self) return null;
    const out = new OutStream({ serverId: id, host: "127.0.0.1", port: 1 } as ServerEntry);
    const decoder = new FrameDecoder(
      {
        onControl: (type, payload) => {
          if (type === FrameType.Mark) arrived[id].push({ mark: decodeMark(payload) });
        },
        onRecords: (buf, offset, length) => {
          for (let o = offset; o < offset + length; o += 100)
            arrived[id].push({
              record: Buffer.from(buf.subarray(o, o + 100)).toString("hex"),
              p48: prefix48(buf, o),
            });
        },
      },
      new Set([FrameType.Data, FrameType.Mark, FrameType.Done]),
    );
    const socket = {
      write: (buf: Uint8Array, offset = 0, length = buf.length - offset) => {
        decoder.push(buf.subarray(offset, offset + length));
        return length;
      },
      end: () => {},
    };
    // biome-ignore lint/suspicious/noExplicitAny: a stand-in for Bun's Socket
    out.conn.attach(socket as any);
    return out;
  });
  return { streams, arrived };
}

describe("key-range rounds", () => {
  /**
   * Records spread over the key space, plus records right at every round's cut
   * and just below it (where the 16-bit table has to look closer).
   */
  function roundsInput(ranges: KeyRange[], rounds: number, seed: number): Uint8Array {
    const random = randomRecords(4000, seed);
    const edges: number[] = [];
    for (const range of ranges) {
      for (let g = 0; g <= rounds; g++) {
        const cut48 = roundCut(range, g, rounds) * 2 ** 16;
        for (const p of [cut48 - 1, cut48, cut48 + 1, range.rangeStart, range.rangeEnd - 1]) {
          if (p >= 0 && p < 2 ** 48) edges.push(p);
        }
      }
    }
    const out = new Uint8Array(random.length + edges.length * 100);
    out.set(random);
    edges.forEach((p, i) => {
      const o = random.length + i * 100;
      for (let b = 5, v = p; b >= 0; b--, v = Math.floor(v / 256)) out[o + b] = v % 256;
      out[o + 6] = i & 0xff; // the rest stays zero: distinct records
      out[o + 7] = i >> 8;
    });
    return out;
  }

  const cases: Array<{ name: string; peers: number; rounds: number; sample: boolean }> = [
    { name: "4 peers (bits), 4 rounds", peers: 4, rounds: 4, sample: false },
    { name: "3 peers (bits, ranges not on bit boundaries), 3 rounds", peers: 3, rounds: 3, sample: false },
    { name: "5 peers (bits), 2 rounds", peers: 5, rounds: 2, sample: false },
    { name: "4 peers (sample), 4 rounds", peers: 4, rounds: 4, sample: true },
    { name: "2 peers (bits), 7 rounds", peers: 2, rounds: 7, sample: false },
  ];
  for (const { name, peers, rounds, sample } of cases) {
    test(`${name}: every record reaches its owner once, and never after a MARK above it`, async () => {
      const self = 1;
      let splitters: Uint8Array | null = null;
      if (sample) {
        // Split points in the middle of a 16-bit prefix, so owner boundaries cut table cells.
        const picks = randomRecords(peers - 1, 99);
        splitters = new Uint8Array(
          Buffer.concat(
            Array.from({ length: peers - 1 }, (_, i) =>
              Buffer.from(picks.subarray(i * 100, i * 100 + 100)),
            ).sort(Buffer.compare),
          ),
        );
      }
      const ranges: KeyRange[] = Array.from({ length: peers }, (_, k) =>
        splitters === null
          ? { rangeStart: rangeStart(k, peers), rangeEnd: rangeEnd(k, peers) }
          : sampleRange(splitters, k, peers),
      );
      const ownerOf =
        splitters === null
          ? (b: Uint8Array, o: number) => owner(b, o, peers)
          : splitterOwner(splitters, peers);
      const { streams, arrived } = markingStreams(peers, self);
      const local: Array<{ mark: number } | { record: string; p48: number }> = [];
      const p = new Partitioner(
        self,
        streams,
        (buf, offset, length) => {
          for (let o = offset; o < offset + length; o += 100)
            local.push({
              record: Buffer.from(buf.subarray(o, o + 100)).toString("hex"),
              p48: prefix48(buf, o),
            });
        },
        splitters,
        rounds,
        ranges,
      );
      expect(p.rounds).toBe(rounds);
      const data = roundsInput(ranges, rounds, peers * 31 + rounds);
      for (let g = 0; g < rounds; g++) {
        p.beginRound(g);
        for (let o = 0; o < data.length; o += 777 * 100)
          await p.push(data.subarray(o, Math.min(data.length, o + 777 * 100)));
        if (g < rounds - 1) local.push({ mark: p.endRound() });
      }
      p.finish();
      const expected: string[][] = Array.from({ length: peers }, () => []);
      for (let o = 0; o < data.length; o += 100) {
        expected[ownerOf(data, o)].push(Buffer.from(data.subarray(o, o + 100)).toString("hex"));
      }
      for (let k = 0; k < peers; k++) {
        const events = k === self ? local : arrived[k];
        let mark = 0;
        let marks = 0;
        const got: string[] = [];
        for (const e of events) {
          if ("mark" in e) {
            expect(e.mark).toBeGreaterThanOrEqual(mark); // marks never go down
            mark = e.mark;
            marks++;
          } else {
            expect(e.p48).toBeGreaterThanOrEqual(mark); // nothing below a mark comes after it
            got.push(e.record);
          }
        }
        expect(marks).toBe(rounds - 1);
        expect(got.sort()).toEqual(expected[k].sort());
        expect(p.routed[k]).toBe(expected[k].length);
      }
    });
  }

  test("one round (the default) routes in input order and sends no MARK", async () => {
    const { streams, arrived } = markingStreams(4, 0);
    const p = new Partitioner(0, streams, () => {});
    expect(p.rounds).toBe(1);
    const data = randomRecords(3000, 5);
    await p.push(data);
    p.finish();
    for (let k = 1; k < 4; k++) {
      expect(arrived[k].some((e) => "mark" in e)).toBe(false);
      const want: string[] = [];
      for (let o = 0; o < data.length; o += 100) {
        if (owner(data, o, 4) === k) want.push(Buffer.from(data.subarray(o, o + 100)).toString("hex"));
      }
      expect(arrived[k].map((e) => ("record" in e ? e.record : ""))).toEqual(want);
    }
  });

  test("roundCut splits a range into equal 32-bit slices, ending past its last prefix", () => {
    const range = { rangeStart: rangeStart(1, 4), rangeEnd: rangeEnd(1, 4) };
    expect(roundCut(range, 0, 4)).toBe(2 ** 30);
    expect(roundCut(range, 1, 4)).toBe(2 ** 30 + 2 ** 28);
    expect(roundCut(range, 4, 4)).toBe(2 ** 31);
    // A range inside one 32-bit value: every round but the last is empty.
    const narrow = { rangeStart: 5 * 2 ** 16 + 3, rangeEnd: 5 * 2 ** 16 + 9 };
    expect([0, 1, 2, 3, 4].map((g) => roundCut(narrow, g, 4))).toEqual([5, 5, 5, 5, 6]);
  });
});
