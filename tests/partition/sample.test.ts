import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetsortError } from "../../src/errors.ts";
import { sampleMaxRecords, sampleMinRecords } from "../../src/limits.ts";
import {
  chooseSplitters,
  drawSample,
  imbalanceMinRecords,
  imbalanceWarning,
  makeSplitterOwnerFn,
  type PeerSample,
  samplePlaces,
  sampleRange,
  sampleRecordsFor,
} from "../../src/partition/sample.ts";
import { BucketStore } from "../../src/sort/buckets.ts";
import { prng } from "../helpers.ts";
import { distributions, randomBytes, referenceSort } from "./distributions.ts";

const R = 100;
let dir = "";
let fileCount = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-sample-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeInput(data: Uint8Array): string {
  const path = join(dir, `input-${fileCount++}`);
  writeFileSync(path, data);
  return path;
}

/** Independent owner: a linear scan for the first splitter greater than the record. */
function referenceOwner(record: Uint8Array, splitters: Uint8Array, peers: number): number {
  for (let i = 0; i < peers - 1; i++) {
    if (Buffer.compare(record, splitters.subarray(i * R, i * R + R)) < 0) return i;
  }
  return peers - 1;
}

interface Simulation {
  inputs: Uint8Array[];
  splitters: Uint8Array;
  /** Each peer's received records, in input order. */
  shares: Uint8Array[];
}

/** Draw every peer's sample from a real file, choose splitters, route every record. */
function simulate(kind: string, sizes: number[]): Simulation {
  const peers = sizes.length;
  const inputs = sizes.map((n, p) => distributions[kind](n, p));
  const samples: PeerSample[] = inputs.map((data) => ({
    records: drawSample(writeInput(data), data.length, sampleRecordsFor(peers)),
    inputRecords: data.length / R,
  }));
  const splitters = chooseSplitters(samples, peers);
  expect(splitters.length).toBe((peers - 1) * R);
  // (c) every peer computes the same splitters from its own copy of the samples
  // (fresh buffers at odd offsets, as decoded from frames): tried as the first
  // and the last peer would (different offsets), since the function is pure.
  for (const p of [0, peers - 1]) {
    const copies = samples.map((s) => {
      const carrier = new Uint8Array(s.records.length + 3 + p);
      carrier.set(s.records, 3 + p);
      return { records: carrier.subarray(3 + p), inputRecords: s.inputRecords };
    });
    expect(Buffer.from(chooseSplitters(copies, peers)).equals(Buffer.from(splitters))).toBe(true);
  }
  const owner = makeSplitterOwnerFn(splitters, peers);
  const parts: number[][] = Array.from({ length: peers }, () => []);
  inputs.forEach((data, input) => {
    for (let o = 0; o < data.length; o += R) parts[owner(data, o)].push(o, input);
  });
  const shares = parts.map((list) => {
    const out = new Uint8Array((list.length / 2) * R);
    for (let i = 0; i < list.length; i += 2)
      out.set(inputs[list[i + 1]].subarray(list[i], list[i] + R), (i / 2) * R);
    return out;
  });
  return { inputs, splitters, shares };
}

/** (b) each peer's share sorted, concatenated in peer order, is the sorted union. */
function expectExactOutput(sim: Simulation): void {
  const total = sim.inputs.reduce((a, d) => a + d.length, 0);
  const union = new Uint8Array(total);
  let at = 0;
  for (const d of sim.inputs) {
    union.set(d, at);
    at += d.length;
  }
  const outputs = Buffer.concat(sim.shares.map(referenceSort));
  expect(outputs.length).toBe(total);
  expect(outputs.equals(referenceSort(union))).toBe(true);
}

function balance(sim: Simulation): number {
  const counts = sim.shares.map((s) => s.length / R);
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  return Math.max(...counts) / mean;
}

const layouts: Record<string, number[]> = {
  "4 x 20,000": [20_000, 20_000, 20_000, 20_000],
  "4 peers, one empty, one tiny": [30_000, 0, 27_000, 3],
  "8 x 12,000": Array.from({ length: 8 }, () => 12_000),
  "8 peers, empty and tiny among them": [15_000, 1, 16_000, 0, 14_000, 17_000, 7, 18_000],
};

