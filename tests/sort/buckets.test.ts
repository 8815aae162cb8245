import { describe, expect, test } from "bun:test";
import { ownerOf, RECORD_BYTES, rangeEnd, rangeStart } from "../../src/record.ts";
import { blockRecords } from "../../src/sort/blocks.ts";
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

describe("BucketStore: onBusy (keeping the mesh alive through long sorts)", () => {
  /** Sort `count` records of `shape` owned by peer `peer` of `peers`, counting onBusy calls. */
  function sortCountingBusy(seed: number, count: number, peer: number, peers: number, shape: Shape) {
    const random = prng(seed);
    const data = makeRecords(random, count, peer, peers, shape);
    const store = new BucketStore({
      rangeStart: rangeStart(peer, peers),
      rangeEnd: rangeEnd(peer, peers),
      expectedRecords: count,
    });
    addInBatches(store, data, random, 700);
    let calls = 0;
    store.onBusy = () => {
      calls++;
    };
    const { sorted } = collect(store);
    expect(sorted.equals(referenceSort(data))).toBe(true);
    return calls;
  }

  test("while one big list is scanned and split, onBusy runs once per block of it", () => {
    // Skewed keys: 90% share one 48-bit prefix, so one bucket holds most of the
    // records and is split (by its next digit) before any of its runs comes out.
    const count = 60_000;
    const calls = sortCountingBusy(77, count, 3, 7, "skewed");
    // The shared list holds ~54,000 records in blocks of blockRecords: the split reads each block once.
    expect(calls).toBeGreaterThanOrEqual(Math.floor((0.85 * count) / blockRecords));
  });

  test("a store whose lists are all small never calls it (nothing long to interrupt)", () => {
    expect(sortCountingBusy(78, 20_000, 0, 2, "uniform")).toBe(0);
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

// ---------------------------------------------------------------------------
// Draining early (key-range rounds): sortedRunsBelow(mark) while adds go on.
// ---------------------------------------------------------------------------

const P16 = 2 ** 16;

/** The 48-bit prefix of the record at `o` (first 6 key bytes, big-endian), computed here, not by src/. */
function prefixAt(data: Uint8Array, o: number): number {
  let p = 0;
  for (let i = 0; i < 6; i++) p = p * 256 + data[o + i];
  return p;
}

/** A uniform integer in [0, n) for n up to 2^48 (two draws: one would leave the low 16 bits 0). */
function randomBelow(random: () => number, n: number): number {
  const x = Math.floor(random() * 2 ** 26) * 2 ** 26 + Math.floor(random() * 2 ** 26);
  return x % n;
}

/** `count` random records with prefixes uniform in [start, end), then one at each prefix of `extra`. */
function recordsIn(
  random: () => number,
  count: number,
  start: number,
  end: number,
  extra: number[] = [],
): Uint8Array {
  const total = count + extra.length;
  const data = new Uint8Array(total * RECORD_BYTES);
  const words = new Uint32Array(data.buffer);
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32;
  for (let r = 0; r < total; r++) {
    const p = r < count ? start + randomBelow(random, end - start) : extra[r - count];
    if (p < start || p >= end) throw new Error(`test bug: prefix ${p} outside [${start}, ${end})`);
    writePrefix(data, r * RECORD_BYTES, p);
  }
  return data;
}

/** The records of `data` whose prefix lies in [from, to), in their order in `data`. */
function recordsBetween(data: Uint8Array, from: number, to: number): Uint8Array {
  const kept: number[] = [];
  for (let o = 0; o < data.length; o += RECORD_BYTES) {
    const p = prefixAt(data, o);
    if (from <= p && p < to) kept.push(o);
  }
  const out = new Uint8Array(kept.length * RECORD_BYTES);
  kept.forEach((o, i) => {
    out.set(data.subarray(o, o + RECORD_BYTES), i * RECORD_BYTES);
  });
  return out;
}

function countBelow(data: Uint8Array, bound: number): number {
  let n = 0;
  for (let o = 0; o < data.length; o += RECORD_BYTES) if (prefixAt(data, o) < bound) n++;
  return n;
}

/** Run a generator to its end, copying each piece (the store reuses its buffers); checks the pieces' shape. */
function copyAll(pieces: Iterable<Uint8Array>): Buffer[] {
  const out: Buffer[] = [];
  for (const piece of pieces) {
    expect(piece.length % RECORD_BYTES).toBe(0);
    expect(piece.length).toBeGreaterThan(0);
    out.push(Buffer.from(piece));
  }
  return out;
}

function bytesOf(pieces: Buffer[]): number {
  return pieces.reduce((sum, p) => sum + p.length, 0);
}

/** One record with 48-bit prefix p (the rest random-ish but fixed). */
function recordAt(p: number, fill = 0x33): Uint8Array {
  const record = new Uint8Array(RECORD_BYTES).fill(fill);
  writePrefix(record, 0, p);
  return record;
}

/**
 * A store's key range and how it is cut into buckets, derived here from the
 * documented layout (aligned blocks of 32-bit prefixes; for a power-of-two
 * fraction of the key space, `buckets` equal slices), not from private fields.
 */
interface DrainCase {
  name: string;
  start: number;
  end: number;
  expectedRecords: number;
  count: number;
  slices: number;
  /** The last mark: the range end, or past it (a round's end beyond this peer's range). */
  finalMark: number;
  /** Bucket width in 48-bit prefixes when the range splits evenly (else null: not derived). */
  evenBuckets: boolean;
  /** The store's first bucket boundary at or after every prefix of the range (a range inside one 32-bit prefix: its end). */
  oneBucketEnd?: number;
}

/** The highest bucket boundary at or below `mark`: everything below it is drained by sortedRunsBelow(mark). */
function drainedBoundary(c: DrainCase, buckets: number, mark: number): number | null {
  if (c.oneBucketEnd !== undefined) return mark >= c.oneBucketEnd ? c.end : c.start;
  if (!c.evenBuckets) return null;
  const width = (c.end - c.start) / buckets;
  const m = Math.min(mark, c.end);
  return m <= c.start ? c.start : c.start + Math.floor((m - c.start) / width) * width;
}

/**
 * R-1 slice boundaries in (start, end): arbitrary 48-bit prefixes, 2^16
 * multiples, exact bucket edges and their neighbours, and repeats (empty slices).
 */
function sliceBounds(random: () => number, c: DrainCase, bucketEdges: number[]): number[] {
  const inner: number[] = [];
  for (let k = 0; k < c.slices - 1; k++) {
    let b = c.start + 1 + randomBelow(random, c.end - c.start - 1);
    const kind = k % 5;
    if (kind === 1) b = Math.max(c.start + 1, Math.floor(b / P16) * P16);
    if (kind === 2 && inner.length > 0) b = inner[inner.length - 1];
    if (kind >= 3 && bucketEdges.length > 0) {
      b = bucketEdges[(random() * bucketEdges.length) | 0] + (kind === 4 ? Math.sign(random() - 0.5) : 0);
      b = Math.min(c.end - 1, Math.max(c.start + 1, b));
    }
    inner.push(b);
  }
  inner.sort((a, b) => a - b);
  return [c.start, ...inner, c.end];
}

function checkDrainedRounds(c: DrainCase, seed: number): void {
  const random = prng(seed);
  const store = new BucketStore({ rangeStart: c.start, rangeEnd: c.end, expectedRecords: c.expectedRecords });
  const buckets = store.buckets;
  const bucketEdges: number[] = [];
  if (c.evenBuckets) {
    for (let b = 1; b < buckets; b++) bucketEdges.push(c.start + ((c.end - c.start) / buckets) * b);
  }
  const bounds = sliceBounds(random, c, bucketEdges);
  // Records at the range ends and on both sides of every slice boundary.
  const extra = [c.start, c.end - 1];
  for (const b of bounds.slice(1, -1)) extra.push(b, b - 1);
  const data = recordsIn(random, c.count, c.start, c.end, extra);
  const total = data.length / RECORD_BYTES;
  const reference = referenceSort(data);

  const out: Buffer[] = [];
  let added = 0;
  for (let s = 0; s + 1 < bounds.length; s++) {
    const slice = recordsBetween(data, bounds[s], bounds[s + 1]);
    addInBatches(store, slice, random, 500);
    added += slice.length / RECORD_BYTES;
    expect(store.records).toBe(added);
    expect(store.heldRecords).toBe(added - bytesOf(out) / RECORD_BYTES);
    const mark = s + 2 === bounds.length ? c.finalMark : bounds[s + 1];
    const pieces = copyAll(store.sortedRunsBelow(mark));
    // Only records below the mark, and exactly those of the buckets wholly below it.
    for (const piece of pieces) expect(prefixAt(piece, piece.length - RECORD_BYTES)).toBeLessThan(mark);
    out.push(...pieces);
    const outRecords = bytesOf(out) / RECORD_BYTES;
    const boundary = drainedBoundary(c, buckets, mark);
    if (boundary !== null) expect(outRecords).toBe(countBelow(data, boundary));
    // Everything handed out so far is the sorted output's prefix: nothing twice, nothing skipped.
    expect(Buffer.concat(out).equals(reference.subarray(0, outRecords * RECORD_BYTES))).toBe(true);
    expect(store.records).toBe(added);
    expect(store.heldRecords).toBe(added - outRecords);
    // Drained chunks stay resident for the later buckets.
    expect(store.givenBackBytes).toBe(0);
  }
  expect(added).toBe(total);
  out.push(...copyAll(store.sortedRuns()));
  expect(Buffer.concat(out).equals(reference)).toBe(true);
  expect(store.records).toBe(total);
  expect(store.heldRecords).toBe(0);
  expect(store.heldBytes).toBe(0);
}

describe("BucketStore: draining below a mark while adds go on", () => {
  const narrow32 = 0x12345678;
  const cases: DrainCase[] = [
    {
      name: "a 4-peer bits range, 512 buckets in 8 groups",
      start: rangeStart(1, 4),
      end: rangeEnd(1, 4),
      expectedRecords: 2_700_000,
      count: 20_000,
      slices: 11,
      finalMark: rangeEnd(1, 4),
      evenBuckets: true,
    },
    {
      name: "the full range, 16 buckets, last mark 2^48",
      start: 0,
      end: 2 ** 48,
      expectedRecords: 20_000,
      count: 20_000,
      slices: 9,
      finalMark: 2 ** 48,
      evenBuckets: true,
    },
    {
      name: "a narrow range inside one 32-bit prefix (one bucket: nothing drains before the end)",
      start: narrow32 * P16 + 1000,
      end: narrow32 * P16 + 50_000,
      expectedRecords: 20_000,
      count: 15_000,
      slices: 8,
      finalMark: narrow32 * P16 + 50_000,
      evenBuckets: false,
      oneBucketEnd: (narrow32 + 1) * P16,
    },
    {
      name: "a 3-peer range (ends inside 32-bit prefixes), last mark past the range",
      start: rangeStart(1, 3),
      end: rangeEnd(1, 3),
      expectedRecords: 200_000,
      count: 20_000,
      slices: 10,
      finalMark: 2 ** 48,
      evenBuckets: false,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: drained prefix + sortedRuns equal a memcmp sort`, () => {
      checkDrainedRounds(c, c.slices * 1000 + c.count);
    });
  }
});

describe("BucketStore: draining, interleaved and at odd marks", () => {
  // A 4-peer range in 16 equal buckets sharing one group (expectedRecords 0).
  const start = rangeStart(1, 4);
  const end = rangeEnd(1, 4);
  const width = (end - start) / 16;
  const make = () => new BucketStore({ rangeStart: start, rangeEnd: end, expectedRecords: 0 });

  /** `count` records all on 48-bit prefix p, the rest of each record random. */
  const hotRecords = (random: () => number, count: number, p: number) => recordsIn(random, count, p, p + 1);

  test("adds above the mark between the pieces of a drain (splits included) still give the exact output", () => {
    const random = prng(61);
    const store = make();
    expect(store.buckets).toBe(16);
    expect(store.groups).toBe(1);
    // Bucket 1 and bucket 5 each hold one hot prefix, far above the split size: drained in many pieces.
    const sliceA = Buffer.concat([
      recordsIn(random, 4_000, start, start + 4 * width),
      hotRecords(random, 30_000, start + width + 12_345 * P16 + 7),
    ]);
    const mark1 = start + 4 * width + 999; // inside bucket 4: buckets 0-3 drain
    const sliceB = Buffer.concat([
      recordsIn(random, 12_000, mark1, start + 10 * width),
      hotRecords(random, 25_000, start + 5 * width + 77),
    ]);
    const mark2 = start + 10 * width; // a bucket edge: buckets 4-9 drain
    const sliceC = recordsIn(random, 20_000, mark2, end);
    const all = Buffer.concat([sliceA, sliceB, sliceC]);
    const reference = referenceSort(all);

    addInBatches(store, sliceA, random, 700);
    let added = sliceA.length / RECORD_BYTES;
    const out: Buffer[] = [];
    let outRecords = 0;
    /** Drain below `mark`, adding a random batch of `next` (all above the mark) after every piece. */
    const interleave = (mark: number, next: Uint8Array) => {
      let done = 0;
      const drain = store.sortedRunsBelow(mark);
      for (let step = drain.next(); !step.done; step = drain.next()) {
        out.push(Buffer.from(step.value));
        outRecords += step.value.length / RECORD_BYTES;
        expect(store.heldRecords).toBe(added - outRecords);
        const take = Math.min(next.length - done, ((random() * 300) | 0) * RECORD_BYTES);
        addInBatches(store, next.subarray(done, done + take), random, 120);
        done += take;
        added += take / RECORD_BYTES;
        expect(store.records).toBe(added);
      }
      addInBatches(store, next.subarray(done), random, 700);
      added += (next.length - done) / RECORD_BYTES;
      expect(done).toBeGreaterThan(0);
    };
    interleave(mark1, sliceB);
    expect(bytesOf(out)).toBe(countBelow(all, start + 4 * width) * RECORD_BYTES);
    interleave(mark2, sliceC);
    expect(bytesOf(out)).toBe(countBelow(all, mark2) * RECORD_BYTES);
    expect(out.length).toBeGreaterThan(100);
    expect(Buffer.concat(out).equals(reference.subarray(0, bytesOf(out)))).toBe(true);
    out.push(...copyAll(store.sortedRuns()));
    expect(Buffer.concat(out).equals(reference)).toBe(true);
    expect(store.records).toBe(all.length / RECORD_BYTES);
    expect(store.heldRecords).toBe(0);
  });

  test("a record for a drained bucket is an assertion naming the sorted part; outside the range, the old one", () => {
    const random = prng(62);
    const store = make();
    const mark = start + 3 * width + 5; // inside bucket 3: buckets 0-2 drain
    const edge = start + 3 * width;
    const first = recordsIn(random, 3_000, start, mark, [start, edge - 1, edge, mark - 1]);
    addInBatches(store, first, random, 400);
    const out = copyAll(store.sortedRunsBelow(mark));
    expect(bytesOf(out)).toBe(countBelow(first, edge) * RECORD_BYTES);
    const accepted: Uint8Array[] = [first];
    /** Add one record, through the aligned path or (odd offset) the staging copy. */
    const addOne = (p: number, offset: number) => {
      const buf = new Uint8Array(RECORD_BYTES + offset);
      buf.set(recordAt(p, 0x40 + offset), offset);
      store.add(buf, offset, RECORD_BYTES);
      accepted.push(buf.subarray(offset));
    };
    const below = [edge - 1, edge - P16, start, start + width + 5 * P16 + 3, start + 2 * width];
    for (const p of below) {
      for (const offset of [0, 1]) {
        expect(() => addOne(p, offset)).toThrow(/arrived after its part of the range was sorted/);
        expect(() => addOne(p, offset)).toThrow(`(below ${edge})`);
      }
    }
    for (const p of [start - 1, end, 0, 2 ** 48 - 1]) {
      for (const offset of [0, 3]) expect(() => addOne(p, offset)).toThrow(/outside this peer's range/);
    }
    // The undrained bucket holding the mark still takes records, below the mark too.
    for (const p of [edge, edge + 3, mark - 1, mark, end - 1]) {
      for (const offset of [0, 2]) expect(() => addOne(p, offset)).not.toThrow();
    }
    expect(store.records).toBe(first.length / RECORD_BYTES + 5 * 2);
    out.push(...copyAll(store.sortedRuns()));
    expect(Buffer.concat(out).equals(referenceSort(Buffer.concat(accepted)))).toBe(true);

    // Drained to the end of the whole key space: every record arrives too late, none is "outside".
    const full = new BucketStore({ rangeStart: 0, rangeEnd: 2 ** 48, expectedRecords: 0 });
    full.add(recordAt(5), 0, RECORD_BYTES);
    expect(copyAll(full.sortedRunsBelow(2 ** 48)).length).toBe(1);
    for (const p of [0, 2 ** 47, 2 ** 48 - 1]) {
      expect(() => full.add(recordAt(p), 0, RECORD_BYTES)).toThrow(/arrived after its part/);
    }
    expect(copyAll(full.sortedRuns()).length).toBe(0);
  });

  test("a mark inside a bucket drains only the buckets wholly below it; the rest comes later", () => {
    // Two layouts: one bucket per 32-bit prefix, and 16 wide buckets of a 4-peer range.
    const p32 = 1_000 * 16;
    const layouts = [
      { start: p32 * P16, end: (p32 + 16) * P16, width: P16 },
      { start, end, width },
    ];
    for (const [i, layout] of layouts.entries()) {
      const random = prng(63 + i);
      const store = new BucketStore({ rangeStart: layout.start, rangeEnd: layout.end, expectedRecords: 0 });
      expect(store.buckets).toBe(16);
      const edge = layout.start + 5 * layout.width; // bucket 5 starts here
      const mark = edge + Math.floor(layout.width / 3) + 7;
      const data = Buffer.concat([
        recordsIn(random, 8_000, layout.start, layout.end, [edge - 1, edge, mark - 1, mark]),
        recordsIn(random, 1_000, edge, mark), // below the mark, in the undrained bucket
      ]);
      const below = recordsBetween(data, layout.start, mark);
      addInBatches(store, below, random, 600);
      const out = copyAll(store.sortedRunsBelow(mark));
      const drained = bytesOf(out) / RECORD_BYTES;
      // Exactly the records below the bucket edge (counted here from the prefixes)...
      expect(drained).toBe(countBelow(data, edge));
      // ...so those below the mark but past the edge are still held, and come out at the end.
      const pending = countBelow(data, mark) - countBelow(data, edge);
      expect(pending).toBeGreaterThan(1_000);
      expect(store.heldRecords).toBe(pending);
      // The same mark again, or one still inside bucket 5, drains nothing more.
      expect(copyAll(store.sortedRunsBelow(mark)).length).toBe(0);
      expect(copyAll(store.sortedRunsBelow(edge + layout.width - 1)).length).toBe(0);
      addInBatches(store, recordsBetween(data, mark, layout.end), random, 600);
      const rest = copyAll(store.sortedRuns());
      const restRecords = bytesOf(rest) / RECORD_BYTES;
      expect(restRecords).toBe(data.length / RECORD_BYTES - drained);
      // The pending records below the mark lead the final runs.
      expect(prefixAt(rest[0], 0)).toBeGreaterThanOrEqual(edge);
      expect(Buffer.concat([...out, ...rest]).equals(referenceSort(data))).toBe(true);
    }
  });
});

describe("BucketStore: memory while draining", () => {
  test("drained groups' chunks stay resident and later groups reuse them: the pool does not grow", () => {
    // 64 buckets of one 32-bit prefix each, one bucket per group (16M records expected).
    const p32 = 64 * 1_000;
    const random = prng(71);
    const store = new BucketStore({
      rangeStart: p32 * P16,
      rangeEnd: (p32 + 64) * P16,
      expectedRecords: 16_000_000,
    });
    expect(store.buckets).toBe(64);
    expect(store.groups).toBe(64);
    const all: Uint8Array[] = [];
    const out: Buffer[] = [];
    let firstSlab = 0;
    for (let k = 0; k < 8; k++) {
      // Each slice fills 8 groups (one chunk each), which the drain then empties.
      const from = (p32 + 8 * k) * P16;
      const slice = recordsIn(random, 1_600, from, from + 8 * P16);
      all.push(slice);
      addInBatches(store, slice, random, 500);
      if (k === 0) firstSlab = store.slabBytes;
      expect(store.slabBytes).toBe(firstSlab);
      expect(store.heldBytes).toBe(8 * 2 ** 21);
      out.push(...copyAll(store.sortedRunsBelow(from + 8 * P16)));
      expect(store.givenBackBytes).toBe(0);
      expect(store.heldBytes).toBe(0);
    }
    expect(firstSlab).toBe(8 * 2 ** 21);
    expect(copyAll(store.sortedRuns()).length).toBe(0);
    expect(Buffer.concat(out).equals(referenceSort(Buffer.concat(all)))).toBe(true);
  });

  test("within one group, the blocks of drained buckets are reused by later buckets", () => {
    // 16 buckets of one 32-bit prefix each, all in one group; each slice needs ~10 of a chunk's 64 blocks.
    const p32 = 16 * 3_000;
    const random = prng(72);
    const store = new BucketStore({ rangeStart: p32 * P16, rangeEnd: (p32 + 16) * P16, expectedRecords: 0 });
    expect(store.buckets).toBe(16);
    expect(store.groups).toBe(1);
    const all: Uint8Array[] = [];
    const out: Buffer[] = [];
    for (let k = 0; k < 8; k++) {
      const from = (p32 + 2 * k) * P16;
      const slice = recordsIn(random, 3_000, from, from + 2 * P16);
      all.push(slice);
      addInBatches(store, slice, random, 500);
      expect(store.slabBytes).toBe(2 ** 21);
      out.push(...copyAll(store.sortedRunsBelow(from + 2 * P16)));
      expect(store.givenBackBytes).toBe(0);
    }
    expect(Buffer.concat(out).equals(referenceSort(Buffer.concat(all)))).toBe(true);
  });
});

describe("BucketStore: reset after a drain (the spill path)", () => {
  test("drain, sortedRuns, reset, more adds above the mark: those records come out sorted", () => {
    const start = rangeStart(2, 4);
    const end = rangeEnd(2, 4);
    const width = (end - start) / 16;
    const random = prng(81);
    const store = new BucketStore({ rangeStart: start, rangeEnd: end, expectedRecords: 0 });
    expect(store.buckets).toBe(16);
    const mark = start + 5 * width + 12_345;
    const edge = start + 5 * width;
    // Round one: drain below the mark, then the spill sorts the rest.
    const one = recordsIn(random, 10_000, start, end);
    addInBatches(store, recordsBetween(one, start, mark), random, 800);
    const drained = copyAll(store.sortedRunsBelow(mark));
    expect(bytesOf(drained)).toBe(countBelow(one, edge) * RECORD_BYTES);
    addInBatches(store, recordsBetween(one, mark, end), random, 800);
    const spilled = copyAll(store.sortedRuns());
    expect(Buffer.concat([...drained, ...spilled]).equals(referenceSort(one))).toBe(true);
    expect(store.heldBytes).toBe(0);
    store.reset();
    expect(store.records).toBe(0);
    expect(store.heldRecords).toBe(0);
    // Round two, in the same memory: records from the undrained part, another drain, the final runs.
    const slab = store.slabBytes;
    const two = recordsIn(random, 10_000, edge, end, [edge, end - 1]);
    const mark2 = start + 11 * width;
    addInBatches(store, recordsBetween(two, edge, mark2), random, 800);
    expect(store.records).toBe(countBelow(two, mark2));
    const out = copyAll(store.sortedRunsBelow(mark2));
    expect(bytesOf(out)).toBe(countBelow(two, mark2) * RECORD_BYTES);
    addInBatches(store, recordsBetween(two, mark2, end), random, 800);
    out.push(...copyAll(store.sortedRuns()));
    expect(Buffer.concat(out).equals(referenceSort(two))).toBe(true);
    expect(store.records).toBe(two.length / RECORD_BYTES);
    expect(store.heldRecords).toBe(0);
    expect(store.slabBytes).toBe(slab);
    // The drained part stays refused after a reset: its buckets are never sorted again.
    store.reset();
    expect(() => store.add(recordAt(edge - 1), 0, RECORD_BYTES)).toThrow(/arrived after its part/);
  });
});
