/**
 * Turn the directory of bench/partition-ab.sh into the tables of
 * docs/performance.md "Partitioning: bits vs sample": per configuration the
 * median wall time, CPU time, balance and per-phase durations (mean over the
 * peers, then median over the runs; the sample phase also as its worst peer),
 * and the ratios to the targets, both as ratios of medians and as the median of
 * the ratios within each round (each round ran all configurations back to back).
 *
 *   bun bench/partition-summary.ts DIR
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { BenchReport } from "../src/local/bench.ts";
import { median } from "../src/local/bench.ts";

const dir = process.argv[2];
if (dir === undefined) {
  console.error("usage: bun bench/partition-summary.ts DIR");
  process.exit(2);
}

/** skew-bits60s: skew with bits, the peers given --idle-timeout-ms 60000 (files named so by hand). */
const configs = ["uniform-bits", "uniform-sample", "skew-sample", "skew-bits", "skew-bits60s"] as const;
/** reports[config][round] */
const reports = new Map<string, Map<number, BenchReport>>();
for (const name of readdirSync(dir)) {
  const m = /^(\w+-\w+)-(\d+)\.json$/.exec(name);
  if (m === null) continue;
  const text = readFileSync(join(dir, name), "utf8");
  if (text.trim() === "") continue; // a round cut short
  const byRound = reports.get(m[1]) ?? new Map<number, BenchReport>();
  byRound.set(Number(m[2]), JSON.parse(text) as BenchReport);
  reports.set(m[1], byRound);
}

const phases = ["sampleMs", "readMs", "exchangeMs", "sortMs", "writeMs", "otherMs", "totalMs"] as const;
const r0 = (x: number) => String(Math.round(x));
const runsOf = (config: string) =>
  [...(reports.get(config) ?? new Map<number, BenchReport>())]
    .sort(([a], [b]) => a - b)
    .flatMap(([, r]) => r.netsortRuns);

console.log(
  "| configuration | runs | median wall ms | walls ms (by round) | median CPU ms (all peers) | CPU ms (by round) | balance (largest/mean) | load at start |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const config of configs) {
  const runs = runsOf(config);
  if (runs.length === 0) continue;
  const walls = runs.map((r) => r.wallMs);
  console.log(
    `| ${config.replace("-", " / ")} | ${runs.length} | ${r0(median(walls))} | ${walls.map(r0).join(", ")} | ${r0(median(runs.map((r) => r.cpuMs)))} | ${runs.map((r) => r0(r.cpuMs)).join(", ")} | ${median(runs.map((r) => r.balance)).toFixed(3)}x | ${median(runs.map((r) => r.loadAverage)).toFixed(1)} |`,
  );
}

console.log("");
console.log(
  "per phase, ms: mean over the 4 peers, median over runs (sample max: the slowest peer's sample phase)",
);
console.log(
  `| configuration | ${phases.map((p) => p.replace(/Ms$/, "")).join(" | ")} | sample max | largest sort |`,
);
console.log(`| --- | ${phases.map(() => "---").join(" | ")} | --- | --- |`);
for (const config of configs) {
  const runs = runsOf(config);
  if (runs.length === 0) continue;
  const cells = phases.map((phase) =>
    r0(median(runs.map((r) => r.peers.reduce((s, p) => s + p[phase], 0) / r.peers.length))),
  );
  const sampleMax = r0(median(runs.map((r) => Math.max(...r.peers.map((p) => p.sampleMs)))));
  const sortMax = r0(median(runs.map((r) => Math.max(...r.peers.map((p) => p.sortMs)))));
  console.log(`| ${config.replace("-", " / ")} | ${cells.join(" | ")} | ${sampleMax} | ${sortMax} |`);
}

type Peer = BenchReport["netsortRuns"][number]["peers"][number];
/** When the peer's read began, ms after its start: the sample phase delays it. */
const readStartMs = (p: Peer) => p.spans.find((s) => s.phase === "read")?.startMs ?? 0;
/** The part of the sample phase after the peer's mesh was up (before it, sampling waits for connections). */
function sampleAfterMeshMs(p: Peer): number {
  const sample = p.spans.find((s) => s.phase === "sample");
  if (sample === undefined) return 0;
  const connectEnd = p.spans.find((s) => s.phase === "connect")?.endMs ?? sample.startMs;
  return Math.max(0, sample.endMs - Math.max(sample.startMs, connectEnd));
}

console.log("");
console.log("the sample phase: ms, mean over the peers, median over runs");
console.log(
  "| configuration | connect | sample (start to end) | sample after the mesh was up | read begins at |",
);
console.log("| --- | --- | --- | --- | --- |");
for (const config of configs) {
  const runs = runsOf(config);
  if (runs.length === 0) continue;
  const mean = (f: (p: Peer) => number) =>
    r0(median(runs.map((r) => r.peers.reduce((s, p) => s + f(p), 0) / r.peers.length)));
  console.log(
    `| ${config.replace("-", " / ")} | ${mean((p) => p.connectMs)} | ${mean((p) => p.sampleMs)} | ${mean(sampleAfterMeshMs)} | ${mean(readStartMs)} |`,
  );
}

/** Wall of `config` in each round, for ratios within a round. */
const wallsByRound = (config: string) =>
  new Map(
    [...(reports.get(config) ?? new Map<number, BenchReport>())]
      .sort(([a], [b]) => a - b)
      .map(([k, r]) => [k, r.netsortRuns[0].wallMs]),
  );

console.log("");
console.log(
  "| ratio | target | wall: ratio of medians | wall: median of per-round ratios | per round | CPU: ratio of medians |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
const ratios: Array<[string, string, string]> = [
  ["uniform-sample", "uniform-bits", "<= 1.05"],
  ["skew-sample", "uniform-bits", "<= 1.3"],
  ["skew-bits", "uniform-bits", "(reference)"],
  ["skew-bits", "skew-sample", "(reference)"],
  ["skew-bits60s", "uniform-bits", "(reference)"],
  ["skew-bits60s", "skew-sample", "(reference)"],
];
for (const [a, b, target] of ratios) {
  const ra = runsOf(a);
  const rb = runsOf(b);
  if (ra.length === 0 || rb.length === 0) continue;
  const ofMedians = median(ra.map((r) => r.wallMs)) / median(rb.map((r) => r.wallMs));
  const cpuOfMedians = median(ra.map((r) => r.cpuMs)) / median(rb.map((r) => r.cpuMs));
  const wa = wallsByRound(a);
  const wb = wallsByRound(b);
  const perRound = [...wa].filter(([k]) => wb.has(k)).map(([k, w]) => w / (wb.get(k) as number));
  const perRoundText = perRound.map((x) => x.toFixed(2)).join(", ");
  const med = perRound.length === 0 ? "-" : `${median(perRound).toFixed(3)}x`;
  console.log(
    `| ${a.replace("-", " / ")} vs ${b.replace("-", " / ")} | ${target} | ${ofMedians.toFixed(3)}x | ${med} | ${perRoundText} | ${cpuOfMedians.toFixed(3)}x |`,
  );
}