describe("sample partitioning: balance, exact output, identical splitters", () => {
  for (const kind of Object.keys(distributions)) {
    for (const [name, sizes] of Object.entries(layouts)) {
      test(`${kind}, ${name}`, () => {
        const sim = simulate(kind, sizes);
        // Every record routed as the independent owner says.
        for (let p = 0; p < sizes.length; p++) {
          const share = sim.shares[p];
          for (let o = 0; o < share.length; o += R * 37) {
            expect(referenceOwner(share.subarray(o, o + R), sim.splitters, sizes.length)).toBe(p);
          }
        }
        expect(balance(sim)).toBeLessThanOrEqual(1.1);
        expectExactOutput(sim);
      });
    }
  }

  test("inputs far larger than their samples (4 x 150,000 records, samples of 2.7%) still balance within 1.10x", () => {
    for (const kind of ["ascii", "skewed", "fewDistinctKeys"]) {
      const peers = 4;
      const inputs = [0, 1, 2, 3].map((p) => distributions[kind](150_000, p));
      const samples = inputs.map((data) => ({
        records: drawSample(writeInput(data), data.length, sampleRecordsFor(peers)),
        inputRecords: data.length / R,
      }));
      expect(samples[0].records.length).toBe(sampleMaxRecords * R);
      const owner = makeSplitterOwnerFn(chooseSplitters(samples, peers), peers);
      const counts = new Array<number>(peers).fill(0);
      for (const data of inputs) for (let o = 0; o < data.length; o += R) counts[owner(data, o)]++;
      expect(Math.max(...counts) / (600_000 / peers)).toBeLessThanOrEqual(1.1);
    }
  });

  test("identical records cannot be split: still exact, all of them on one peer", () => {
    const sizes = [3000, 2000, 0, 1000];
    const record = randomBytes(1, 9);
    const inputs = sizes.map((n) => {
      const d = new Uint8Array(n * R);
      for (let o = 0; o < d.length; o += R) d.set(record, o);
      return d;
    });
    const samples = inputs.map((d) => ({
      records: drawSample(writeInput(d), d.length, 100),
      inputRecords: d.length / R,
    }));
    const splitters = chooseSplitters(samples, 4);
    const owner = makeSplitterOwnerFn(splitters, 4);
    const owners = new Set<number>();
    for (const d of inputs) for (let o = 0; o < d.length; o += R) owners.add(owner(d, o));
    expect(owners.size).toBe(1);
  });

  test("no records anywhere: splitters still come out (the bits boundaries), every peer agrees", () => {
    const samples = [0, 0, 0].map(() => ({ records: new Uint8Array(0), inputRecords: 0 }));
    const s = chooseSplitters(samples, 3);
    expect(s.length).toBe(2 * R);
    expect(Buffer.from(chooseSplitters(samples, 3)).equals(Buffer.from(s))).toBe(true);
    // A record that would be peer 1's in bits mode (first byte 0x80 of 3 peers) is peer 1's here.
    const r = new Uint8Array(R).fill(0x80);
    expect(makeSplitterOwnerFn(s, 3)(r, 0)).toBe(1);
  });

  test("one peer: no splitters, everything is its own", () => {
    const data = randomBytes(10, 1);
    const s = chooseSplitters([{ records: data, inputRecords: 10 }], 1);
    expect(s.length).toBe(0);
    expect(makeSplitterOwnerFn(s, 1)(data, 500)).toBe(0);
    expect(sampleRange(s, 0, 1)).toEqual({ rangeStart: 0, rangeEnd: 2 ** 48 });
  });

  test("a big input outweighs a small one with the same sample size (weights by input size)", () => {
    // Peer 0: 40,000 records with first byte < 0x80; peer 1: 4,096 records with first byte >= 0x80.
    const low = randomBytes(40_000, 11);
    for (let o = 0; o < low.length; o += R) low[o] &= 0x7f;
    const high = randomBytes(4096, 12);
    for (let o = 0; o < high.length; o += R) high[o] |= 0x80;
    const samples = [low, high].map((d) => ({
      records: drawSample(writeInput(d), d.length, 4096),
      inputRecords: d.length / R,
    }));
    const s = chooseSplitters(samples, 2);
    // Unweighted, the median would sit at the 0x80 boundary; weighted, 22,048 of
    // 44,096 records lie below it: inside the low half, near 0x80 * 22048/40000.
    expect(s[0]).toBeLessThan(0x80);
    expect(Math.abs(s[0] - 0x80 * (22_048 / 40_000))).toBeLessThan(4);
  });

  test("malformed samples are refused naming the peer", () => {
    const ok = { records: randomBytes(2, 1), inputRecords: 5 };
    expect(() => chooseSplitters([ok, { records: new Uint8Array(150), inputRecords: 5 }], 2)).toThrow(
      "peer 1's sample is 150 bytes",
    );
    expect(() => chooseSplitters([{ records: randomBytes(3, 2), inputRecords: 2 }, ok], 2)).toThrow(
      "peer 0 reports 2 input records for a sample of 3",
    );
    expect(() => chooseSplitters([ok, { records: new Uint8Array(0), inputRecords: 9 }], 2)).toThrow(
      NetsortError,
    );
    expect(() => chooseSplitters([ok], 2)).toThrow("1 samples for 2 peers");
  });
});

