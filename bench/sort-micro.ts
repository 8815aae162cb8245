/**
 * Micro-benchmark of the sort stage alone: BucketStore.add fed in network-sized
 * batches, then sortedRuns() drained, for uniform and skewed keys inside one
 * peer's range (peer 1 of 4). Each key shape runs in its own child process so its
 * peak RSS is its own; each prints its first run apart and the median (and best
 * CPU) of the others, the resident set after add and after the sort (the sort
 * gives its memory back as it goes: src/sort/buckets.ts), and the bytes given back.
 *
 *   bun bench/sort-micro.ts [--records N] [--runs N] [--unaligned] [--sample-range] [--write FILE]
 *
 * --write FILE also writes every run to FILE as the job does (writeSync per run,
 * fsync at the end; the file is removed after each run). The first run of each
 * process is shown apart ("cold"): a real peer sorts once, into memory it has
 * never touched, so the cold figures are the ones that predict a job. Each phase
 * shows wall time, user + system CPU and minor page faults: on a shared 2-core
 * machine CPU times are steadier than wall times, and kernel time on fresh memory
 * is much of a peer's cost (docs/performance.md).
 */
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseIntArg } from "../src/cli/args.ts";
import { batchBytes } from "../src/limits.ts";
import { formatBytes } from "../src/log.ts";
import { compareRecords, RECORD_BYTES, rangeEnd, rangeStart } from "../src/record.ts";
import { BucketStore } from "../src/sort/buckets.ts";

/**
 * "prefix": every record has one 6-byte prefix and the store's range is that
 * prefix alone: a peer of `bench --kind skew --partition sample`, whose split
 * points all fall inside the shared prefix (a single bucket, split by byte 6).
 */
const shapes = ["uniform", "skewed", "prefix"] as const;
type Shape = (typeof shapes)[number];

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "2700000" },
    runs: { type: "string", default: "5" },
    unaligned: { type: "boolean", default: false },
    "sample-range": { type: "boolean", default: false },
    keys: { type: "string" },
    write: { type: "string" },
  },
});
const records = parseIntArg("--records", values.records, 1, 50_000_000);
const runs = parseIntArg("--runs", values.runs, 1, 100);
const peers = 4;
const peer = 1;
const bytes = records * RECORD_BYTES;
/**
 * The store's range: peer 1 of 4's equal range, or with --sample-range that range
 * moved by a little over 0.1% of its width, as split points drawn from a sample
 * fall (--partition sample): not on a power-of-two boundary.
 */
const bitsWidth = rangeEnd(peer, peers) - rangeStart(peer, peers);
const rangeShift = values["sample-range"] ? Math.floor(bitsWidth / 997) + 12_345 : 0;
const storeStart = rangeStart(peer, peers) + rangeShift;
const storeEnd = rangeEnd(peer, peers) + rangeShift;

/** xorshift32 fill: fast and seeded. */
function fillRandom(buf: Uint8Array, seed: number): void {
  const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
}

/**
 * Random records whose 48-bit prefix lies in this peer's range; "skewed": about
 * 90% of them share one 6-byte prefix.
 */
function makeInput(shape: Shape): Uint8Array {
  const data = new Uint8Array(bytes);
  fillRandom(data, shape === "skewed" ? 7 : 3);
  const start = storeStart;
  const width = storeEnd - start;
  const shared = sharedPrefix;
  for (let r = 0; r < records; r++) {
    const o = r * RECORD_BYTES;
    const fraction = ((data[o] << 16) | (data[o + 1] << 8) | data[o + 2]) / 2 ** 24;
    const p =
      shape === "prefix" || (shape === "skewed" && data[o + 3] < 230)
        ? shared
        : start + Math.floor(fraction * width);
    const hi = Math.floor(p / 2 ** 24);
    const lo = p % 2 ** 24;
    data[o] = hi >>> 16;
    data[o + 1] = (hi >>> 8) & 0xff;
    data[o + 2] = hi & 0xff;
    data[o + 3] = lo >>> 16;
    data[o + 4] = (lo >>> 8) & 0xff;
    data[o + 5] = lo & 0xff;
  }
  return data;
}

