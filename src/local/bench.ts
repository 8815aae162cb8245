/**
 * The measurement behind `netsort bench`: generate inputs once, warm the page
 * cache, run the local mesh of real peer processes several times (and, when
 * asked, the C baseline of bench/c/ on the same inputs, interleaved run by run
 * so both see the same machine), verify the first outputs of each, and reduce
 * everything to medians. Printing is the CLI's job (src/cli/bench.ts).
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { assert, NetsortError } from "../errors.ts";
import { readChunkBytes } from "../limits.ts";
import { formatBytes } from "../log.ts";
import { RECORD_BYTES } from "../record.ts";
import { type CheckResult, checkFiles } from "../tools/check.ts";
import { type GenKind, generate, roundUpToRecords } from "../tools/gen.ts";
import type { PartitionMode, PhaseSpan, SpillSummary } from "../types.ts";
import { type ClusterRun, runLocalCluster, selfCommand, writeLocalConfig } from "./cluster.ts";
import { cBaselineRow, peerRows, renderTimelineSvg, type Timeline } from "./svg.ts";

export const maxBenchPeers = 64;
export const maxBenchRuns = 50;
/** `--version` is timed this many times for the startup figure. */
const startupVersionRuns = 20;
/** The 1-record mesh of the startup figure: this many peers, this many runs. */
const startupMeshPeers = 4;
const startupMeshRuns = 5;
/** Hard bound on one C baseline run, ms. */
const cTimeoutMs = 30 * 60 * 1000;
/** Hard bound on one `--version` run, ms: startup is meant to take tens of ms. */
const versionTimeoutMs = 10_000;

/** The repository root when running from source; null inside a compiled binary. */
function sourceRoot(): string | null {
  if (import.meta.dir.startsWith("/$bunfs/") || import.meta.dir.startsWith("B:\\~BUN\\")) return null;
  return join(import.meta.dir, "..", "..");
}

/** The newest modification time (ms) of any file under `dir`, bounded by the tree's size. */
function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

export interface NetsortCommand {
  command: string[];
  /** How to name it in reports: a path, or "bun src/cli/main.ts". */
  label: string;
  /** Set when the compiled binary looks older than the sources. */
  warning: string | null;
}

/**
 * What the peers run: `binary` when given ("self": this netsort, even from source);
 * else dist/netsort beside the sources when it exists (the issue measures the
 * compiled binary); else this netsort again.
 */
export function resolveNetsortCommand(binary?: string): NetsortCommand {
  if (binary === "self") return selfNetsort();
  if (binary !== undefined) {
    if (!existsSync(binary)) throw new NetsortError(`bench: --binary ${binary}: no such file`, 2);
    return { command: [binary], label: binary, warning: null };
  }
  const root = sourceRoot();
  const dist = root === null ? null : join(root, "dist", "netsort");
  if (root !== null && dist !== null && existsSync(dist)) {
    const stale = newestMtimeMs(join(root, "src")) > statSync(dist).mtimeMs;
    const warning = stale
      ? `${dist} is older than src/: run \`bun run build\` to measure the current code`
      : null;
    return { command: [dist], label: dist, warning };
  }
  return selfNetsort();
}

function selfNetsort(): NetsortCommand {
  const command = selfCommand();
  return { command, label: command.join(" "), warning: null };
}

/**
 * The C baseline executable: bench/c/sort-c, built with bench/c/build.sh when it
 * is missing and a C compiler is there. Null when neither works.
 */
export function findCBaseline(): string | null {
  const roots = [sourceRoot(), process.cwd()].filter((r): r is string => r !== null);
  for (const root of roots) {
    const exe = join(root, "bench", "c", "sort-c");
    const source = join(root, "bench", "c", "sort.c");
    if (existsSync(exe) && (!existsSync(source) || statSync(exe).mtimeMs >= statSync(source).mtimeMs))
      return exe;
    if (!existsSync(source)) continue;
    const built = Bun.spawnSync(["sh", join(root, "bench", "c", "build.sh")], {
      stdout: "pipe",
      stderr: "pipe",
    });
    if (built.exitCode === 0 && existsSync(exe)) return exe;
  }
  return null;
}

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memoryBytes: number;
  platform: string;
  arch: string;
  bunVersion: string;
  /** 1-minute load average when the bench started: other work skews the figures. */
  loadAverage: number;
  date: string;
}