describe("drawSample", () => {
  test("empty and tiny inputs come back whole", () => {
    expect(drawSample(writeInput(new Uint8Array(0)), 0, 4096).length).toBe(0);
    const tiny = randomBytes(3, 5);
    expect(Buffer.from(drawSample(writeInput(tiny), tiny.length, 4096)).equals(Buffer.from(tiny))).toBe(true);
    const exact = randomBytes(64, 6);
    expect(Buffer.from(drawSample(writeInput(exact), exact.length, 64)).equals(Buffer.from(exact))).toBe(
      true,
    );
  });

  test("runs of consecutive records at evenly spaced places, first at the start, last at the end; deterministic", () => {
    const n = 100_000;
    // Record i holds i in its first 4 bytes, so the sample tells where it was read.
    const data = new Uint8Array(n * R);
    const view = new DataView(data.buffer);
    for (let i = 0; i < n; i++) view.setUint32(i * R, i);
    const path = writeInput(data);
    const sample = drawSample(path, data.length, 4096);
    const run = Math.floor(4096 / samplePlaces);
    expect(sample.length).toBe(samplePlaces * run * R);
    const at = (k: number) => new DataView(sample.buffer).getUint32(k * R);
    expect(at(0)).toBe(0);
    expect(at(sample.length / R - 1)).toBe(n - 1);
    let previousStart = -1;
    for (let p = 0; p < samplePlaces; p++) {
      const start = at(p * run);
      for (let k = 1; k < run; k++) expect(at(p * run + k)).toBe(start + k);
      // Evenly spaced: consecutive places are (n - run) / (places - 1) apart, give or take one.
      if (p > 0)
        expect(Math.abs(start - previousStart - (n - run) / (samplePlaces - 1))).toBeLessThanOrEqual(1);
      previousStart = start;
    }
    expect(Buffer.from(drawSample(path, data.length, 4096)).equals(Buffer.from(sample))).toBe(true);
  });

  test("few records wanted: at most maxRecords, one per place", () => {
    const data = randomBytes(1000, 8);
    const sample = drawSample(writeInput(data), data.length, 10);
    expect(sample.length).toBe(10 * R);
    expect(Buffer.from(sample.subarray(0, R)).equals(Buffer.from(data.subarray(0, R)))).toBe(true);
    expect(Buffer.from(sample.subarray(9 * R)).equals(Buffer.from(data.subarray(999 * R)))).toBe(true);
  });

  test("a missing or shrunken file fails naming it", () => {
    expect(() => drawSample(join(dir, "nope"), 1000, 10)).toThrow(`input ${join(dir, "nope")}: cannot open`);
    const path = writeInput(randomBytes(5, 1));
    expect(() => drawSample(path, 5000, 10)).toThrow(`input ${path}: ended at byte`);
  });

  test("sample sizes per cluster size stay within their bounds", () => {
    expect(sampleRecordsFor(1)).toBe(sampleMaxRecords);
    expect(sampleRecordsFor(16)).toBe(sampleMaxRecords);
    expect(sampleRecordsFor(64)).toBe(1024);
    expect(sampleRecordsFor(1024)).toBe(sampleMinRecords);
  });
});

describe("routing by splitters", () => {
  test("matches a linear-scan reference, including records equal to a splitter or sharing its first 8 bytes", () => {
    const peers = 7;
    const random = prng(42);
    const splitterList = referenceSort(randomBytes(peers - 1, 3));
    // Two splitters that share their first 8 bytes, and one equal pair.
    splitterList.copy(splitterList, 2 * R, 1 * R, 1 * R + 8);
    splitterList.copy(splitterList, 5 * R, 4 * R, 5 * R);
    const splitters = referenceSort(splitterList);
    const owner = makeSplitterOwnerFn(splitters, peers);
    const records = randomBytes(5000, 4);
    for (let o = 0; o < records.length; o += R) {
      const pick = Math.floor(random() * 4);
      const s = Math.floor(random() * (peers - 1)) * R;
      if (pick === 1) records.set(splitters.subarray(s, s + R), o); // equal to a splitter
      if (pick === 2) records.set(splitters.subarray(s, s + 1 + Math.floor(random() * 99)), o); // shared prefix
      if (pick === 3) records[o + 99] = 0;
    }
    for (let o = 0; o < records.length; o += R) {
      expect(owner(records, o)).toBe(referenceOwner(records.subarray(o, o + R), splitters, peers));
    }
    // A record equal to splitter i goes to peer i + 1.
    expect(owner(splitters, 0)).toBe(1);
    expect(owner(splitters, 4 * R)).toBe(6);
  });

  test("splitters out of order are a bug", () => {
    const s = referenceSort(randomBytes(2, 1));
    const swapped = Buffer.concat([s.subarray(R), s.subarray(0, R)]);
    expect(() => makeSplitterOwnerFn(swapped, 3)).toThrow("splitters ascend");
  });
});

