/**
 * `netsort bench`: measure the sort with real local peer processes. Generates the
 * inputs once, runs the mesh --runs times, verifies the first outputs, and prints
 * per-peer phase medians, MB/s, peak RSS and the balance (largest output over the
 * mean, what --partition changes); with --c, the C baseline on the same
 * inputs and the ratio of the medians; with --startup, the startup figures.
 */

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import {
  type BenchReport,
  benchTimeline,
  findCBaseline,
  maxBenchPeers,
  maxBenchRuns,
  medianRunIndex,
  resolveNetsortCommand,
  runBench,
  spillReportLines,
  writeTimelineSvg,
} from "../local/bench.ts";
import { formatBytes, log } from "../log.ts";
import { writeSecretFile } from "../secret.ts";
import { GEN_KINDS } from "../tools/gen.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";
import { peerArgv, peerFlags } from "./peer-flags.ts";

/** More input per peer than this is not a benchmark a laptop-sized machine can host. */
const maxBenchBytesPerPeer = 64 * 1024 ** 3;

const args = {
  positionals: [],
  flags: {
    peers: {
      type: "string",
      valueHint: "n",
      description: "Number of local peers",
      default: "4",
      parse: { kind: "int", min: 1, max: maxBenchPeers },
    },
    size: {
      type: "string",
      valueHint: "size",
      description: "Input size PER PEER, binary units; the total is peers x size",
      default: "256mb",
      parse: { kind: "size", min: 1, max: maxBenchBytesPerPeer },
    },
    kind: {
      type: "string",
      valueHint: "kind",
      description: "Key distribution",
      choices: GEN_KINDS,
      default: "uniform",
    },
    runs: {
      type: "string",
      valueHint: "n",
      description: "Sort runs; medians are over these; 0 with --startup measures startup only",
      default: "5",
      parse: { kind: "int", min: 0, max: maxBenchRuns },
    },
    json: { type: "boolean", description: "Print one JSON document on stdout" },
    validate: {
      type: "boolean",
      description: "Run the peers with --validate and report its cost per peer (validate column)",
    },
    dir: {
      type: "string",
      valueHint: "dir",
      description: "Working directory for inputs and outputs (default: a new temp dir, removed after)",
    },
    c: {
      type: "boolean",
      description: "Also run the C baseline (bench/c/sort-c, built with cc if missing) on the same inputs",
    },
    binary: {
      type: "string",
      valueHint: "path",
      description:
        'Peer executable (default: dist/netsort when it exists, else this netsort; "self" forces this netsort)',
    },
    startup: {
      type: "boolean",
      description: "Also time `--version` x20 and a 1-record mesh of 4 peers x5",
    },
    "secret-compare": {
      type: "boolean",
      description:
        "After each run, run the same sort with a shared secret (sealed links) and report the ratio and cost per GB",
    },
    svg: {
      type: "string",
      valueHint: "file",
      description:
        "Draw the median run's phases per peer (and the C baseline with --c) as SVG into this file",
    },
    ...peerFlags,
    ...logFlags,
  },
} as const;

const ms = (value: number) => String(Math.round(value));

/** The outputs' spread: the median run's sizes and the median of every run's largest / mean. */
function balanceLine(r: BenchReport): string {
  assert(r.median !== null, "balance of a bench that ran");
  const chosen = r.netsortRuns[medianRunIndex(r.netsortRuns.map((run) => run.wallMs))];
  const sizes = chosen.outputBytes.map((b) => formatBytes(b)).join(" / ");
  return `balance   largest output / mean = ${r.median.balance.toFixed(3)}x (median over runs); outputs of the median run ${sizes}`;
}

