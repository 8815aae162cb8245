/**
 * What every phase of one peer's run shares (src/job.ts builds it), and the
 * small helpers they all use: spans on the run's clock, the store and its
 * memory budget, the progress line.
 */
import { assert } from "../errors.ts";
import { endpoint } from "../exchange/link-terms.ts";
import type { Mesh } from "../exchange/mesh.ts";
import type { DurableWriter } from "../io/writer.ts";
import { defaultRounds, progressIntervalMs, roundsMinInputBytes } from "../limits.ts";
import { formatBytes, log } from "../log.ts";
import { storeBudgetBytes } from "../memory/budget.ts";
import { type KeyRange, Partitioner } from "../partition/partitioner.ts";
import { sampleRange } from "../partition/sample.ts";
import { RECORD_BYTES, rangeEnd, rangeStart } from "../record.ts";
import { type SpillEvent, SpillingStore } from "../sort/spill.ts";
import type { PhaseName, PhaseTimings, SortOptions } from "../types.ts";
import type { PeerValidation } from "../validate/validation.ts";
import { Drain } from "./drain.ts";

export interface Run {
  options: SortOptions;
  mesh: Mesh;
  /** The record store; with --partition sample it exists only once the split points are known. */
  store: SpillingStore | null;
  partitioner: Partitioner | null;
  /** Sorts and writes the complete leading part of the share while records still arrive; made with the store. */
  drain: Drain | null;
  writer: DurableWriter;
  /** The budget for records and buffers (--memory, or derived from what this host has). */
  memoryBytes: number;
  /** Where spilled runs go. */
  tempDir: string;
  validation: PeerValidation | null;
  t: PhaseTimings;
  /** performance.now() at the start: spans are ms since then. */
  startMs: number;
  inputBytes: number;
  /** Input bytes read so far in the current key-range round (the progress line). */
  readBytes: number;
}

/** Record `phase` as [fromMs, toMs) on the run's clock; returns its duration. */
export function span(run: Run, phase: PhaseName, fromMs: number, toMs = performance.now()): number {
  run.t.spans.push({ phase, startMs: fromMs - run.startMs, endMs: toMs - run.startMs });
  return toMs - fromMs;
}

/** Time --validate adds, summed where it happens (read, write, verdict). */
export function timedValidation(run: Run, fn: () => void): void {
  const fromMs = performance.now();
  fn();
  run.t.validateMs += performance.now() - fromMs;
}

export function emptyTimings(inputBytes: number, startedAtEpochMs: number): PhaseTimings {
  return {
    startedAtEpochMs,
    spans: [],
    connectMs: 0,
    sampleMs: 0,
    readMs: 0,
    exchangeMs: 0,
    drainMs: 0,
    drainedBytes: 0,
    sortMs: 0,
    writeMs: 0,
    commitMs: 0,
    validateMs: 0,
    totalMs: 0,
    inputRecords: inputBytes / RECORD_BYTES,
    outputRecords: 0,
    sentBytes: 0,
    receivedBytes: 0,
    peakRssBytes: 0,
    spill: null,
  };
}

/** The store, which must exist by now (records are arriving or being sorted). */
export function storeOf(run: Run): SpillingStore {
  assert(run.store !== null, "the store exists once records can arrive");
  return run.store;
}

/** The store for records in [rangeStart, rangeEnd) within the memory budget, and the partitioner feeding it. */
export function placeRecords(
  run: Run,
  range: { rangeStart: number; rangeEnd: number },
  expectedRecords: number,
  splitters: Uint8Array | null,
): void {
  assert(run.store === null && run.partitioner === null, "records are placed once");
  const store = new SpillingStore({
    ...range,
    expectedRecords,
    budgetBytes: storeBudgetBytes(run.memoryBytes, run.mesh.peers),
    tempDir: run.tempDir,
    onSpill: (e: SpillEvent) => logSpill(run, e),
    onBusy: () => run.mesh.keepAlive(),
  });
  run.store = store;
  const peers = run.mesh.peers;
  const ranges: KeyRange[] = Array.from({ length: peers }, (_, k) =>
    splitters === null
      ? { rangeStart: rangeStart(k, peers), rangeEnd: rangeEnd(k, peers) }
      : sampleRange(splitters, k, peers),
  );
  run.partitioner = new Partitioner(
    run.options.serverId,
    run.mesh.out,
    (buf, offset, length) => store.add(buf, offset, length),
    splitters,
    roundsFor(run, store.plannedSpill),
    ranges,
  );
  run.drain = new Drain(run);
}

/**
 * --rounds, or: defaultRounds for inputs big enough to have disk time worth
 * overlapping, whose share is expected to fit in memory (a spilling peer's
 * input may not fit in the page cache either, and each pass would read the disk).
 */
function roundsFor(run: Run, plannedSpill: boolean): number {
  if (run.options.rounds != null) return run.options.rounds;
  return run.inputBytes >= roundsMinInputBytes && !plannedSpill ? defaultRounds : 1;
}

function logSpill(run: Run, e: SpillEvent): void {
  const what = `${e.records} records (${formatBytes(e.bytes)}) in ${Math.round(e.ms)} ms`;
  if (e.run === 1) {
    log.info(
      `memory: the share does not fit in --memory ${formatBytes(run.memoryBytes)}; spilling sorted runs to ${run.tempDir}; run 1: ${what}`,
    );
  } else {
    log.info(`memory: spilled run ${e.run}: ${what}`);
  }
}

/** While the run goes on: a line every progressIntervalMs, naming missing peers while connecting, and the merge. */
export function startProgress(run: Run): Timer {
  return setInterval(() => {
    const elapsedMs = Math.round(performance.now() - run.startMs);
    const missing = run.mesh.connectedAtMs === 0 ? run.mesh.missingPeers() : [];
    const waiting =
      missing.length === 0
        ? ""
        : `; waiting for ${missing.map((s) => `peer ${s.serverId} (${endpoint(s)})`).join(", ")}`;
    const f = run.store?.figures;
    const merging =
      f !== undefined && f.mergeTotalBytes > 0
        ? `; merged ${formatBytes(f.mergedBytes)} of ${formatBytes(f.mergeTotalBytes)}`
        : "";
    const p = run.partitioner;
    const round = p !== null && p.rounds > 1 ? ` in round ${p.round + 1} of ${p.rounds}` : "";
    const drained = run.drain?.bytes ?? 0;
    const written = drained > 0 ? `, wrote ${formatBytes(drained)} of the output so far` : "";
    log.info(
      `progress at ${elapsedMs} ms: read ${formatBytes(run.readBytes)} of ${formatBytes(run.inputBytes)}${round}${written}, holding ${run.store?.heldRecords ?? 0} records${waiting}${merging}`,
    );
  }, progressIntervalMs);
}
