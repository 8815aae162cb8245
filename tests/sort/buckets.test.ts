import { describe, expect, test } from "bun:test";
import { ownerOf, RECORD_BYTES, rangeEnd, rangeStart } from "../../src/record.ts";
import { BucketStore } from "../../src/sort/buckets.ts";
import { prng } from "../helpers.ts";

function writePrefix(data: Uint8Array, o: number, p: number): void {
  const hi = Math.floor(p / 2 ** 24);
  const lo = p % 2 ** 24;
  data[o] = hi >>> 16;
  data[o + 1] = (hi >>> 8) & 0xff;
  data[o + 2] = hi & 0xff;
  data[o + 3] = lo >>> 16;
  data[o + 4] = (lo >>> 8) & 0xff;
  data[o + 5] = lo & 0xff;
}

type Shape = "uniform" | "duplicates" | "equalKeys" | "identical" | "skewed";

/** `count` records owned by `peer` of `peers`, including the range's edge prefixes. */
function makeRecords(
  random: () => number,
  count: number,
  peer: number,
  peers: number,
  shape: Shape,
): Uint8Array {
  const start = rangeStart(peer, peers);
  const end = rangeEnd(peer, peers);
  const width = end - start;
  const data = new Uint8Array(count * RECORD_BYTES);
  const words = new Uint32Array(data.buffer);
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32;
  const edges = [start, end - 1, start + 1, end - 2, Math.floor((start + end) / 2)];
  // Prefixes at both sides of the 32-bit prefixes that hold the range ends.
  edges.push(
    Math.min(end - 1, Math.ceil(start / 65536) * 65536),
    Math.max(start, Math.floor((end - 1) / 65536) * 65536 - 1),
  );
  const pool = Array.from({ length: 4 }, () => start + Math.floor(random() * width));
  const shared = pool[0];
  const sample = data.slice(0, RECORD_BYTES);
  for (let r = 0; r < count; r++) {
    const o = r * RECORD_BYTES;
    let p: number;
    if (shape === "identical") {
      data.set(sample, o);
      p = shared;
    } else if (shape === "skewed") {
      p = random() < 0.9 ? shared : start + Math.floor(random() * width);
    } else if (shape === "duplicates") {
      p = pool[(random() * pool.length) | 0];
      data.fill((random() * 2) | 0, o + 6, o + 10); // few distinct keys
      data.fill((random() * 2) | 0, o + 10, o + RECORD_BYTES); // few distinct values
    } else if (shape === "equalKeys") {
      p = shared;
      data.fill(0x5a, o + 6, o + 10);
    } else {
      p = r < edges.length ? edges[r] : start + Math.floor(random() * width);
    }
    writePrefix(data, o, p);
  }
  return data;
}

/** Independent reference: whole records compared with Buffer.compare (memcmp). */
function referenceSort(data: Uint8Array): Buffer {
  const records: Buffer[] = [];
  for (let o = 0; o < data.length; o += RECORD_BYTES)
    records.push(Buffer.from(data.subarray(o, o + RECORD_BYTES)));
  records.sort(Buffer.compare);
  return Buffer.concat(records, data.length);
}

/** Feed `data` in batches of random sizes, at random (often unaligned) byte offsets. */
function addInBatches(
  store: BucketStore,
  data: Uint8Array,
  random: () => number,
  maxBatchRecords: number,
): void {
  const carrier = new Uint8Array((maxBatchRecords + 1) * RECORD_BYTES + 16);
  for (let done = 0; done < data.length; ) {
    const records = Math.min((random() * (maxBatchRecords + 1)) | 0, (data.length - done) / RECORD_BYTES);
    const length = records * RECORD_BYTES;
    // An offset inside the view and a view that itself starts at an odd byte.
    const viewShift = (random() * 4) | 0;
    const offset = (random() * 9) | 0;
    const view = carrier.subarray(viewShift);
    view.set(data.subarray(done, done + length), offset);
    store.add(view, offset, length);
    view.fill(0xee); // the store must have copied the batch
    done += length;
  }
}

/** Drain sortedRuns, copying each run (the store reuses its buffers). */
function collect(store: BucketStore): { sorted: Buffer; runs: number } {
  const pieces: Buffer[] = [];
  for (const run of store.sortedRuns()) {
    expect(run.length % RECORD_BYTES).toBe(0);
    expect(run.length).toBeGreaterThan(0);
    pieces.push(Buffer.from(run));
  }
  return { sorted: Buffer.concat(pieces), runs: pieces.length };
}