/** The shared prefix of "skewed" and "prefix": a third into the range. */
const sharedPrefix = storeStart + Math.floor((storeEnd - storeStart) / 3);

function storeRange(shape: Shape): { rangeStart: number; rangeEnd: number } {
  if (shape === "prefix") return { rangeStart: sharedPrefix, rangeEnd: sharedPrefix + 1 };
  return { rangeStart: storeStart, rangeEnd: storeEnd };
}

/** One phase of one run: wall time, CPU split user/system, minor page faults. */
interface Phase {
  ms: number;
  userMs: number;
  sysMs: number;
  faults: number;
}

interface RunFigures {
  add: Phase;
  sort: Phase;
  write: Phase;
  fsync: Phase;
  /** Resident set size after add, and after the last run was written. */
  rssAfterAddBytes: number;
  rssAfterSortBytes: number;
  givenBackBytes: number;
}

const lastRecord = new Uint8Array(RECORD_BYTES);

/** Phase meter: wall, CPU and minor faults since the last mark. */
class Meter {
  private ms = 0;
  private user = 0;
  private sys = 0;
  private faults = 0;

  constructor() {
    this.mark();
  }

  mark(): void {
    const usage = process.resourceUsage();
    this.ms = performance.now();
    this.user = usage.userCPUTime / 1000;
    this.sys = usage.systemCPUTime / 1000;
    this.faults = usage.minorPageFault;
  }

  /** Add the time since the last mark to `into`, then mark again. */
  take(into: Phase): void {
    const usage = process.resourceUsage();
    into.ms += performance.now() - this.ms;
    into.userMs += usage.userCPUTime / 1000 - this.user;
    into.sysMs += usage.systemCPUTime / 1000 - this.sys;
    into.faults += usage.minorPageFault - this.faults;
    this.mark();
  }
}

const emptyPhase = (): Phase => ({ ms: 0, userMs: 0, sysMs: 0, faults: 0 });

