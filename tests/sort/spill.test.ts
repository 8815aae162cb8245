import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetsortError, UsageError } from "../../src/errors.ts";
import { busyKeepAliveMs } from "../../src/limits.ts";
import { RECORD_BYTES, rangeEnd, rangeStart } from "../../src/record.ts";
import { BucketStore } from "../../src/sort/buckets.ts";
import {
  maxMergeFanIn,
  maxSpillRunBytes,
  minimumStoreBytes,
  minMergeFanIn,
  type SpillEvent,
  SpillingStore,
  type SpillingStoreOptions,
} from "../../src/sort/spill.ts";
import { prng } from "../helpers.ts";

const MB = 1024 * 1024;
/** Sorting tens of MB a few times over: generous, for a loaded 2-core machine. */
const heavyTimeoutMs = 120_000;
const root = mkdtempSync(join(tmpdir(), "netsort-spill-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
/** A fresh, empty temp dir per test, so "nothing left behind" is checkable. */
function freshDir(): string {
  const dir = join(root, `t${dirs++}`);
  mkdirSync(dir);
  return dir;
}

type Shape = "uniform" | "skewed" | "equalKeys";

/** `count` records owned by `peer` of `peers`: uniform, 90% on one 48-bit prefix, or all with one key. */
function makeRecords(seed: number, count: number, peer: number, peers: number, shape: Shape): Uint8Array {
  const random = prng(seed);
  const start = rangeStart(peer, peers);
  const width = rangeEnd(peer, peers) - start;
  const hot = start + Math.floor(random() * width);
  const data = new Uint8Array(count * RECORD_BYTES);
  const words = new Uint32Array(data.buffer);
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32;
  for (let r = 0; r < count; r++) {
    const o = r * RECORD_BYTES;
    const p = shape === "uniform" || random() >= 0.9 ? start + Math.floor(random() * width) : hot;
    const hi = Math.floor(p / 2 ** 24);
    const lo = p % 2 ** 24;
    data.set([hi >>> 16, (hi >>> 8) & 0xff, hi & 0xff, lo >>> 16, (lo >>> 8) & 0xff, lo & 0xff], o);
    if (shape === "equalKeys") data.fill(0x5a, o + 6, o + 10);
  }
  return data;
}

/** Add in network-sized batches (256,000 B, like the mesh's frames). */
function addAll(
  store: { add(buf: Uint8Array, offset: number, length: number): void },
  data: Uint8Array,
): void {
  const batch = 2560 * RECORD_BYTES;
  for (let o = 0; o < data.length; o += batch) store.add(data, o, Math.min(batch, data.length - o));
}

function drain(chunks: Iterable<Uint8Array>): Buffer {
  const out: Buffer[] = [];
  for (const chunk of chunks) out.push(Buffer.from(chunk));
  return Buffer.concat(out);
}

/** Today's path: the whole share in one BucketStore. */
function inMemory(data: Uint8Array, peer: number, peers: number): Buffer {
  const store = new BucketStore({
    rangeStart: rangeStart(peer, peers),
    rangeEnd: rangeEnd(peer, peers),
    expectedRecords: data.length / RECORD_BYTES,
  });
  addAll(store, data);
  return drain(store.sortedRuns());
}

function spilling(
  data: Uint8Array,
  peer: number,
  peers: number,
  options: Partial<SpillingStoreOptions>,
): { sorted: Buffer; store: SpillingStore; dir: string } {
  const dir = options.tempDir ?? freshDir();
  const store = new SpillingStore({
    rangeStart: rangeStart(peer, peers),
    rangeEnd: rangeEnd(peer, peers),
    expectedRecords: data.length / RECORD_BYTES,
    budgetBytes: minimumStoreBytes(),
    tempDir: dir,
    ...options,
  });
  addAll(store, data);
  expect(store.records).toBe(data.length / RECORD_BYTES);
  const sorted = drain(store.sortedChunks());
  expect(readdirSync(dir)).toEqual([]);
  return { sorted, store, dir };
}

describe("SpillingStore: byte-identical to the in-memory sort", () => {
  const min = minimumStoreBytes();
  for (const [shape, peer, peers] of [
    ["uniform", 0, 1],
    ["skewed", 2, 4],
    ["equalKeys", 1, 3],
  ] as const) {
    test(
      `${shape} keys (peer ${peer} of ${peers}), budgets of 1x, 1.25x and 1.5x the minimum`,
      () => {
        const data = makeRecords(peers * 10 + peer, 250_000, peer, peers, shape); // 25 MB
        const expected = inMemory(data, peer, peers);
        expect(expected.length).toBe(data.length);
        for (const budgetBytes of [min, Math.floor(1.25 * min), Math.floor(1.5 * min)]) {
          const { sorted, store } = spilling(data, peer, peers, { budgetBytes });
          const f = store.figures;
          expect(f.spills).toBeGreaterThanOrEqual(1);
          expect(f.mergePasses).toBeGreaterThanOrEqual(1);
          expect(f.spilledBytes).toBeGreaterThanOrEqual(f.spills * RECORD_BYTES);
          expect(sorted.equals(expected)).toBe(true);
          // Held memory (chunks counted whole, plus sort and merge buffers) stays within the budget.
          expect(f.peakHeldBytes).toBeLessThanOrEqual(budgetBytes);
          expect(f.peakHeldBytes).toBeGreaterThan(budgetBytes / 3);
        }
      },
      heavyTimeoutMs,
    );
  }

  /** Far more expected than the budget holds: runs of at most maxRunBytes from the start. */
  const planned = { budgetBytes: 64 * MB, maxRunBytes: 6 * MB, expectedRecords: 10_000_000 };

  test(
    "more runs than the fan-in: intermediate merges, still identical",
    () => {
      const data = makeRecords(77, 150_000, 0, 1, "uniform");
      const expected = inMemory(data, 0, 1);
      const fits = spilling(data, 0, 1, { ...planned, fanIn: 16 });
      expect(fits.store.figures.mergePasses).toBe(1);
      expect(fits.sorted.equals(expected)).toBe(true);
      for (const fanIn of [2, 3]) {
        const { sorted, store } = spilling(data, 0, 1, { ...planned, fanIn });
        const f = store.figures;
        expect(f.spills).toBeGreaterThan(fanIn);
        expect(f.mergePasses).toBeGreaterThanOrEqual(2);
        expect(f.runs).toBe(f.spills + f.mergePasses - 1);
        expect(f.spilledBytes).toBeGreaterThan(data.length);
        expect(sorted.equals(expected)).toBe(true);
      }
    },
    heavyTimeoutMs,
  );

  test(
    "a share that fits never touches the disk: the store's own runs, unchanged, whatever maxRunBytes says",
    () => {
      const data = makeRecords(5, 200_000, 1, 2, "uniform"); // 20 MB: more than maxRunBytes, less than the budget
      const options = { rangeStart: rangeStart(1, 2), rangeEnd: rangeEnd(1, 2), expectedRecords: 200_000 };
      const store = new SpillingStore({
        ...options,
        budgetBytes: 64 * MB,
        maxRunBytes: 6 * MB,
        tempDir: freshDir(),
      });
      expect(store.plannedSpill).toBe(false);
      addAll(store, data);
      const plain = new BucketStore(options);
      addAll(plain, data);
      const ours = Array.from(store.sortedChunks(), (c) => Buffer.from(c));
      const theirs = Array.from(plain.sortedRuns(), (c) => Buffer.from(c));
      // The same pieces: the in-memory store's own runs, neither merged nor re-cut.
      expect(ours.map((c) => c.length)).toEqual(theirs.map((c) => c.length));
      expect(Buffer.concat(ours).equals(Buffer.concat(theirs))).toBe(true);
      const f = store.figures;
      expect([f.spills, f.runs, f.spilledBytes, f.mergePasses, f.mergedBytes]).toEqual([0, 0, 0, 0, 0]);
    },
    heavyTimeoutMs,
  );

  test(
    "a share far bigger than expected (skew) spills at the budget, still identical and within it",
    () => {
      const data = makeRecords(12, 250_000, 0, 4, "skewed");
      const budgetBytes = Math.floor(1.25 * minimumStoreBytes());
      const { sorted, store } = spilling(data, 0, 4, { budgetBytes, expectedRecords: 1_000 });
      expect(store.plannedSpill).toBe(false);
      const f = store.figures;
      expect(f.spills).toBeGreaterThanOrEqual(1);
      expect(f.peakHeldBytes).toBeLessThanOrEqual(budgetBytes);
      expect(sorted.equals(inMemory(data, 0, 4))).toBe(true);
    },
    heavyTimeoutMs,
  );

  test(
    "a share that outgrows its estimate but fits the budget spills nothing; past the budget, capped runs",
    () => {
      const data = makeRecords(13, 250_000, 0, 1, "uniform"); // 25 MB, 5 MB expected
      const fits = spilling(data, 0, 1, {
        budgetBytes: 64 * MB,
        maxRunBytes: 6 * MB,
        expectedRecords: 50_000,
      });
      expect(fits.store.plannedSpill).toBe(false);
      // 5x the estimate, still inside the budget: the in-memory path, no disk.
      expect(fits.store.figures.spills).toBe(0);
      expect(fits.sorted.equals(inMemory(data, 0, 1))).toBe(true);
      const runs: number[] = [];
      const tight = spilling(data, 0, 1, {
        budgetBytes: Math.floor(1.25 * minimumStoreBytes()),
        maxRunBytes: 6 * MB,
        expectedRecords: 50_000,
        onSpill: (spill) => runs.push(spill.bytes),
      });
      // Past the budget: the first run holds what the budget held, then runs are capped.
      expect(runs.length).toBeGreaterThanOrEqual(2);
      for (const bytes of runs.slice(1)) expect(bytes).toBeLessThanOrEqual(6 * MB);
      expect(tight.store.figures.peakHeldBytes).toBeLessThanOrEqual(Math.floor(1.25 * minimumStoreBytes()));
      expect(tight.sorted.equals(inMemory(data, 0, 1))).toBe(true);
    },
    heavyTimeoutMs,
  );

  test(
    "whatever the budget, a batch bigger than a run is split, not held whole",
    () => {
      const data = makeRecords(6, 100_000, 0, 1, "uniform");
      const dir = freshDir();
      const store = new SpillingStore({
        rangeStart: 0,
        rangeEnd: 2 ** 48,
        expectedRecords: 100_000,
        budgetBytes: minimumStoreBytes(),
        maxRunBytes: 6 * MB,
        tempDir: dir,
      });
      store.add(data, 0, data.length); // one 10 MB add
      expect(store.figures.spills).toBeGreaterThanOrEqual(3);
      expect(drain(store.sortedChunks()).equals(inMemory(data, 0, 1))).toBe(true);
    },
    heavyTimeoutMs,
  );
});

/** Descriptors of this process open on files in `dir` (unnamed files show as "<dir>/#<inode> (deleted)"). */
function openIn(dir: string): number {
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
    } catch {
      return false;
    }
  }).length;
}

