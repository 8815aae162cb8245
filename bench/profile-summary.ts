/**
 * Summarise a `bun --cpu-prof` profile of one peer by stage of the job.
 *
 *   bun bench/profile-summary.ts PROFILE.cpuprofile [--top N]
 *
 * Each sample is charged to the innermost frame from this repository's src/ (a
 * native leaf such as `Uint8Array` or `writeSync` is charged to the project
 * function that called it), and that frame to a stage by the rules below. Two
 * weights are printed: the sample count, and the time until the next sample.
 * Bun's sampler only records while JavaScript runs, so the time after the last
 * sample before a wait (or before the peer lost its core) lands on that sample:
 * the count is the better guide to where CPU goes, the time to where the
 * process was when it stalled (docs/performance.md). The sampler can also
 * report a stale native leaf: one profile here put 29% of its samples in the
 * `Uint8Array` constructor under BucketStore's addSlab, which takes ~1 ms per
 * call (timed); the rules charge addSlab to bucket add, where those samples belong.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseIntArg } from "../src/cli/args.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** First matching rule wins; `file` is the path under src/, `fn` the function. */
const stageRules: { stage: string; file: RegExp; fn?: RegExp }[] = [
  {
    stage: "bucket add (copy into buckets)",
    file: /^sort\/buckets\.ts$/,
    fn: /^(add|addAligned|alloc|grow|addSlab|carveChunk|BlockPool|acquire)$/,
  },
  { stage: "sort (keys, gather, group bookkeeping)", file: /^sort\// },
  { stage: "memory advice (madvise)", file: /^mem\.ts$/ },
  { stage: "partition (owner + per-peer batches)", file: /^partition\// },
  { stage: "sockets, framing, stream digest", file: /^exchange\// },
  { stage: "read input", file: /^io\/reader\.ts$/ },
  { stage: "write output (+ fsync)", file: /^io\/writer\.ts$/ },
  { stage: "validation", file: /^validate\// },
  { stage: "job loop (GC calls, turns)", file: /^job\.ts$/ },
];
const otherStage = "startup, config, logging";

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  options: { top: { type: "string", default: "15" } },
  allowPositionals: true,
});
if (positionals.length !== 1) {
  console.error("usage: bun bench/profile-summary.ts PROFILE.cpuprofile [--top N]");
  process.exit(2);
}
const top = parseIntArg("--top", values.top, 1, 1000);
const profile = JSON.parse(readFileSync(positionals[0], "utf8")) as Profile;

const byId = new Map<number, ProfileNode>();
const parentOf = new Map<number, number>();
for (const node of profile.nodes) byId.set(node.id, node);
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

const srcMarker = "/src/";
function projectFile(frame: CallFrame): string | null {
  const at = frame.url.lastIndexOf(srcMarker);
  if (at < 0 || frame.url.includes("node_modules")) return null;
  return frame.url.slice(at + srcMarker.length);
}

interface Charge {
  stage: string;
  label: string;
}
const chargeCache = new Map<number, Charge>();
function charge(nodeId: number): Charge {
  const cached = chargeCache.get(nodeId);
  if (cached !== undefined) return cached;
  const leaf = byId.get(nodeId);
  let result: Charge = { stage: otherStage, label: leaf?.callFrame.functionName || "(anonymous)" };
  for (let id: number | undefined = nodeId; id !== undefined; id = parentOf.get(id)) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) break;
    const file = projectFile(frame);
    if (file === null) continue;
    const fn = frame.functionName || "(anonymous)";
    const rule = stageRules.find((r) => r.file.test(file) && (r.fn === undefined || r.fn.test(fn)));
    const native = id === nodeId ? "" : ` > ${leaf?.callFrame.functionName || "(native)"}`;
    result = { stage: rule?.stage ?? otherStage, label: `${file}:${frame.lineNumber + 1} ${fn}${native}` };
    break;
  }
  chargeCache.set(nodeId, result);
  return result;
}

interface Tally {
  samples: number;
  us: number;
}
const stages = new Map<string, Tally>();
const labels = new Map<string, Tally>();
const add = (map: Map<string, Tally>, key: string, us: number) => {
  const tally = map.get(key) ?? { samples: 0, us: 0 };
  tally.samples += 1;
  tally.us += us;
  map.set(key, tally);
};
const count = profile.samples.length;
let totalUs = 0;
for (let i = 0; i < count; i++) {
  // Chrome's convention: timeDeltas[i] is the gap before sample i, so sample i
  // lasts until sample i + 1.
  const us = i + 1 < count ? profile.timeDeltas[i + 1] : 0;
  totalUs += us;
  const c = charge(profile.samples[i]);
  add(stages, c.stage, us);
  add(labels, c.label, us);
}

const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`.padStart(6);
const ms = (us: number) => `${(us / 1000).toFixed(0)} ms`.padStart(8);
function print(title: string, map: Map<string, Tally>, limit: number) {
  console.log(`\n${title}\n  samples  share      time  share`);
  const rows = [...map.entries()].sort((a, b) => b[1].samples - a[1].samples).slice(0, limit);
  for (const [key, t] of rows) {
    console.log(
      `  ${String(t.samples).padStart(7)} ${pct(t.samples, count)} ${ms(t.us)} ${pct(t.us, totalUs)}  ${key}`,
    );
  }
}
console.log(`${positionals[0]}: ${count} samples over ${(totalUs / 1e6).toFixed(2)} s`);
print("By stage", stages, stages.size);
print(`Top ${top} project frames (native leaf after >)`, labels, top);