describe("sampleRange and the BucketStore", () => {
  test("covers every record the peer receives, at both ends' prefixes", () => {
    const peers = 4;
    const prefix = (hex: string) => Buffer.from(hex.padEnd(2 * R, "0"), "hex");
    const splitters = Buffer.concat([prefix("102030405060ff"), prefix("1020304050607f"), prefix("a0")]);
    expect(sampleRange(splitters, 0, peers)).toEqual({ rangeStart: 0, rangeEnd: 0x102030405060 + 1 });
    // Peer 1 gets [s0, s1): both share the prefix 102030405060.
    expect(sampleRange(splitters, 1, peers)).toEqual({
      rangeStart: 0x102030405060,
      rangeEnd: 0x102030405060 + 1,
    });
    expect(sampleRange(splitters, 2, peers)).toEqual({
      rangeStart: 0x102030405060,
      rangeEnd: 0xa00000000000 + 1,
    });
    expect(sampleRange(splitters, 3, peers)).toEqual({ rangeStart: 0xa00000000000, rangeEnd: 2 ** 48 });
  });

  /** Each peer's share through a BucketStore on its sampleRange equals the reference sort of it. */
  function expectStoresSort(sim: Simulation): void {
    const peers = sim.shares.length;
    for (let p = 0; p < peers; p++) {
      const share = sim.shares[p];
      const store = new BucketStore({
        ...sampleRange(sim.splitters, p, peers),
        expectedRecords: share.length / R,
      });
      for (let o = 0; o < share.length; o += 700 * R)
        store.add(share, o, Math.min(700 * R, share.length - o));
      const runs: Buffer[] = [];
      for (const run of store.sortedRuns()) runs.push(Buffer.from(run));
      expect(Buffer.concat(runs).equals(referenceSort(share))).toBe(true);
    }
  }

  for (const kind of ["allEqualKeys", "fewDistinctKeys", "ascii", "skewed", "oneHotPrefix"]) {
    test(`${kind}: each peer's BucketStore output is its share sorted by the whole record`, () => {
      const sim = simulate(kind, [20_000, 0, 20_000, 5]);
      if (kind === "allEqualKeys") {
        // The middle peers' ranges are one prefix wide.
        const r = sampleRange(sim.splitters, 1, 4);
        expect(r.rangeEnd - r.rangeStart).toBe(1);
      }
      expectStoresSort(sim);
    });
  }

  test("one prefix, many records (lists split past the run size), and very uneven buckets", () => {
    // 60,000 records with one key: more than one sort run, so the store splits its one bucket.
    const sim = simulate("allEqualKeys", [30_000, 30_000]);
    expectStoresSort(sim);
    // A wide range where nearly everything lands in one bucket.
    const data = randomBytes(50_000, 77);
    for (let o = 0; o < data.length - 100 * R; o += R) data.set([0x80, 1, 2, 3, 4, 5, 6], o);
    const store = new BucketStore({ rangeStart: 0, rangeEnd: 2 ** 48, expectedRecords: 50_000 });
    store.add(data, 0, data.length);
    const runs: Buffer[] = [];
    for (const run of store.sortedRuns()) runs.push(Buffer.from(run));
    expect(Buffer.concat(runs).equals(referenceSort(data))).toBe(true);
  });
});

describe("imbalanceWarning", () => {
  test("silent up to 1.5x the fair share, and for small shares", () => {
    expect(imbalanceWarning(150_000, 400_000, 4)).toBeNull(); // exactly 1.5x
    expect(imbalanceWarning(100_000, 400_000, 4)).toBeNull();
    expect(imbalanceWarning(imbalanceMinRecords - 1, imbalanceMinRecords, 4)).toBeNull(); // all of it, but tiny
    expect(imbalanceWarning(400_000, 400_000, 1)).toBeNull();
    expect(imbalanceWarning(0, 0, 4)).toBeNull();
  });

  test("one line naming the share and suggesting --partition sample above it", () => {
    const w = imbalanceWarning(370_000, 400_000, 4);
    expect(w).not.toBeNull();
    expect(w).toContain("370000 of 400000 records (92.5%, 3.7x its fair share of 100000)");
    expect(w).toContain("--partition sample");
    expect(w).not.toContain("\n");
    expect(imbalanceWarning(150_001, 400_000, 4)).not.toBeNull();
  });
});
