/**
 * `netsort demo`: the main job on one machine. Generates inputs, runs the peers
 * as real separate processes on loopback (the same command line users run),
 * verifies the result with `check`, and prints a summary with timings.
 */

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineCommand } from "citty";
import { NetsortError } from "../errors.ts";
import { clusterTimeline, writeTimelineSvg } from "../local/bench.ts";
import { runLocalCluster, writeLocalConfig } from "../local/cluster.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import { checkFiles } from "../tools/check.ts";
import { GEN_KINDS, type GenKind, generate } from "../tools/gen.ts";
import { checkArgs, commonArgs, parseIntArg, parseSize } from "./args.ts";

/** More local peers than this would only measure the scheduler of a small machine. */
const maxDemoPeers = 64;

const args = {
  peers: { type: "string", description: "Number of local peers (default 4)", valueHint: "n" },
  size: { type: "string", description: 'Input size per peer (default "64mb")', valueHint: "size" },
  kind: {
    type: "string",
    description: `Key distribution: ${GEN_KINDS.join(", ")} (default uniform)`,
    valueHint: "kind",
  },
  dir: {
    type: "string",
    description: "Working directory for inputs and outputs (default: a new temp dir)",
    valueHint: "dir",
  },
  keep: { type: "boolean", description: "Keep the generated inputs and outputs" },
  validate: {
    type: "boolean",
    description: "Also run the peers with --validate (global valsort verdict in the sort)",
  },
  svg: { type: "string", description: "Draw each peer's phases as SVG into this file", valueHint: "file" },
  "stagger-ms": {
    type: "string",
    description: "Start peer i after i * this many ms (default 100)",
    valueHint: "ms",
  },
  ...commonArgs,
} as const;

export default defineCommand({
  meta: { name: "demo", description: "Sort generated data with several local peers and verify the result" },
  args,
  async run({ args: a, rawArgs }) {
    checkArgs("demo", rawArgs, args);
    const peers = a.peers === undefined ? 4 : parseIntArg("--peers", a.peers, 1, maxDemoPeers);
    const size = parseSize("--size", a.size ?? "64mb");
    const staggerMs =
      a["stagger-ms"] === undefined ? 100 : parseIntArg("--stagger-ms", a["stagger-ms"], 0, 10_000);
    const kind = (a.kind ?? "uniform") as GenKind;
    if (!GEN_KINDS.includes(kind)) throw new NetsortError(`--kind must be one of ${GEN_KINDS.join(", ")}`, 2);
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
      const extraArgs = a.validate ? ["--validate"] : [];
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
      console.log("");
      console.log(`peers          ${peers} local processes on 127.0.0.1 (started ${staggerMs} ms apart)`);
      console.log(`data           ${check.records} records, ${formatBytes(totalBytes)} (${kind})`);
      console.log(
        `sort           ${Math.round(run.wallMs)} ms from first start to last exit, ${formatRate(totalBytes, run.wallMs)}`,
      );
      for (const p of run.peers) {
        const t = p.timings;
        if (t === null) continue;
        console.log(
          `  peer ${String(p.id).padEnd(3)}    ${String(t.outputRecords).padStart(10)} records out, read ${Math.round(t.readMs)} ms, exchange ${Math.round(t.exchangeMs)} ms, sort ${Math.round(t.sortMs)} ms, write ${Math.round(t.writeMs)} ms, peak RSS ${formatBytes(t.peakRssBytes)}`,
        );
      }
      console.log(
        `check          ${check.valid ? "VALID" : "INVALID"}: sorted=${check.sorted}, same records as inputs=${check.inputsMatch}, duplicate keys ${check.duplicates}, checksum ${check.checksums.outputs} (${Math.round(checkMs)} ms)`,
      );
      if (!check.valid) return 1;
      if (!ownDir || a.keep) console.log(`files          ${dir}`);
      return 0;
    } finally {
      if (ownDir && !a.keep) rmSync(dir, { recursive: true, force: true });
    }
  },
});