/** Scratch files are closed on the thread pool: wait at most this long for their descriptors to go. */
const closeBoundMs = 5_000;

async function closedSoon(dir: string): Promise<void> {
  const endMs = performance.now() + closeBoundMs;
  while (openIn(dir) > 0) {
    if (performance.now() > endMs)
      throw new Error(`${openIn(dir)} scratch files in ${dir} still open after ${closeBoundMs} ms`);
    await Bun.sleep(5);
  }
}

describe("SpillingStore: onBusy", () => {
  test(
    "a spill calls onBusy while it sorts and writes, no more often than busyKeepAliveMs",
    () => {
      // Skewed keys past a budget they were not expected to fill: the first run is
      // everything held, mostly one list that is split before it can be written.
      const data = makeRecords(21, 250_000, 0, 1, "skewed");
      const busyAtMs: number[] = [];
      const spillEndsAtCall: number[] = [];
      const { store, sorted } = spilling(data, 0, 1, {
        budgetBytes: Math.floor(1.25 * minimumStoreBytes()),
        maxRunBytes: 6 * MB,
        expectedRecords: 50_000,
        onBusy: () => busyAtMs.push(performance.now()),
        onSpill: () => spillEndsAtCall.push(busyAtMs.length),
      });
      expect(store.plannedSpill).toBe(false);
      expect(sorted.equals(inMemory(data, 0, 1))).toBe(true);
      expect(spillEndsAtCall.length).toBeGreaterThanOrEqual(2);
      // Sorting happens only in spills and at the end: calls before the first
      // spill ended came from inside it.
      expect(spillEndsAtCall[0]).toBeGreaterThanOrEqual(1);
      // Stamped inside onBusy, a moment after the limiter read its own clock:
      // a gap can look up to that moment shorter (1 ms is far more than it takes).
      for (let i = 1; i < busyAtMs.length; i++) {
        expect(busyAtMs[i] - busyAtMs[i - 1]).toBeGreaterThanOrEqual(busyKeepAliveMs - 1);
      }
    },
    heavyTimeoutMs,
  );
});