function checkStore(
  peer: number,
  peers: number,
  count: number,
  shape: Shape,
  seed: number,
  expectedRecords = count,
) {
  const random = prng(seed);
  const data = makeRecords(random, count, peer, peers, shape);
  for (let o = 0; o < data.length; o += RECORD_BYTES) {
    if (ownerOf(data, o, peers) !== peer)
      throw new Error(`generator bug: record ${o / RECORD_BYTES} not owned`);
  }
  const store = new BucketStore({
    rangeStart: rangeStart(peer, peers),
    rangeEnd: rangeEnd(peer, peers),
    expectedRecords,
  });
  addInBatches(store, data, random, 700);
  expect(store.records).toBe(count);
  const { sorted, runs } = collect(store);
  expect(sorted.length).toBe(data.length);
  expect(sorted.equals(referenceSort(data))).toBe(true);
  return { store, runs };
}

describe("BucketStore: concatenated sortedRuns equal a memcmp reference", () => {
  for (const peers of [1, 2, 3, 4, 7, 8]) {
    test(`${peers} peer(s), every peer, random batches`, () => {
      for (let peer = 0; peer < peers; peer++) {
        checkStore(peer, peers, 3_000 + peer * 17, "uniform", peers * 100 + peer);
      }
    });
  }

  test("key shapes: duplicates, equal keys, identical records, skewed", () => {
    for (const shape of ["duplicates", "equalKeys", "identical", "skewed"] as const) {
      for (const [peer, peers] of [
        [0, 1],
        [1, 3],
        [6, 7],
      ]) {
        checkStore(peer, peers, 5_000, shape, peer + peers + shape.length);
      }
    }
  });

  test("empty store and single record", () => {
    const empty = new BucketStore({
      rangeStart: rangeStart(2, 3),
      rangeEnd: rangeEnd(2, 3),
      expectedRecords: 0,
    });
    empty.add(new Uint8Array(0), 0, 0);
    expect(empty.records).toBe(0);
    expect(collect(empty).runs).toBe(0);
    checkStore(2, 3, 1, "uniform", 5);
  });

  test("expectedRecords of 0, far too low and far too high", () => {
    checkStore(1, 4, 20_000, "uniform", 11, 0);
    checkStore(1, 4, 20_000, "uniform", 12, 10);
    checkStore(1, 4, 2_000, "uniform", 13, 50_000_000);
  });

  test("big buckets are split before sorting (skewed, identical, too few buckets)", () => {
    // One 32-bit prefix holds 90% of 30k records: above the ~21k-record split size.
    expect(checkStore(3, 7, 30_000, "skewed", 21).runs).toBeGreaterThan(20);
    // 30k identical records: yielded straight from their blocks.
    expect(checkStore(0, 2, 30_000, "identical", 22).runs).toBeGreaterThan(1);
    checkStore(5, 8, 25_000, "equalKeys", 23);
    checkStore(2, 3, 25_000, "duplicates", 24);
    // 16 buckets for 400k records: every bucket is split once, and the split
    // reuses the blocks it has read. Allocated slabs (which include the untouched
    // tail of the newest one) stay near the data size: 1.6x here, 5.3x without reuse.
    const { store, runs } = checkStore(0, 1, 400_000, "uniform", 25, 0);
    expect(runs).toBeGreaterThan(16 * 100);
    expect(store.slabBytes).toBeLessThan(1.75 * 400_000 * RECORD_BYTES);
  }, 60_000);

  test("bucket count follows expectedRecords within 16..65536", () => {
    const make = (expectedRecords: number) =>
      new BucketStore({ rangeStart: rangeStart(0, 1), rangeEnd: rangeEnd(0, 1), expectedRecords }).buckets;
    expect(make(0)).toBe(16);
    expect(make(2_700_000)).toBeGreaterThanOrEqual(256);
    expect(make(2_700_000)).toBeLessThanOrEqual(1024);
    expect(make(1e12)).toBe(65536);
  });
});

describe("BucketStore: memory", () => {
  test("bucket counts for ranges that are not a power-of-two fraction stay within wanted/2..wanted", () => {
    for (const peers of [3, 5, 7, 12, 1000]) {
      for (const peer of [0, 1, peers - 1]) {
        const store = new BucketStore({
          rangeStart: rangeStart(peer, peers),
          rangeEnd: rangeEnd(peer, peers),
          expectedRecords: 2_700_000,
        });
        // 2.7M records want 512 buckets of ~512 KiB, unless the range is narrower.
        expect(store.buckets).toBeLessThanOrEqual(512);
        expect(store.buckets).toBeGreaterThanOrEqual(Math.min(256, 2 ** 32 / peers / 65536));
        expect(store.groups).toBeGreaterThanOrEqual(1);
        expect(store.groups).toBeLessThanOrEqual(store.buckets);
      }
    }
  });

  test("each group's memory is given back once its runs are consumed, and runs stay intact", () => {
    // 4 MB of data expected in ~8 groups: ask for more groups than the default
    // sizing gives by expecting far more records than are added.
    const peers = 4;
    const peer = 2;
    const count = 60_000;
    const random = prng(31);
    const data = makeRecords(random, count, peer, peers, "uniform");
    const store = new BucketStore({
      rangeStart: rangeStart(peer, peers),
      rangeEnd: rangeEnd(peer, peers),
      expectedRecords: 4_000_000,
    });
    expect(store.groups).toBeGreaterThan(4);
    addInBatches(store, data, random, 3_000);
    expect(store.givenBackBytes).toBe(0);
    const pieces: Buffer[] = [];
    const givenBack: number[] = [];
    for (const run of store.sortedRuns()) {
      pieces.push(Buffer.from(run));
      givenBack.push(store.givenBackBytes);
    }
    // The sorted output is exact although memory went back to the kernel under it.
    expect(Buffer.concat(pieces).equals(referenceSort(data))).toBe(true);
    if (process.platform === "linux") {
      // Given back progressively: some before half the runs were out, all by the end.
      expect(givenBack[Math.floor(givenBack.length / 2)]).toBeGreaterThan(0);
      expect(givenBack[0]).toBeLessThan(store.slabBytes);
      expect(store.givenBackBytes).toBeGreaterThanOrEqual(store.slabBytes);
    }
  });

  test("skewed data with splits gives everything back and reuses freed blocks", () => {
    const { store } = checkStore(3, 7, 60_000, "skewed", 41);
    expect(store.slabBytes).toBeLessThan(2 * 60_000 * RECORD_BYTES + 8 * 2 ** 21);
    if (process.platform === "linux") expect(store.givenBackBytes).toBeGreaterThanOrEqual(store.slabBytes);
  });
});