function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? "unknown",
    cpus: cpus.length,
    memoryBytes: os.totalmem(),
    platform: process.platform,
    arch: process.arch,
    bunVersion: Bun.version,
    loadAverage: os.loadavg()[0],
    date: new Date().toISOString(),
  };
}

/** One peer's phases as durations, ms. `read` and `exchange` come from the peer's end-of-phase instants. */
export interface PeerPhases {
  id: number;
  /** Start to every mesh connection up (overlaps read). */
  connectMs: number;
  /** --partition sample: drawing, exchanging and splitting the samples, before the read (0 with bits). */
  sampleMs: number;
  /** Own input read, partitioned and handed to the sockets (after the sample phase). */
  readMs: number;
  /** End of read to the last incoming stream received. */
  exchangeMs: number;
  /** Key-range rounds: sorting and writing while records still arrived (overlaps read and exchange). */
  drainMs: number;
  sortMs: number;
  /** Writing, fsync, and the rename after the commit. */
  writeMs: number;
  /** --validate's checksums, summaries and verdict (spread over read, write and commit; 0 without it). */
  validateMs: number;
  /** Total minus the phases above: the wait for every peer's ready, closing. */
  otherMs: number;
  /** The peer's own start to its end (not counting process startup). */
  totalMs: number;
  /** Spawn to exit, as seen by bench. */
  processMs: number;
  /** CPU time of the process (user, system), ms; -1 when /usr/bin/time is not there to tell. */
  cpuUserMs: number;
  cpuSystemMs: number;
  peakRssBytes: number;
  outputRecords: number;
  sentBytes: number;
  receivedBytes: number;
  /** The peer's own clock (PhaseTimings): when it started, and its phases since then; for `--svg`. */
  startedAtEpochMs: number;
  spans: PhaseSpan[];
  /** The peer's --json `spill` (runs, bytes, merge): null when its share fitted its --memory. */
  spill: SpillSummary | null;
}

export interface NetsortRun {
  run: number;
  /** First peer spawned to last peer exited. */
  wallMs: number;
  mbPerSec: number;
  /** CPU time of all peers together, ms (-1 when unknown): unlike wall time, other load barely moves it. */
  cpuMs: number;
  /** 1-minute load average just before the run. */
  loadAverage: number;
  /** Size of each peer's output file, bytes, read from the file system after the run. */
  outputBytes: number[];
  /** Largest output over the mean output (1 = perfectly even): what --partition is about. */
  balance: number;
  peers: PeerPhases[];
}

/** The C baseline's own phase timings (its JSON line) plus the wall time bench saw. */
export interface CRun {
  run: number;
  wallMs: number;
  mbPerSec: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  phases: Record<string, number>;
}

export interface PeerSummary
  extends Omit<PeerPhases, "peakRssBytes" | "startedAtEpochMs" | "spans" | "spill"> {
  /** Max over runs. */
  peakRssBytes: number;
  /** Medians over runs of the spill figures (0 for runs that did not spill): runs written, bytes, merge time. */
  spillRuns: number;
  spilledBytes: number;
  mergeMs: number;
  /** Runs (of the bench's runs) in which this peer spilled. */
  spilledIn: number;
  /** Peak RSS over the peer's input share. */
  rssPerShare: number;
}

export interface BenchReport {
  machine: MachineInfo;
  netsort: string;
  peers: number;
  kind: GenKind;
  bytesPerPeer: number;
  totalBytes: number;
  totalRecords: number;
  runs: number;
  generateMs: number;
  warmMs: number;
  warning: string | null;
  /** Every output of the first run was checked: sorted, ownership order, same records as the inputs. */
  verified: boolean;
  netsortRuns: NetsortRun[];
  /** --partition the peers ran with. */
  partition: PartitionMode;
  /** Medians over runs; null when no run was made. */
  median: {
    wallMs: number;
    mbPerSec: number;
    cpuMs: number;
    /** Median over runs of each run's largest / mean output size. */
    balance: number;
    peers: PeerSummary[];
  } | null;
  c: {
    command: string;
    verified: boolean;
    runs: CRun[];
    median: { wallMs: number; mbPerSec: number; cpuMs: number; phases: Record<string, number> };
    /** netsort median wall / C median wall: below 1 means netsort is faster. */
    ratio: number;
    /** netsort median CPU time (all peers) / C median CPU time; -1 when unknown. */
    cpuRatio: number;
  } | null;
  startup: StartupReport | null;
  /** --secret-compare: the same sort with a shared secret (sealed links), run alternately with the plain runs. */
  sealed: SealedReport | null;
}