describe("SpillingStore: sizes", () => {
  test("any budget from the minimum up is accepted, with a fan-in within bounds and the run cap kept", () => {
    const dir = freshDir();
    const min = minimumStoreBytes();
    for (let budgetBytes = min; budgetBytes < 8 * 1024 * MB; budgetBytes = Math.ceil(budgetBytes * 1.37)) {
      const store = new SpillingStore({
        rangeStart: 0,
        rangeEnd: 2 ** 48,
        expectedRecords: 1e9, // 100 GB: spilling planned
        budgetBytes,
        tempDir: dir,
      });
      const f = store.figures;
      expect(f.fanIn).toBeGreaterThanOrEqual(minMergeFanIn);
      expect(f.fanIn).toBeLessThanOrEqual(maxMergeFanIn);
      expect(f.runLimitBytes).toBeLessThanOrEqual(maxSpillRunBytes);
      expect(f.runLimitBytes).toBeLessThan(budgetBytes);
    }
    expect(
      () =>
        new SpillingStore({
          rangeStart: 0,
          rangeEnd: 1,
          expectedRecords: 0,
          budgetBytes: min - 1,
          tempDir: dir,
        }),
    ).toThrow("assertion failed");
  });
});

describe("SpillingStore: nothing left behind", () => {
  test.skipIf(process.platform !== "linux")(
    "the scratch files are closed when the merge ends, is abandoned, or close() is called",
    async () => {
      const data = makeRecords(14, 60_000, 0, 1, "uniform");
      const options = {
        budgetBytes: 64 * MB,
        maxRunBytes: 6 * MB,
        expectedRecords: 10_000_000,
        rangeStart: 0,
      };
      for (const ending of ["end", "return", "close"] as const) {
        const dir = freshDir();
        const store = new SpillingStore({ ...options, rangeEnd: 2 ** 48, tempDir: dir }); // runs from the start
        addAll(store, data);
        expect(store.figures.spills).toBeGreaterThanOrEqual(2);
        expect(openIn(dir)).toBe(store.figures.spills);
        const chunks = store.sortedChunks();
        expect(chunks.next().done).toBe(false);
        if (ending === "end") for (const _ of chunks);
        if (ending === "return") chunks.return(undefined);
        if (ending === "close") store.close();
        // Closed on the thread pool (ScratchFile.close): soon, not at once.
        await closedSoon(dir);
        expect(readdirSync(dir)).toEqual([]);
      }
    },
    heavyTimeoutMs,
  );

  test("a missing temp dir is a usage error naming it", () => {
    const missing = join(root, "no-such-dir");
    const make = () =>
      new SpillingStore({
        rangeStart: 0,
        rangeEnd: 2 ** 48,
        expectedRecords: 0,
        budgetBytes: minimumStoreBytes(),
        tempDir: missing,
      });
    expect(make).toThrow(UsageError);
    expect(make).toThrow(missing);
  });

  test(
    "a process SIGKILLed while spilling leaves no file in the temp dir",
    async () => {
      const dir = freshDir();
      const child = Bun.spawn([process.execPath, join(import.meta.dir, "spill-child.ts"), dir], {
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        const reader = child.stdout.getReader();
        let text = "";
        while (!text.includes("spilled 2")) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`child ended early: ${await new Response(child.stderr).text()}`);
          text += new TextDecoder().decode(value);
        }
        // It holds its runs open while it fills the next one: files that exist, in that directory.
        const fds = readdirSync(`/proc/${child.pid}/fd`).map((fd) => {
          try {
            return readlinkSync(`/proc/${child.pid}/fd/${fd}`);
          } catch {
            return "";
          }
        });
        expect(fds.filter((target) => target.startsWith(dir)).length).toBeGreaterThanOrEqual(2);
        expect(readdirSync(dir)).toEqual([]);
        child.kill("SIGKILL");
        await child.exited;
        expect(child.signalCode).toBe("SIGKILL");
        expect(readdirSync(dir)).toEqual([]);
      } finally {
        child.kill("SIGKILL");
      }
    },
    { timeout: 60_000 },
  );

  const isRoot = process.getuid?.() === 0;
  test.skipIf(!isRoot || process.platform !== "linux")(
    "a full temp dir (1 MiB tmpfs) is a NetsortError naming it, and closing frees the space (needs root for mount)",
    async () => {
      const dir = freshDir();
      const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
      expect(mount.exitCode).toBe(0);
      try {
        const freeBefore = statfsSync(dir).bfree;
        const store = new SpillingStore({
          rangeStart: 0,
          rangeEnd: 2 ** 48,
          expectedRecords: 100_000,
          budgetBytes: minimumStoreBytes(),
          tempDir: dir,
        });
        const data = makeRecords(9, 100_000, 0, 1, "uniform");
        let error: unknown = null;
        try {
          addAll(store, data);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(NetsortError);
        expect(error).not.toBeInstanceOf(UsageError);
        expect((error as Error).message).toContain(`temp dir ${dir}`);
        expect((error as Error).message).toContain("no space left on device");
        expect(statfsSync(dir).bfree).toBeLessThan(freeBefore);
        store.close();
        expect(readdirSync(dir)).toEqual([]);
        // Closed on the thread pool: the space comes back once that close has run.
        const endMs = performance.now() + closeBoundMs;
        while (statfsSync(dir).bfree < freeBefore && performance.now() < endMs) await Bun.sleep(5);
        expect(statfsSync(dir).bfree).toBe(freeBefore);
      } finally {
        await closedSoon(dir); // a busy tmpfs cannot be unmounted
        Bun.spawnSync(["umount", dir]);
      }
    },
    { timeout: 60_000 },
  );
});

