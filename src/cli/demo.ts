/**
 * `netsort demo`: the main job on one machine. Generates inputs, runs the peers
 * as real separate processes on loopback (the same command line users run),
 * verifies the result with `check`, and prints a summary with timings.
 */

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetsortError } from "../errors.ts";
import { clusterTimeline, writeTimelineSvg } from "../local/bench.ts";
import { type ClusterRun, runLocalCluster, writeLocalConfig } from "../local/cluster.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import { type CheckResult, checkFiles } from "../tools/check.ts";
import { GEN_KINDS, generate } from "../tools/gen.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";
import { peerArgv, peerFlags } from "./peer-flags.ts";

/** More local peers than this would only measure the scheduler of a small machine. */
const maxDemoPeers = 64;
/** Per-peer input above this does not fit a demo on a laptop-sized machine. */
const maxDemoBytesPerPeer = 64 * 1024 ** 3;
/** Longest start delay between two peers, ms. */
const maxStaggerMs = 10_000;

const args = {
  positionals: [],
  flags: {
    peers: {
      type: "string",
      valueHint: "n",
      description: "Number of local peers",
      default: "4",
      parse: { kind: "int", min: 1, max: maxDemoPeers },
    },
    size: {
      type: "string",
      valueHint: "size",
      description: "Input size per peer, binary units: 64mb = 64 MiB",
      default: "64mb",
      parse: { kind: "size", min: 1, max: maxDemoBytesPerPeer },
    },
    kind: {
      type: "string",
      valueHint: "kind",
      description: "Key distribution",
      choices: GEN_KINDS,
      default: "uniform",
    },
    dir: {
      type: "string",
      valueHint: "dir",
      description: "Working directory for inputs and outputs (default: a new temp dir, removed after)",
    },
    keep: { type: "boolean", description: "Keep the generated inputs and outputs" },
    validate: {
      type: "boolean",
      description: "Also run the peers with --validate (global valsort verdict in the sort)",
    },
    svg: {
      type: "string",
      valueHint: "file",
      description: "Draw each peer's phases on one time axis as SVG into this file",
    },
    "stagger-ms": {
      type: "string",
      valueHint: "ms",
      description: "Start peer i after i times this many ms",
      default: "100",
      parse: { kind: "int", min: 0, max: maxStaggerMs },
    },
    ...peerFlags,
    json: { type: "boolean", description: "Print the summary as one JSON document on stdout" },
    ...logFlags,
  },
} as const;

interface DemoFacts {
  peers: number;
  staggerMs: number;
  kind: string;
  totalBytes: number;
  run: ClusterRun;
  check: CheckResult;
  checkMs: number;
}

function printSummary(f: DemoFacts): void {
  const { run, check } = f;
  console.log(`peers          ${f.peers} local processes on 127.0.0.1 (started ${f.staggerMs} ms apart)`);
  console.log(`data           ${check.records} records, ${formatBytes(f.totalBytes)} (${f.kind})`);
  console.log(
    `sort           ${Math.round(run.wallMs)} ms from first start to last exit, ${formatRate(f.totalBytes, run.wallMs)}`,
  );
  for (const p of run.peers) {
    const t = p.timings;
    if (t === null) continue;
    console.log(
      `  peer ${String(p.id).padEnd(3)}    ${String(t.outputRecords).padStart(10)} records out, read ${Math.round(t.readMs)} ms, exchange ${Math.round(t.exchangeMs)} ms, sort ${Math.round(t.sortMs)} ms, write ${Math.round(t.writeMs)} ms, peak RSS ${formatBytes(t.peakRssBytes)}`,
    );
  }
  console.log(
    `check          ${check.valid ? "VALID" : "INVALID"}: sorted=${check.sorted}, same records as inputs=${check.inputsMatch}, duplicate keys ${check.duplicates}, checksum ${check.checksums.outputs} (${Math.round(f.checkMs)} ms)`,
  );
}

/** The --json document: the same facts as the text summary, with every peer's timings. */
function summaryJson(f: DemoFacts) {
  return {
    peers: f.peers,
    staggerMs: f.staggerMs,
    kind: f.kind,
    totalBytes: f.totalBytes,
    wallMs: f.run.wallMs,
    mbPerSec: f.run.wallMs > 0 ? f.totalBytes / 1e6 / (f.run.wallMs / 1000) : null,
    peerTimings: f.run.peers.map((p) => ({ id: p.id, exitCode: p.exitCode, timings: p.timings })),
    check: { ...f.check, ms: f.checkMs },
  };
}

export default defineTableCommand({
  name: "demo",
  summary: "Sort generated data with several local peers and verify the result",
  notes: [
    "Peers are separate processes on 127.0.0.1 running `netsort sort`; their log lines",
    "go to stderr as [peer N], the summary to stdout. --partition, --memory, --rounds,",
    "--temp-dir and --secret-file are passed on to every peer.",
  ],
  args,
  async run(a) {
    const { peers, size, kind } = a;
    const staggerMs = a["stagger-ms"];
    const ownDir = a.dir === undefined;
    const dir = a.dir ?? mkdtempSync(join(tmpdir(), "netsort-demo-"));
    mkdirSync(dir, { recursive: true });
    try {
      log.info(`demo: ${peers} peers x ${formatBytes(size)} of ${kind} records in ${dir}`);
      const inputs = Array.from({ length: peers }, (_, id) => join(dir, `input-${id}.dat`));
      const outputs = Array.from({ length: peers }, (_, id) => join(dir, `output-${id}.dat`));
      const g0 = performance.now();
      for (const [id, file] of inputs.entries()) await generate({ file, bytes: size, seed: 1 + id, kind });
      const genMs = performance.now() - g0;
      const totalBytes = Math.ceil(size / 100) * 100 * peers;
      log.info(`generated ${formatBytes(totalBytes)} in ${Math.round(genMs)} ms`);

      const config = writeLocalConfig(dir, peers);
      const extraArgs = [...(a.validate ? ["--validate"] : []), ...peerArgv(a)];
      const run = await runLocalCluster({ config, inputs, outputs, staggerMs, extraArgs, echo: !a.quiet });
      const failed = run.peers.filter((p) => p.exitCode !== 0);
      if (failed.length > 0) {
        throw new NetsortError(`demo: ${failed.map((p) => `peer ${p.id} exited ${p.exitCode}`).join(", ")}`);
      }
      if (a.svg !== undefined)
        writeTimelineSvg(
          a.svg,
          clusterTimeline(run, `netsort demo: ${peers} peers x ${formatBytes(size)} (${kind})`),
        );
      const c0 = performance.now();
      const check = await checkFiles(outputs, inputs);
      const checkMs = performance.now() - c0;
      const facts = { peers, staggerMs, kind, totalBytes, run, check, checkMs };
      if (a.json)
        console.log(JSON.stringify({ ...summaryJson(facts), dir: ownDir && !a.keep ? null : dir }, null, 2));
      else printSummary(facts);
      if (!check.valid) return 1;
      if ((!ownDir || a.keep) && !a.json) console.log(`files          ${dir}`);
      return 0;
    } finally {
      if (ownDir && !a.keep) rmSync(dir, { recursive: true, force: true });
    }
  },
});