export interface SealedReport {
  secretFile: string;
  verified: boolean;
  runs: NetsortRun[];
  median: { wallMs: number; mbPerSec: number; cpuMs: number };
  /** Sealed median wall / plain median wall (same session, runs alternating). */
  ratio: number;
  /** Sealed median CPU (all peers) / plain median CPU; -1 when unknown. */
  cpuRatio: number;
  /** (sealed - plain) median wall per GB of input sorted, ms. */
  wallMsPerGb: number;
  /** (sealed - plain) median CPU of all peers per GB of input sorted, ms; NaN when unknown. */
  cpuMsPerGb: number;
}

export interface StartupReport {
  /** `--version`, spawn to exit, ms. */
  versionMs: { median: number; runs: number[] };
  /** 4 peers started together on 1 record each, first spawn to last exit, ms. */
  meshMs: { median: number; runs: number[] };
}

export interface BenchOptions {
  peers: number;
  /** Input per peer; rounded up to whole records. */
  bytesPerPeer: number;
  kind: GenKind;
  runs: number;
  /** Working directory; the caller creates and removes it. */
  dir: string;
  netsort: NetsortCommand;
  /** C baseline executable, or null to skip it. */
  cBaseline: string | null;
  startup: boolean;
  /** Run the peers with --validate (global valsort verdict); its cost shows as validateMs. */
  validate?: boolean;
  /** More `sort` flags for every peer (--partition, --memory, --temp-dir, --secret-file). */
  peerArgs?: readonly string[];
  /** The --partition inside peerArgs, for the report (default bits). */
  partition?: PartitionMode;
  /** One line of progress per step (the CLI logs it: stderr). */
  progress: (line: string) => void;
  /**
   * --secret-compare: a secret file; every run is followed by the same sort with
   * `--secret-file` (peerArgs must hold no secret), and the report compares them.
   */
  secretCompare?: string | null;
}