function printReport(r: BenchReport): void {
  const m = r.machine;
  console.log(
    `machine   ${m.cpuModel}, ${m.cpus} cpus, ${formatBytes(m.memoryBytes)}, ${m.platform}-${m.arch}, Bun ${m.bunVersion}, load ${m.loadAverage.toFixed(2)} at start, ${m.date}`,
  );
  console.log(`netsort   ${r.netsort}`);
  if (r.median !== null) {
    console.log(
      `data      ${r.peers} peers x ${formatBytes(r.bytesPerPeer)} = ${formatBytes(r.totalBytes)} (${r.totalRecords} records, ${r.kind}), --partition ${r.partition}, ${r.runs} runs, output ${r.verified ? "verified" : "NOT verified"}`,
    );
    console.log("");
    console.log(
      "per peer, median over runs (ms; read and exchange end at the peer's own instants; drain: sort + write during them)",
    );
    const header = [
      "peer",
      "connect",
      "sample",
      "read",
      "exchange",
      "drain",
      "sort",
      "write",
      "validate",
      "other",
      "total",
      "process",
      "cpu",
      "peak RSS",
      "RSS/share",
    ];
    const widths = [4, 8, 7, 7, 9, 6, 6, 6, 9, 6, 7, 8, 7, 11, 10];
    const row = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" ");
    console.log(row(header));
    for (const p of r.median.peers) {
      console.log(
        row([
          String(p.id),
          ms(p.connectMs),
          ms(p.sampleMs),
          ms(p.readMs),
          ms(p.exchangeMs),
          ms(p.drainMs),
          ms(p.sortMs),
          ms(p.writeMs),
          ms(p.validateMs),
          ms(p.otherMs),
          ms(p.totalMs),
          ms(p.processMs),
          p.cpuUserMs < 0 ? "-" : ms(p.cpuUserMs + p.cpuSystemMs),
          formatBytes(p.peakRssBytes),
          `${p.rssPerShare.toFixed(2)}x`,
        ]),
      );
    }
    const spills = spillReportLines(r);
    if (spills.length > 0) console.log(["", ...spills].join("\n"));
    console.log("");
    console.log(
      `netsort   median wall ${ms(r.median.wallMs)} ms (first spawn to last exit), ${r.median.mbPerSec.toFixed(1)} MB/s, cpu of all peers ${r.median.cpuMs < 0 ? "unknown" : `${ms(r.median.cpuMs)} ms`}`,
    );
    console.log(balanceLine(r));
  }
  if (r.c !== null) {
    const p = r.c.median.phases;
    const phases = ["mapMs", "countMs", "scatterMs", "sortMs", "writeMs", "fsyncMs"]
      .filter((k) => p[k] !== undefined)
      .map((k) => `${k.replace(/Ms$/, "")} ${ms(p[k])}`)
      .join(", ");
    console.log(
      `C         median wall ${ms(r.c.median.wallMs)} ms, ${r.c.median.mbPerSec.toFixed(1)} MB/s, cpu ${ms(r.c.median.cpuMs)} ms (${phases}; peak RSS ${formatBytes(p.peakRssBytes ?? 0)}), output ${r.c.verified ? "verified" : "NOT verified"}`,
    );
    const cpuRatio = r.c.cpuRatio < 0 ? "" : `; cpu time ${r.c.cpuRatio.toFixed(2)}x`;
    console.log(
      `ratio     netsort / C = ${r.c.ratio.toFixed(2)}x wall (medians of the same session)${cpuRatio}`,
    );
  }
  if (r.sealed !== null) {
    const x = r.sealed;
    const cpu = x.median.cpuMs < 0 ? "unknown" : `${ms(x.median.cpuMs)} ms`;
    console.log(
      `sealed    median wall ${ms(x.median.wallMs)} ms, ${x.median.mbPerSec.toFixed(1)} MB/s, cpu of all peers ${cpu}, output ${x.verified ? "verified" : "NOT verified"} (secret ${x.secretFile})`,
    );
    const cpuRatio = x.cpuRatio < 0 ? "" : `; cpu ${x.cpuRatio.toFixed(2)}x`;
    const cpuCost = Number.isNaN(x.cpuMsPerGb) ? "" : `, ${ms(x.cpuMsPerGb)} ms cpu`;
    console.log(
      `ratio     sealed / plain = ${x.ratio.toFixed(2)}x wall${cpuRatio} (medians, runs alternating); cost per GB sorted: ${ms(x.wallMsPerGb)} ms wall${cpuCost}`,
    );
  }
  if (r.startup !== null) {
    console.log(
      `startup   --version median ${ms(r.startup.versionMs.median)} ms; 1-record mesh of 4 peers median ${ms(r.startup.meshMs.median)} ms`,
    );
  }
}

export default defineTableCommand({
  name: "bench",
  summary: "Measure the sort with local peers: per-phase timings, MB/s, peak memory",
  notes: [
    "Progress goes to stderr, the report (or --json) to stdout. --partition, --memory,",
    "--rounds, --temp-dir and --secret-file are passed on to every peer.",
    "--secret-compare runs every sort twice, without and with a secret (--secret-file, or a fresh",
    "one bench writes), and reports sealed / plain; NETSORT_SECRET must be unset for it.",
  ],
  args,
  async run(a) {
    const { peers, runs, kind } = a;
    const bytesPerPeer = a.size;
    if (runs === 0 && !a.startup) throw new UsageError("bench: --runs: 0 measures nothing without --startup");
    const netsort = resolveNetsortCommand(a.binary);
    let cBaseline: string | null = null;
    if (a.c && runs > 0) {
      cBaseline = findCBaseline();
      if (cBaseline === null) {
        throw new NetsortError(
          "--c: no bench/c/sort-c and it could not be built (needs bench/c/sort.c and cc)",
        );
      }
    }
    if (a["secret-compare"] && process.env.NETSORT_SECRET) {
      throw new UsageError(
        "bench: --secret-compare needs NETSORT_SECRET unset (the runs without a secret would inherit it)",
      );
    }
    const progress = (line: string) => log.info(line);
    if (netsort.warning !== null) log.warn(netsort.warning);

    const ownDir = a.dir === undefined;
    const dir = a.dir ?? mkdtempSync(join(tmpdir(), "netsort-bench-"));
    mkdirSync(dir, { recursive: true });
    // --secret-compare: the given --secret-file seals the compared runs only; without one, a fresh secret.
    let secretCompare: string | null = null;
    let ownSecret: string | null = null;
    if (a["secret-compare"]) {
      secretCompare = a["secret-file"] ?? join(dir, "bench-secret");
      if (a["secret-file"] === undefined) {
        writeSecretFile(secretCompare);
        ownSecret = secretCompare;
      }
    }
    const peerArgs = peerArgv(a["secret-compare"] ? { ...a, "secret-file": undefined } : a);
    try {
      progress(
        `bench: ${peers} peers x ${formatBytes(bytesPerPeer)} per peer = ${formatBytes(bytesPerPeer * peers)} of ${kind} records, ${runs} runs, peers run ${netsort.label}${cBaseline === null ? "" : `, C baseline ${cBaseline}`}`,
      );
      const report = await runBench({
        peers,
        bytesPerPeer,
        kind,
        runs,
        dir,
        netsort,
        cBaseline,
        startup: a.startup,
        validate: a.validate,
        peerArgs,
        partition: a.partition === "sample" ? "sample" : "bits",
        progress,
        secretCompare,
      });
      if (a.svg !== undefined) writeTimelineSvg(a.svg, benchTimeline(report));
      if (a.json) console.log(JSON.stringify(report, null, 2));
      else printReport(report);
      return 0;
    } finally {
      if (ownSecret !== null) rmSync(ownSecret, { force: true });
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    }
  },
});