// ---------------------------------------------------------------------------
// Draining early (key-range rounds): sortedChunksBelow(mark) while adds go on.
// ---------------------------------------------------------------------------

const P16 = 2 ** 16;

/** The 48-bit prefix of the record at `o` (first 6 key bytes, big-endian), computed here, not by src/. */
function prefixAt(data: Uint8Array, o: number): number {
  let p = 0;
  for (let i = 0; i < 6; i++) p = p * 256 + data[o + i];
  return p;
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

/** Independent reference: whole records compared with Buffer.compare (memcmp). */
function referenceSort(data: Uint8Array): Buffer {
  const records: Buffer[] = [];
  for (let o = 0; o < data.length; o += RECORD_BYTES)
    records.push(Buffer.from(data.subarray(o, o + RECORD_BYTES)));
  records.sort(Buffer.compare);
  return Buffer.concat(records, data.length);
}

interface DrainedRun {
  sorted: Buffer;
  /** Records handed out by sortedChunksBelow. */
  drained: number;
  /** Each spill, with the records added and drained before the add that caused it. */
  spills: { event: SpillEvent; addedBefore: number; drainedBefore: number }[];
  store: SpillingStore;
  /** Records held when sortedChunks() began. */
  heldAtEnd: number;
}

/**
 * Key-range rounds through a SpillingStore: the records of each slice
 * [bounds[s], bounds[s+1]) are added in mesh-sized batches, then
 * sortedChunksBelow(bounds[s+1]); at the end sortedChunks(). Checks the
 * counts at every step and that the drained part is the reference's prefix.
 */
function drainedRounds(
  data: Uint8Array,
  bounds: number[],
  options: Omit<SpillingStoreOptions, "tempDir" | "onSpill">,
): DrainedRun {
  const reference = referenceSort(data);
  const dir = freshDir();
  let added = 0;
  let drained = 0;
  const spills: DrainedRun["spills"] = [];
  const store = new SpillingStore({
    ...options,
    tempDir: dir,
    onSpill: (event) => spills.push({ event, addedBefore: added, drainedBefore: drained }),
  });
  const out: Buffer[] = [];
  const batch = 2560 * RECORD_BYTES;
  for (let s = 0; s + 1 < bounds.length; s++) {
    const slice = recordsBetween(data, bounds[s], bounds[s + 1]);
    for (let o = 0; o < slice.length; o += batch) {
      const length = Math.min(batch, slice.length - o);
      store.add(slice, o, length);
      added += length / RECORD_BYTES;
      expect(store.records).toBe(added);
    }
    const spilledBefore = spills.length > 0;
    const pieces = Array.from(store.sortedChunksBelow(bounds[s + 1]), (c) => Buffer.from(c));
    // After a spill the merge gives the rest: nothing drains early any more.
    if (spilledBefore) expect(pieces.length).toBe(0);
    for (const piece of pieces) {
      expect(piece.length % RECORD_BYTES).toBe(0);
      expect(prefixAt(piece, piece.length - RECORD_BYTES)).toBeLessThan(bounds[s + 1]);
      out.push(piece);
      drained += piece.length / RECORD_BYTES;
    }
    expect(Buffer.concat(out).equals(reference.subarray(0, drained * RECORD_BYTES))).toBe(true);
    expect(store.records).toBe(added);
    if (spills.length === 0) expect(store.heldRecords).toBe(added - drained);
  }
  expect(added).toBe(data.length / RECORD_BYTES);
  // Every run holds exactly what was held when it was cut: no drained record.
  let spilled = 0;
  for (const { event, addedBefore, drainedBefore } of spills) {
    expect(drainedBefore).toBe(drained);
    expect(event.records).toBe(addedBefore - drainedBefore - spilled);
    expect(event.bytes).toBe(event.records * RECORD_BYTES);
    spilled += event.records;
  }
  const heldAtEnd = store.heldRecords;
  expect(drained + spilled + heldAtEnd).toBe(added);
  const rest = Array.from(store.sortedChunks(), (c) => Buffer.from(c));
  const sorted = Buffer.concat([...out, ...rest]);
  expect(sorted.equals(reference)).toBe(true);
  if (spills.length > 0) expect(store.figures.mergeTotalBytes).toBe((added - drained) * RECORD_BYTES);
  expect(readdirSync(dir)).toEqual([]);
  return { sorted, drained, spills, store, heldAtEnd };
}

describe("SpillingStore: draining below a mark", () => {
  test("no spill: drained chunks + sortedChunks are the exact sort, records counts drained and held", () => {
    const [peer, peers] = [2, 4];
    const start = rangeStart(peer, peers);
    const end = rangeEnd(peer, peers);
    const w = end - start;
    const data = makeRecords(91, 60_000, peer, peers, "uniform");
    // Arbitrary prefixes, a bucket edge (1/4), a repeat (an empty slice), a 2^16 multiple.
    const bounds = [
      start,
      start + Math.floor(0.13 * w) + 5,
      start + w / 4,
      start + w / 4,
      start + w / 2 + 1,
      start + Math.floor((0.77 * w) / P16) * P16,
      end,
    ];
    const run = drainedRounds(data, bounds, {
      rangeStart: start,
      rangeEnd: end,
      expectedRecords: 60_000,
      budgetBytes: 64 * MB,
    });
    expect(run.store.plannedSpill).toBe(false);
    expect(run.spills.length).toBe(0);
    expect(run.drained).toBeGreaterThan(50_000);
    expect(run.store.figures.spills).toBe(0);
  });

  /** Slice bounds for the full range: a first slice that fits one chunk, then slices past the run limit. */
  const spillBounds = [0, 2 * 2 ** 44 + 12_345, 5 * 2 ** 44, 9 * 2 ** 44 + 3 * P16, 2 ** 48 - 1, 2 ** 48];

  test(
    "drain, then planned spills (small runs): nothing drains after a spill, runs hold only undrained records",
    () => {
      const data = makeRecords(92, 100_000, 0, 1, "uniform");
      const run = drainedRounds(data, spillBounds, {
        rangeStart: 0,
        rangeEnd: 2 ** 48,
        expectedRecords: 10_000_000,
        budgetBytes: 64 * MB,
        maxRunBytes: 6 * MB,
      });
      expect(run.store.plannedSpill).toBe(true);
      expect(run.spills.length).toBeGreaterThanOrEqual(2);
      // The first slice (12.5% of the records) drained before any spill.
      expect(run.spills[0].drainedBefore).toBe(run.drained);
      expect(run.drained).toBeGreaterThan(10_000);
    },
    heavyTimeoutMs,
  );

  test(
    "drain, then a share that outgrows its estimate spills at the minimum budget: still exact",
    () => {
      const data = makeRecords(93, 100_000, 0, 1, "uniform");
      const run = drainedRounds(data, spillBounds, {
        rangeStart: 0,
        rangeEnd: 2 ** 48,
        expectedRecords: 1_000,
        budgetBytes: minimumStoreBytes(),
      });
      expect(run.store.plannedSpill).toBe(false);
      expect(run.spills.length).toBeGreaterThanOrEqual(1);
      expect(run.drained).toBeGreaterThan(10_000);
    },
    heavyTimeoutMs,
  );

  test(
    "skewed keys (90% on one prefix, drained in split pieces) with drains, with and without spills",
    () => {
      const [peer, peers] = [1, 4];
      const start = rangeStart(peer, peers);
      const end = rangeEnd(peer, peers);
      const data = makeRecords(94, 60_000, peer, peers, "skewed");
      // The hot prefix: the most common one.
      const counts = new Map<number, number>();
      for (let o = 0; o < data.length; o += RECORD_BYTES) {
        const p = prefixAt(data, o);
        counts.set(p, (counts.get(p) ?? 0) + 1);
      }
      const hot = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
      expect(counts.get(hot)).toBeGreaterThan(50_000);
      // A slice up to the hot prefix, one of it alone, one up to its 32-bit prefix's end, the rest.
      const bounds = [start, hot, hot + 1, (Math.floor(hot / P16) + 1) * P16, end].filter(
        (b, i, all) => i === 0 || b > all[i - 1],
      );
      const options = { rangeStart: start, rangeEnd: end, expectedRecords: 60_000 };
      const roomy = drainedRounds(data, bounds, { ...options, budgetBytes: 64 * MB });
      expect(roomy.spills.length).toBe(0);
      expect(roomy.drained).toBeGreaterThan(54_000);
      const tight = drainedRounds(data, bounds, { ...options, budgetBytes: minimumStoreBytes() });
      expect(tight.spills.length).toBeGreaterThanOrEqual(1);
    },
    heavyTimeoutMs,
  );

  test(
    "an add that spills while a drain is between pieces: the piece in hand stays intact, the output exact",
    () => {
      const mark = 2 * 2 ** 44 + 12_345;
      const hot = 2 ** 44 + 99 * P16 + 5; // in bucket 1 of 16: split, drained in many pieces
      for (const [planned, hotRecords, take] of [
        [false, 22_000, 6],
        [true, 0, 1],
      ] as const) {
        const data = makeRecords(95, 70_000, 0, 1, "uniform");
        for (let r = 0; r < hotRecords; r++) {
          const o = r * RECORD_BYTES;
          for (let i = 0; i < 6; i++) data[o + i] = Math.floor(hot / 256 ** (5 - i)) % 256;
          expect(prefixAt(data, o)).toBe(hot);
        }
        const below = recordsBetween(data, 0, mark);
        const reference = referenceSort(data);
        const spills: SpillEvent[] = [];
        let added = 0;
        let addedAtFirstSpill = 0;
        const dir = freshDir();
        const store = new SpillingStore({
          rangeStart: 0,
          rangeEnd: 2 ** 48,
          ...(planned
            ? { expectedRecords: 10_000_000, budgetBytes: 64 * MB, maxRunBytes: 6 * MB }
            : { expectedRecords: 1_000, budgetBytes: minimumStoreBytes() }),
          tempDir: dir,
          onSpill: (e) => {
            if (spills.length === 0) addedAtFirstSpill = added;
            spills.push(e);
          },
        });
        expect(store.plannedSpill).toBe(planned);
        addAll(store, below);
        expect(spills.length).toBe(0);
        const out: Buffer[] = [];
        const drain = store.sortedChunksBelow(mark);
        let inHand: Uint8Array = new Uint8Array(0);
        for (let k = 0; k < take; k++) {
          const step = drain.next();
          expect(step.done).toBe(false);
          if (step.done) break;
          inHand = step.value;
          out.push(Buffer.from(inHand));
        }
        const handedOut = out.reduce((n, p) => n + p.length, 0) / RECORD_BYTES;
        expect(store.records).toBe(below.length / RECORD_BYTES);
        expect(store.heldRecords).toBe(below.length / RECORD_BYTES - handedOut);
        // The writer still writes the piece in hand; records above the mark arrive meanwhile, past the budget.
        added = below.length / RECORD_BYTES;
        const above = recordsBetween(data, mark, 2 ** 48);
        for (let o = 0; o < above.length; o += 2560 * RECORD_BYTES) {
          const length = Math.min(2560 * RECORD_BYTES, above.length - o);
          store.add(above, o, length);
          added += length / RECORD_BYTES;
        }
        expect(spills.length).toBeGreaterThanOrEqual(1);
        // The spill left the piece in hand alone, and it held only what had not been handed out.
        expect(Buffer.from(inHand).equals(out[out.length - 1])).toBe(true);
        expect(spills[0].records).toBe(addedAtFirstSpill - handedOut);
        expect(store.records).toBe(70_000);
        // The rest of that drain went into the run: the drain ends, and the merge gives everything else.
        for (const piece of { [Symbol.iterator]: () => drain }) out.push(Buffer.from(piece));
        expect(out.reduce((n, p) => n + p.length, 0) / RECORD_BYTES).toBe(handedOut);
        for (const piece of store.sortedChunks()) out.push(Buffer.from(piece));
        expect(Buffer.concat(out).equals(reference)).toBe(true);
        expect(readdirSync(dir)).toEqual([]);
      }
    },
    heavyTimeoutMs,
  );
});
