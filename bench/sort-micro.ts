/**
 * Micro-benchmark of the sort stage alone: BucketStore.add fed in network-sized
 * batches, then sortedRuns() drained, for uniform and skewed keys inside one
 * peer's range (peer 1 of 4). Each key shape runs in its own child process so its
 * peak RSS is its own; each prints the median (and best) of --runs runs.
 *
 *   bun bench/sort-micro.ts [--records N] [--runs N] [--unaligned]
 *
 * Wall times on a shared 2-core machine are noisy: the CPU times (user + system
 * of this process) are printed beside them.
 */
import { parseArgs } from "node:util";
import { parseIntArg } from "../src/cli/args.ts";
import { batchBytes } from "../src/limits.ts";
import { formatBytes } from "../src/log.ts";
import { compareRecords, RECORD_BYTES, rangeEnd, rangeStart } from "../src/record.ts";
import { BucketStore } from "../src/sort/buckets.ts";

const shapes = ["uniform", "skewed"] as const;
type Shape = (typeof shapes)[number];

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "2700000" },
    runs: { type: "string", default: "5" },
    unaligned: { type: "boolean", default: false },
    keys: { type: "string" },
  },
});
const records = parseIntArg("--records", values.records, 1, 50_000_000);
const runs = parseIntArg("--runs", values.runs, 1, 100);
const peers = 4;
const peer = 1;
const bytes = records * RECORD_BYTES;

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
  const start = rangeStart(peer, peers);
  const width = rangeEnd(peer, peers) - start;
  const shared = start + Math.floor(width / 3);
  for (let r = 0; r < records; r++) {
    const o = r * RECORD_BYTES;
    const fraction = ((data[o] << 16) | (data[o + 1] << 8) | data[o + 2]) / 2 ** 24;
    const p = shape === "skewed" && data[o + 3] < 230 ? shared : start + Math.floor(fraction * width);
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

interface RunFigures {
  addMs: number;
  addCpuMs: number;
  sortMs: number;
  sortCpuMs: number;
}

const lastRecord = new Uint8Array(RECORD_BYTES);

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function runOnce(input: Uint8Array, batch: Uint8Array): RunFigures {
  const store = new BucketStore({
    rangeStart: rangeStart(peer, peers),
    rangeEnd: rangeEnd(peer, peers),
    expectedRecords: records,
  });
  const started = performance.now();
  const startedCpu = cpuMs();
  // Batches as the exchange hands them over: copied into one reused receive buffer.
  for (let offset = 0; offset < input.length; offset += batchBytes) {
    const length = Math.min(batchBytes, input.length - offset);
    batch.set(input.subarray(offset, offset + length));
    store.add(batch, 0, length);
  }
  const added = performance.now();
  const addedCpu = cpuMs();
  let seen = 0;
  for (const run of store.sortedRuns()) {
    // Cheap order check across run boundaries (the run buffer is reused, so keep
    // a copy of the last record); the tests check everything.
    if (seen > 0 && compareRecords(lastRecord, 0, run, 0) > 0) throw new Error("runs out of order");
    lastRecord.set(run.subarray(run.length - RECORD_BYTES));
    seen += run.length / RECORD_BYTES;
  }
  const sorted = performance.now();
  const sortedCpu = cpuMs();
  if (seen !== records) throw new Error(`sorted ${seen} of ${records} records`);
  return {
    addMs: added - started,
    addCpuMs: addedCpu - startedCpu,
    sortMs: sorted - added,
    sortCpuMs: sortedCpu - addedCpu,
  };
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function rate(ms: number): string {
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
}

function describe(label: string, xs: number[], cpu: number[]): string {
  return `${label} median ${median(xs).toFixed(0)} ms (cpu ${median(cpu).toFixed(0)} ms), best ${Math.min(...xs).toFixed(0)} ms; runs ${xs.map((x) => x.toFixed(0)).join(" ")}`;
}

function benchShape(shape: Shape): void {
  const input = makeInput(shape);
  const batchBuffer = new Uint8Array(batchBytes + 4);
  const batch = values.unaligned
    ? batchBuffer.subarray(1, 1 + batchBytes)
    : batchBuffer.subarray(0, batchBytes);
  const figures: RunFigures[] = [];
  for (let i = 0; i < runs; i++) {
    figures.push(runOnce(input, batch));
    Bun.gc(true);
  }
  const addMs = figures.map((f) => f.addMs);
  const sortMs = figures.map((f) => f.sortMs);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  console.log(shape === "skewed" ? "skewed (90% share a 6-byte prefix):" : "uniform:");
  console.log(
    `  add   ${rate(median(addMs))} (best ${rate(Math.min(...addMs))}); ${describe(
      "",
      addMs,
      figures.map((f) => f.addCpuMs),
    )}`,
  );
  console.log(
    `  sort  ${(((records / median(sortMs)) * 1000) / 1e6).toFixed(2)} M records/s; ${describe(
      "",
      sortMs,
      figures.map((f) => f.sortCpuMs),
    )}`,
  );
  console.log(`  peak RSS ${formatBytes(peakRss)}, of which the input held in memory: ${formatBytes(bytes)}`);
}

if (values.keys !== undefined) {
  if (!(shapes as readonly string[]).includes(values.keys))
    throw new Error(`--keys: one of ${shapes.join(", ")}`);
  benchShape(values.keys as Shape);
} else {
  const how = values.unaligned ? " at odd byte offsets" : "";
  console.log(
    `${records} records (${formatBytes(bytes)}), peer ${peer} of ${peers}, ${runs} runs, batches of ${batchBytes} B${how}`,
  );
  for (const shape of shapes) {
    const args = ["--records", String(records), "--runs", String(runs), "--keys", shape];
    if (values.unaligned) args.push("--unaligned");
    const child = Bun.spawnSync([process.execPath, import.meta.path, ...args], {
      stdout: "inherit",
      stderr: "inherit",
    });
    if (child.exitCode !== 0) process.exit(child.exitCode ?? 1);
  }
}