export function median(values: number[]): number {
  assert(values.length > 0, "median of at least one value");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function mbPerSec(bytes: number, ms: number): number {
  return ms > 0 ? bytes / 1e6 / (ms / 1000) : 0;
}

/**
 * Read every input once so that every run, the first included, starts from the
 * page cache, and flush it to disk: freshly generated inputs are dirty pages that
 * the kernel writes back ~30 s later, in the middle of the runs, where that
 * writeback competed with the runs' own output and fsync.
 */
function warmPageCache(files: string[]): void {
  const buf = new Uint8Array(readChunkBytes);
  for (const file of files) {
    const fd = openSync(file, "r");
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0) {}
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function describeCheck(check: CheckResult): string {
  const parts: string[] = [];
  if (!check.sorted && check.firstDisorder !== null) {
    const d = check.firstDisorder;
    parts.push(`${d.file} record ${d.record} is out of order`);
  }
  if (check.inputsMatch === false) {
    parts.push(
      `outputs hold ${check.records} records (checksum ${check.checksums.outputs}), inputs ${check.inputRecords} (${check.checksums.inputs})`,
    );
  }
  return parts.join("; ");
}

/** Peers run under `/usr/bin/time -f` (when it exists) so that bench learns their CPU time. */
const cpuTag = "netsort-bench-cpu";
const timeWrapper = existsSync("/usr/bin/time") ? ["/usr/bin/time", "-f", `${cpuTag} %U %S`] : [];
const cpuLine = new RegExp(`^${cpuTag} ([0-9.]+) ([0-9.]+)$`, "m");

/** The peer's own last words: its last log line, not the lines /usr/bin/time adds. */
function lastWords(output: string): string {
  const lines = output
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith(cpuTag) && !line.startsWith("Command exited with"));
  return lines.findLast((line) => /error/i.test(line)) ?? lines.at(-1) ?? "";
}

function peerFailure(run: ClusterRun): string | null {
  const failed = run.peers.filter((p) => p.exitCode !== 0 || p.timings === null);
  if (failed.length === 0) return null;
  // Peers usually repeat the root cause another peer told them: say each reason once.
  const byReason = new Map<string, number[]>();
  for (const p of failed) {
    const reason = `exited ${p.exitCode}${lastWords(p.output) === "" ? "" : `: ${lastWords(p.output)}`}`;
    byReason.set(reason, [...(byReason.get(reason) ?? []), p.id]);
  }
  return [...byReason]
    .map(([reason, ids]) => `peer${ids.length > 1 ? "s" : ""} ${ids.join(",")} ${reason}`)
    .join("; ");
}

function phasesOf(run: ClusterRun): PeerPhases[] {
  return run.peers.map((p) => {
    const t = p.timings;
    assert(t !== null, "a successful peer printed its timings");
    const cpu = cpuLine.exec(p.output);
    const exchangeMs = t.exchangeMs;
    const sampleMs = t.sampleMs ?? 0;
    const otherMs = Math.max(0, t.totalMs - sampleMs - t.readMs - t.exchangeMs - t.sortMs - t.writeMs);
    return {
      id: p.id,
      connectMs: t.connectMs,
      sampleMs,
      readMs: t.readMs,
      exchangeMs,
      drainMs: t.drainMs ?? 0,
      sortMs: t.sortMs,
      writeMs: t.writeMs,
      validateMs: t.validateMs ?? 0,
      otherMs,
      totalMs: t.totalMs,
      processMs: p.elapsedMs,
      cpuUserMs: cpu === null ? -1 : Number(cpu[1]) * 1000,
      cpuSystemMs: cpu === null ? -1 : Number(cpu[2]) * 1000,
      peakRssBytes: t.peakRssBytes,
      outputRecords: t.outputRecords,
      sentBytes: t.sentBytes,
      receivedBytes: t.receivedBytes,
      startedAtEpochMs: t.startedAtEpochMs,
      spans: t.spans,
      spill: t.spill ?? null,
    };
  });
}

/**
 * Largest over mean of `sizes`: 1 when every output is the same size, `peers`
 * when one peer got everything. 1 for all-empty outputs (nothing to balance).
 */
export function balanceOf(sizes: readonly number[]): number {
  assert(sizes.length > 0, "balance of at least one output");
  const mean = sizes.reduce((sum, size) => sum + size, 0) / sizes.length;
  return mean === 0 ? 1 : Math.max(...sizes) / mean;
}

function removeFiles(files: string[]): void {
  for (const file of files) rmSync(file, { force: true });
}

async function runNetsortOnce(
  opts: BenchOptions,
  inputs: string[],
  outputs: string[],
  moreArgs: readonly string[] = [],
): Promise<ClusterRun> {
  removeFiles(outputs);
  const config = writeLocalConfig(opts.dir, inputs.length);
  const run = await runLocalCluster({
    config,
    inputs,
    outputs,
    command: opts.netsort.command,
    staggerMs: 0,
    wrapper: timeWrapper,
    extraArgs: [...(opts.validate ? ["--validate"] : []), ...(opts.peerArgs ?? []), ...moreArgs],
  });
  const failure = peerFailure(run);
  if (failure !== null) throw new NetsortError(`bench: the sort failed: ${failure}`);
  return run;
}

async function runCOnce(
  exe: string,
  inputs: string[],
  output: string,
): Promise<{ wallMs: number; cpuUserMs: number; cpuSystemMs: number; phases: Record<string, number> }> {
  rmSync(output, { force: true });
  const start = performance.now();
  const child = Bun.spawn([exe, output, ...inputs], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => child.kill("SIGKILL"), cTimeoutMs);
  try {
    const [stdout, stderr] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    const code = await child.exited;
    const wallMs = performance.now() - start;
    if (code !== 0) throw new NetsortError(`bench: C baseline ${exe} exited ${code}: ${stderr.trim()}`);
    const cpu = child.resourceUsage()?.cpuTime;
    return {
      wallMs,
      cpuUserMs: cpu === undefined ? -1 : Number(cpu.user) / 1000,
      cpuSystemMs: cpu === undefined ? -1 : Number(cpu.system) / 1000,
      phases: JSON.parse(stdout.trim()) as Record<string, number>,
    };
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

function summarisePeers(runs: NetsortRun[], bytesPerPeer: number): PeerSummary[] {
  const peers = runs[0].peers.length;
  const keys = [
    "connectMs",
    "sampleMs",
    "readMs",
    "exchangeMs",
    "drainMs",
    "sortMs",
    "writeMs",
    "validateMs",
    "otherMs",
    "totalMs",
    "processMs",
    "cpuUserMs",
    "cpuSystemMs",
    "outputRecords",
    "sentBytes",
    "receivedBytes",
  ] as const;
  return Array.from({ length: peers }, (_, id) => {
    const mine = runs.map((r) => r.peers[id]);
    const summary = { id } as PeerSummary;
    for (const key of keys) summary[key] = median(mine.map((p) => p[key]));
    summary.peakRssBytes = Math.max(...mine.map((p) => p.peakRssBytes));
    summary.spillRuns = median(mine.map((p) => p.spill?.runs ?? 0));
    summary.spilledBytes = median(mine.map((p) => p.spill?.spilledBytes ?? 0));
    summary.mergeMs = median(mine.map((p) => p.spill?.mergeMs ?? 0));
    summary.spilledIn = mine.filter((p) => p.spill !== null).length;
    summary.rssPerShare = summary.peakRssBytes / bytesPerPeer;
    return summary;
  });
}

/** `--version` x20 and a 1-record mesh of 4 peers x5: the startup targets. */
async function measureStartup(
  command: string[],
  dir: string,
  progress: (line: string) => void,
): Promise<StartupReport> {
  const versionRuns: number[] = [];
  for (let i = 0; i < startupVersionRuns; i++) {
    const start = performance.now();
    const child = Bun.spawn([...command, "--version"], { stdout: "ignore", stderr: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), versionTimeoutMs);
    const code = await child.exited;
    clearTimeout(timer);
    if (code !== 0) throw new NetsortError(`bench: ${command.join(" ")} --version exited ${code}`);
    versionRuns.push(performance.now() - start);
  }
  progress(`startup: --version median ${Math.round(median(versionRuns))} ms over ${startupVersionRuns} runs`);

  const meshDir = join(dir, "startup");
  mkdirSync(meshDir, { recursive: true });
  const inputs = Array.from({ length: startupMeshPeers }, (_, id) => join(meshDir, `input-${id}.dat`));
  const outputs = Array.from({ length: startupMeshPeers }, (_, id) => join(meshDir, `output-${id}.dat`));
  const meshRuns: number[] = [];
  try {
    for (const [id, file] of inputs.entries())
      await generate({ file, bytes: RECORD_BYTES, seed: 1 + id, kind: "uniform" });
    for (let i = 0; i < startupMeshRuns; i++) {
      removeFiles(outputs);
      const config = writeLocalConfig(meshDir, startupMeshPeers);
      const run = await runLocalCluster({ config, inputs, outputs, command, staggerMs: 0 });
      const failure = peerFailure(run);
      if (failure !== null) throw new NetsortError(`bench: the 1-record mesh failed: ${failure}`);
      if (i === 0) {
        const check = await checkFiles(outputs, inputs);
        if (!check.valid)
          throw new NetsortError(`bench: the 1-record mesh output is wrong: ${describeCheck(check)}`);
      }
      meshRuns.push(run.wallMs);
    }
  } finally {
    rmSync(meshDir, { recursive: true, force: true });
  }
  progress(
    `startup: 1-record mesh of ${startupMeshPeers} peers median ${Math.round(median(meshRuns))} ms over ${startupMeshRuns} runs`,
  );
  return {
    versionMs: { median: median(versionRuns), runs: versionRuns },
    meshMs: { median: median(meshRuns), runs: meshRuns },
  };
}

/** Free bytes on the file system holding `dir`. */
function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Generate, warm, run netsort (and C) `opts.runs` times, verify the first outputs; fills `report`. */
async function measureSorts(
  opts: BenchOptions,
  report: BenchReport,
  inputs: string[],
  outputs: string[],
  cOutput: string,
): Promise<void> {
  const { bytesPerPeer, totalBytes } = report;
  const g0 = performance.now();
  for (const [id, file] of inputs.entries())
    await generate({ file, bytes: bytesPerPeer, seed: 1 + id, kind: opts.kind });
  report.generateMs = performance.now() - g0;
  const w0 = performance.now();
  warmPageCache(inputs);
  report.warmMs = performance.now() - w0;
  opts.progress(
    `generated ${opts.peers} inputs in ${Math.round(report.generateMs)} ms, page cache warmed in ${Math.round(report.warmMs)} ms`,
  );

  const cRuns: CRun[] = [];
  let cVerified = false;
  const sealedRuns: NetsortRun[] = [];
  let sealedVerified = false;
  const secretFile = opts.secretCompare ?? null;
  /** One sort; the first of its kind (plain or sealed) has its outputs checked. */
  const sortOnce = async (run: number, moreArgs: string[], first: boolean): Promise<NetsortRun> => {
    const loadAverage = os.loadavg()[0];
    const cluster = await runNetsortOnce(opts, inputs, outputs, moreArgs);
    const outputBytes = outputs.map((file) => statSync(file).size);
    if (first) {
      const check = await checkFiles(outputs, inputs);
      if (!check.valid) throw new NetsortError(`bench: netsort output is INVALID: ${describeCheck(check)}`);
    }
    const result: NetsortRun = {
      run,
      wallMs: cluster.wallMs,
      mbPerSec: mbPerSec(totalBytes, cluster.wallMs),
      cpuMs: 0,
      loadAverage,
      outputBytes,
      balance: balanceOf(outputBytes),
      peers: phasesOf(cluster),
    };
    result.cpuMs = result.peers.some((p) => p.cpuUserMs < 0)
      ? -1
      : result.peers.reduce((sum, p) => sum + p.cpuUserMs + p.cpuSystemMs, 0);
    removeFiles(outputs);
    return result;
  };
  for (let run = 1; run <= opts.runs; run++) {
    const result = await sortOnce(run, [], run === 1);
    if (run === 1) report.verified = true;
    report.netsortRuns.push(result);
    opts.progress(formatRunLine(result));
    if (secretFile !== null) {
      // Right after the plain run, on the same inputs: the two alternate, so both see the same machine.
      const sealed = await sortOnce(run, ["--secret-file", secretFile], run === 1);
      if (run === 1) sealedVerified = true;
      sealedRuns.push(sealed);
      opts.progress(`sealed ${formatRunLine(sealed)}`);
    }
    if (opts.cBaseline !== null) {
      const c = await runCOnce(opts.cBaseline, inputs, cOutput);
      if (run === 1) {
        const check = await checkFiles([cOutput], inputs);
        if (!check.valid)
          throw new NetsortError(`bench: C baseline output is INVALID: ${describeCheck(check)}`);
        cVerified = true;
      }
      const cRun: CRun = {
        run,
        wallMs: c.wallMs,
        mbPerSec: mbPerSec(totalBytes, c.wallMs),
        cpuUserMs: c.cpuUserMs,
        cpuSystemMs: c.cpuSystemMs,
        phases: c.phases,
      };
      cRuns.push(cRun);
      opts.progress(
        `C   ${String(run).padStart(2)}  wall ${String(Math.round(c.wallMs)).padStart(6)} ms  ${cRun.mbPerSec.toFixed(1).padStart(7)} MB/s  cpu ${Math.round(c.cpuUserMs + c.cpuSystemMs)} ms`,
      );
      rmSync(cOutput, { force: true });
    }
  }
  const wallMs = median(report.netsortRuns.map((r) => r.wallMs));
  report.median = {
    wallMs,
    mbPerSec: mbPerSec(totalBytes, wallMs),
    cpuMs: median(report.netsortRuns.map((r) => r.cpuMs)),
    balance: median(report.netsortRuns.map((r) => r.balance)),
    peers: summarisePeers(report.netsortRuns, bytesPerPeer),
  };
  if (secretFile !== null) report.sealed = compareSealed(secretFile, sealedVerified, sealedRuns, report);
  if (opts.cBaseline !== null) {
    const cWallMs = median(cRuns.map((r) => r.wallMs));
    const cCpuMs = median(cRuns.map((r) => r.cpuUserMs + r.cpuSystemMs));
    const cpuMs = report.median.cpuMs;
    const phases: Record<string, number> = {};
    for (const key of Object.keys(cRuns[0].phases)) phases[key] = median(cRuns.map((r) => r.phases[key]));
    report.c = {
      command: opts.cBaseline,
      verified: cVerified,
      runs: cRuns,
      median: { wallMs: cWallMs, mbPerSec: mbPerSec(totalBytes, cWallMs), cpuMs: cCpuMs, phases },
      ratio: wallMs / cWallMs,
      cpuRatio: cpuMs < 0 || cCpuMs <= 0 ? -1 : cpuMs / cCpuMs,
    };
  }
}

/** The sealed runs against the plain ones (report.median must be set). */
function compareSealed(
  secretFile: string,
  verified: boolean,
  runs: NetsortRun[],
  report: BenchReport,
): SealedReport {
  const plain = report.median;
  assert(plain !== null && runs.length > 0, "plain and sealed runs to compare");
  const wallMs = median(runs.map((r) => r.wallMs));
  const cpuMs = median(runs.map((r) => r.cpuMs));
  const gb = report.totalBytes / 1e9;
  const cpuKnown = cpuMs >= 0 && plain.cpuMs > 0;
  return {
    secretFile,
    verified,
    runs,
    median: { wallMs, mbPerSec: mbPerSec(report.totalBytes, wallMs), cpuMs },
    ratio: wallMs / plain.wallMs,
    cpuRatio: cpuKnown ? cpuMs / plain.cpuMs : -1,
    wallMsPerGb: (wallMs - plain.wallMs) / gb,
    cpuMsPerGb: cpuKnown ? (cpuMs - plain.cpuMs) / gb : Number.NaN,
  };
}

export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  assert(opts.peers >= 1 && opts.peers <= maxBenchPeers, "peers in range");
  assert(opts.runs >= 0 && opts.runs <= maxBenchRuns, "runs in range");
  const machine = machineInfo();
  const bytesPerPeer = roundUpToRecords(opts.bytesPerPeer);
  const totalBytes = bytesPerPeer * opts.peers;
  const report: BenchReport = {
    machine,
    netsort: opts.netsort.label,
    peers: opts.peers,
    kind: opts.kind,
    bytesPerPeer,
    totalBytes,
    totalRecords: totalBytes / RECORD_BYTES,
    runs: opts.runs,
    partition: opts.partition ?? "bits",
    generateMs: 0,
    warmMs: 0,
    warning: opts.netsort.warning,
    verified: false,
    netsortRuns: [],
    median: null,
    c: null,
    startup: null,
    sealed: null,
  };
  if (opts.runs > 0) {
    // Inputs, the peers' outputs and the C output all live in `dir` at once.
    const neededBytes = totalBytes * (opts.cBaseline === null ? 2 : 3);
    const free = freeBytes(opts.dir);
    if (neededBytes > free) {
      throw new NetsortError(`bench: needs ${neededBytes} bytes in ${opts.dir}, only ${free} free`, 2);
    }
    const inputs = Array.from({ length: opts.peers }, (_, id) => join(opts.dir, `input-${id}.dat`));
    const outputs = Array.from({ length: opts.peers }, (_, id) => join(opts.dir, `output-${id}.dat`));
    const cOutput = join(opts.dir, "output-c.dat");
    try {
      await measureSorts(opts, report, inputs, outputs, cOutput);
    } finally {
      // Also in a user's --dir, also on failure; writeLocalConfig wrote cluster.yaml there.
      removeFiles([...inputs, ...outputs, cOutput, join(opts.dir, "cluster.yaml")]);
    }
  }
  if (opts.startup) report.startup = await measureStartup(opts.netsort.command, opts.dir, opts.progress);
  return report;
}

/**
 * The spill figures per peer (medians over runs), for the report: a header and
 * one line per peer; empty when no peer spilled in any run. MB/s is the peer's
 * share (its output) over its total time: the rate the spilling path sustains.
 */
export function spillReportLines(r: BenchReport): string[] {
  if (r.median === null || r.median.peers.every((p) => p.spilledIn === 0)) return [];
  const lines = ["spills per peer, median over runs (runs written incl. intermediate merges; MB = 10^6 B)"];
  lines.push(
    `${"peer".padEnd(4)} ${"spilled in".padStart(10)} ${"runs".padStart(5)} ${"spilled MB".padStart(10)} ${"merge ms".padStart(9)} ${"share MB/s".padStart(10)}`,
  );
  for (const p of r.median.peers) {
    const shareMbPerSec = mbPerSec(p.outputRecords * RECORD_BYTES, p.totalMs);
    lines.push(
      `${String(p.id).padEnd(4)} ${`${p.spilledIn}/${r.netsortRuns.length}`.padStart(10)} ${String(p.spillRuns).padStart(5)} ${(p.spilledBytes / 1e6).toFixed(0).padStart(10)} ${String(Math.round(p.mergeMs)).padStart(9)} ${shareMbPerSec.toFixed(1).padStart(10)}`,
    );
  }
  return lines;
}

/** One line per run: wall time, throughput, and every peer's own total. */
function formatRunLine(run: NetsortRun): string {
  const totals = run.peers.map((p) => Math.round(p.totalMs)).join("/");
  const cpu = run.cpuMs < 0 ? "" : `  cpu ${Math.round(run.cpuMs)} ms`;
  return `run ${String(run.run).padStart(2)}  wall ${String(Math.round(run.wallMs)).padStart(6)} ms  ${run.mbPerSec.toFixed(1).padStart(7)} MB/s${cpu}  load ${run.loadAverage.toFixed(1)}  balance ${run.balance.toFixed(3)}x  peer totals ${totals} ms`;
}

/** The index of the run whose wall time is the median (the lower of the middle two for an even count). */
export function medianRunIndex(wallMs: number[]): number {
  assert(wallMs.length > 0, "median run of at least one run");
  const order = wallMs.map((ms, i) => ({ ms, i })).sort((a, b) => a.ms - b.ms || a.i - b.i);
  return order[(order.length - 1) >> 1].i;
}

/**
 * The picture of a bench: the median netsort run, one row per peer, and with
 * --c the C baseline's median run as its own row (run separately, drawn from 0).
 * Null when no sort was run.
 */
export function benchTimeline(r: BenchReport): Timeline | null {
  if (r.netsortRuns.length === 0) return null;
  const chosen = r.netsortRuns[medianRunIndex(r.netsortRuns.map((run) => run.wallMs))];
  const rows = peerRows(chosen.peers);
  let cNote = "";
  if (r.c !== null && r.c.runs.length > 0) {
    const cRun = r.c.runs[medianRunIndex(r.c.runs.map((run) => run.wallMs))];
    rows.push(cBaselineRow(cRun.phases, "C baseline"));
    cNote = `; C baseline: its median run (${cRun.run}), on its own, from 0`;
  }
  return {
    title: `netsort bench: ${r.peers} peers x ${formatBytes(r.bytesPerPeer)} (${r.kind}), median run ${chosen.run} of ${r.netsortRuns.length}, wall ${Math.round(chosen.wallMs)} ms`,
    subtitle: `peers aligned by their start (wall clock); connect overlaps read+send${cNote}`,
    rows,
  };
}

/** The picture of one local cluster run (`demo`): one row per peer that printed its timings. */
export function clusterTimeline(run: ClusterRun, title: string): Timeline {
  const peers = run.peers.flatMap((p) =>
    p.timings === null
      ? []
      : [{ id: p.id, startedAtEpochMs: p.timings.startedAtEpochMs, spans: p.timings.spans }],
  );
  return {
    title,
    subtitle: `wall ${Math.round(run.wallMs)} ms; peers aligned by their start (wall clock); connect overlaps read+send`,
    rows: peerRows(peers),
  };
}

/** Write `timeline` as SVG to `file` (`--svg FILE`). */
export function writeTimelineSvg(file: string, timeline: Timeline | null): void {
  if (timeline === null) throw new NetsortError(`--svg ${file}: no sort was run, nothing to draw`, 2);
  try {
    writeFileSync(file, renderTimelineSvg(timeline));
  } catch (error) {
    throw new NetsortError(`--svg ${file}: ${(error as Error).message}`);
  }
}