describe("BucketStore: reset and heldBytes (for the spilling store)", () => {
  test("held bytes follow the records, drop to 0 once consumed, and reset refills the same chunks", () => {
    const peers = 3;
    const peer = 1;
    const random = prng(51);
    const store = new BucketStore({
      rangeStart: rangeStart(peer, peers),
      rangeEnd: rangeEnd(peer, peers),
      expectedRecords: 40_000,
    });
    expect(store.heldBytes).toBe(0);
    for (const shape of ["uniform", "skewed", "equalKeys"] as const) {
      const data = makeRecords(random, 40_000, peer, peers, shape);
      addInBatches(store, data, random, 900);
      expect(store.records).toBe(40_000);
      // Whole 2 MiB chunks: at least the records, at most the pool.
      expect(store.heldBytes).toBeGreaterThanOrEqual(data.length);
      expect(store.heldBytes).toBeLessThanOrEqual(store.slabBytes);
      const { sorted } = collect(store);
      expect(sorted.equals(referenceSort(data))).toBe(true);
      expect(store.heldBytes).toBe(0);
      const slab = store.slabBytes;
      store.reset();
      expect(store.records).toBe(0);
      if (shape === "uniform") continue;
      // Refilled with the same amount: the freed chunks are reused, the pool stays put.
      addInBatches(store, makeRecords(random, 40_000, peer, peers, "uniform"), random, 900);
      expect(store.slabBytes).toBe(slab);
      collect(store);
      store.reset();
    }
  }, 60_000);

  test("reset before the runs are consumed is an assertion failure", () => {
    const store = new BucketStore({ rangeStart: 0, rangeEnd: 2 ** 48, expectedRecords: 10 });
    expect(() => store.reset()).toThrow("assertion failed");
    store.add(new Uint8Array(RECORD_BYTES), 0, RECORD_BYTES);
    const runs = store.sortedRuns();
    runs.next();
    expect(() => store.reset()).toThrow("assertion failed");
  });
});

describe("BucketStore: misuse is an assertion failure", () => {
  const peers = 3;
  const peer = 1;
  const start = rangeStart(peer, peers);
  const end = rangeEnd(peer, peers);
  const make = () => new BucketStore({ rangeStart: start, rangeEnd: end, expectedRecords: 10 });

  test("records outside the range, even by one 48-bit prefix", () => {
    for (const p of [start - 1, end, 0, 2 ** 48 - 1]) {
      const record = new Uint8Array(RECORD_BYTES);
      writePrefix(record, 0, p);
      expect(() => make().add(record, 0, RECORD_BYTES)).toThrow(/outside this peer's range/);
    }
    for (const p of [start, end - 1]) {
      const record = new Uint8Array(RECORD_BYTES);
      writePrefix(record, 0, p);
      expect(() => make().add(record, 0, RECORD_BYTES)).not.toThrow();
    }
  });

  test("partial records, bad bounds, add after sortedRuns, sortedRuns twice", () => {
    const store = make();
    expect(() => store.add(new Uint8Array(150), 0, 150)).toThrow(/whole records/);
    expect(() => store.add(new Uint8Array(100), 1, 100)).toThrow(/assertion failed/);
    const runs = store.sortedRuns();
    runs.next();
    expect(() => store.add(new Uint8Array(100), 0, 100)).toThrow(/after sortedRuns/);
    expect(() => store.sortedRuns().next()).toThrow(/twice/);
    expect(() => new BucketStore({ rangeStart: 5, rangeEnd: 5, expectedRecords: 0 })).toThrow(
      /assertion failed/,
    );
  });
});