function runOnce(
  shape: Shape,
  input: Uint8Array,
  batch: Uint8Array,
  writePath: string | undefined,
): RunFigures {
  const figures: RunFigures = {
    add: emptyPhase(),
    sort: emptyPhase(),
    write: emptyPhase(),
    fsync: emptyPhase(),
    rssAfterAddBytes: 0,
    rssAfterSortBytes: 0,
    givenBackBytes: 0,
  };
  const fd = writePath === undefined ? -1 : openSync(writePath, "w", 0o644);
  const meter = new Meter();
  const store = new BucketStore({ ...storeRange(shape), expectedRecords: records });
  // Batches as the exchange hands them over: copied into one reused receive buffer.
  for (let offset = 0; offset < input.length; offset += batchBytes) {
    const length = Math.min(batchBytes, input.length - offset);
    batch.set(input.subarray(offset, offset + length));
    store.add(batch, 0, length);
  }
  meter.take(figures.add);
  figures.rssAfterAddBytes = process.memoryUsage.rss();
  meter.mark();
  let seen = 0;
  for (const run of store.sortedRuns()) {
    // Cheap order check across run boundaries (the run buffer is reused, so keep
    // a copy of the last record); the tests check everything.
    if (seen > 0 && compareRecords(lastRecord, 0, run, 0) > 0) throw new Error("runs out of order");
    lastRecord.set(run.subarray(run.length - RECORD_BYTES));
    seen += run.length / RECORD_BYTES;
    meter.take(figures.sort);
    if (fd >= 0) {
      // As src/io/writer.ts does: writeSync of each run.
      for (let done = 0; done < run.length; ) done += writeSync(fd, run, done, run.length - done);
      meter.take(figures.write);
    }
  }
  meter.take(figures.sort);
  figures.rssAfterSortBytes = process.memoryUsage.rss();
  figures.givenBackBytes = store.givenBackBytes;
  meter.mark();
  if (fd >= 0) {
    fsyncSync(fd);
    closeSync(fd);
    meter.take(figures.fsync);
  }
  if (seen !== records) throw new Error(`sorted ${seen} of ${records} records`);
  return figures;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function rate(ms: number): string {
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
}

function phaseLine(label: string, first: Phase, rest: Phase[]): string {
  const f = (p: Phase) =>
    `${p.ms.toFixed(0)} ms (user ${p.userMs.toFixed(0)} + sys ${p.sysMs.toFixed(0)}, ${p.faults} faults)`;
  if (rest.length === 0) return `  ${label.padEnd(5)} cold ${f(first)}`;
  const cpu = rest.map((p) => p.userMs + p.sysMs);
  const warm = `warm median ${median(rest.map((p) => p.ms)).toFixed(0)} ms (cpu ${median(cpu).toFixed(0)}, best cpu ${Math.min(...cpu).toFixed(0)}, faults ${median(rest.map((p) => p.faults))})`;
  return `  ${label.padEnd(5)} cold ${f(first)}; ${warm}, runs ${rest.map((p) => p.ms.toFixed(0)).join(" ")}`;
}

function benchShape(shape: Shape): void {
  const input = makeInput(shape);
  const batchBuffer = new Uint8Array(batchBytes + 4);
  const batch = values.unaligned
    ? batchBuffer.subarray(1, 1 + batchBytes)
    : batchBuffer.subarray(0, batchBytes);
  const figures: RunFigures[] = [];
  for (let i = 0; i < runs; i++) {
    figures.push(runOnce(shape, input, batch, values.write));
    if (values.write !== undefined) unlinkSync(values.write); // as bench does between runs
    Bun.gc(true);
  }
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const [first, ...rest] = figures;
  const buckets = new BucketStore({ ...storeRange(shape), expectedRecords: records }).buckets;
  const label = {
    uniform: "uniform:",
    skewed: "skewed (90% share a 6-byte prefix):",
    prefix: "prefix (all share a 6-byte prefix, the store's whole range):",
  }[shape];
  console.log(`${label} ${buckets} buckets`);
  console.log(
    phaseLine(
      "add",
      first.add,
      rest.map((f) => f.add),
    ),
  );
  console.log(
    phaseLine(
      "sort",
      first.sort,
      rest.map((f) => f.sort),
    ),
  );
  if (values.write !== undefined) {
    console.log(
      phaseLine(
        "write",
        first.write,
        rest.map((f) => f.write),
      ),
    );
    console.log(
      phaseLine(
        "fsync",
        first.fsync,
        rest.map((f) => f.fsync),
      ),
    );
  }
  console.log(
    `  RSS (cold run) after add ${formatBytes(first.rssAfterAddBytes)}, after sort ${formatBytes(first.rssAfterSortBytes)}; given back ${formatBytes(first.givenBackBytes)}`,
  );
  const addMs = median(figures.map((f) => f.add.ms));
  const sortMs = median(figures.map((f) => f.sort.ms));
  console.log(
    `  add ${rate(addMs)}, sort ${(((records / sortMs) * 1000) / 1e6).toFixed(2)} M records/s (medians of all runs)`,
  );
  console.log(`  peak RSS ${formatBytes(peakRss)}, of which the input held in memory: ${formatBytes(bytes)}`);
}

if (values.keys !== undefined) {
  if (!(shapes as readonly string[]).includes(values.keys))
    throw new Error(`--keys: one of ${shapes.join(", ")}`);
  benchShape(values.keys as Shape);
} else {
  const how = `${values.unaligned ? " at odd byte offsets" : ""}${values["sample-range"] ? ", range off power-of-two boundaries (as --partition sample)" : ""}`;
  console.log(
    `${records} records (${formatBytes(bytes)}), peer ${peer} of ${peers}, ${runs} runs, batches of ${batchBytes} B${how}`,
  );
  for (const shape of shapes) {
    const args = ["--records", String(records), "--runs", String(runs), "--keys", shape];
    if (values.unaligned) args.push("--unaligned");
    if (values["sample-range"]) args.push("--sample-range");
    if (values.write !== undefined) args.push("--write", values.write);
    const child = Bun.spawnSync([process.execPath, import.meta.path, ...args], {
      stdout: "inherit",
      stderr: "inherit",
    });
    if (child.exitCode !== 0) process.exit(child.exitCode ?? 1);
  }
}
