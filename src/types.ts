/** Shapes shared between modules. */

/** One peer as listed in the cluster config. */
export interface ServerEntry {
  serverId: number;
  host: string;
  port: number;
}

/** A validated cluster config. `servers[i].serverId === i` always holds. */
export interface ClusterConfig {
  /** The file it was read from, for messages. */
  path: string;
  servers: ServerEntry[];
  /** Hex SHA-256 of the normalised server list: peers with different configs refuse each other. */
  fingerprint: string;
}

/** Everything one peer's run needs, after the CLI has parsed and checked it. */
export interface SortOptions {
  serverId: number;
  inputFile: string;
  outputFile: string;
  config: ClusterConfig;
  /** Pause between dial attempts to a peer that is not up yet. */
  retryIntervalMs: number;
  /** Give up when the whole mesh is not up after this long. */
  connectTimeoutMs: number;
  /** An established stream with no traffic for this long counts as a failed peer. */
  idleTimeoutMs: number;
  /** A connection must finish its hello within this long or it is dropped. */
  helloTimeoutMs: number;
  /** Shared secret for challenge-response authentication, or null for none. */
  secret: Uint8Array | null;
  /** Summarise outputs valsort-style, exchange the summaries, and fail unless the global verdict is valid. */
  validate?: boolean;
  /**
   * How records find their owner: "bits" (default) gives peer i the i-th equal
   * key range (the top bits of the key for 2^n peers); "sample" draws a sample
   * of every input first and splits the whole-record order evenly.
   */
  partition?: PartitionMode;
  /** Budget for records and buffers, bytes; null: derived from the memory available to this process. */
  memoryBytes?: number | null;
  /** Where spilled runs go; null: the output's directory. */
  tempDir?: string | null;
  /** Key-range rounds (src/partition/partitioner.ts); null: chosen from the input size and memory budget. */
  rounds?: number | null;
}

export type PartitionMode = "bits" | "sample";

/** The phases of one peer's run, in the order they start. */
export type PhaseName = "connect" | "sample" | "read" | "exchange" | "sort" | "write" | "commit";

/**
 * One phase as an interval of the peer's own clock: ms since the peer started
 * (startedAtEpochMs). Phases may overlap (connect and read do).
 */
export interface PhaseSpan {
  phase: PhaseName;
  startMs: number;
  endMs: number;
}

/**
 * Per-phase figures of one peer's run, printed at the end (--json) and read by
 * `bench`. Every `...Ms` field is a duration; instants live only in `spans`.
 */
export interface PhaseTimings {
  /** Wall clock (Date.now()) when the peer started: puts every peer's spans on one time axis. */
  startedAtEpochMs: number;
  /** Start and end of each phase, ms since startedAtEpochMs. */
  spans: PhaseSpan[];
  /** Start until every connection of the mesh was up (overlaps read). */
  connectMs: number;
  /** --partition sample: drawing our sample, exchanging samples, choosing split points (0 otherwise). */
  sampleMs: number;
  /** Reading, partitioning and handing our own input to the sockets. */
  readMs: number;
  /** After our own read: waiting until every other peer's stream had arrived. */
  exchangeMs: number;
  /** Key-range rounds: sorting and writing the complete part of the share while records still arrived (overlaps read and exchange). */
  drainMs: number;
  /** ...and the output bytes written then. */
  drainedBytes: number;
  /** Sorting after the last stream arrived (the rest of the share). */
  sortMs: number;
  /** Writing and fsyncing the output under its temporary name. */
  writeMs: number;
  /** The last rounds: waiting for every peer's READY, linking the output into place, the final confirmations. */
  commitMs: number;
  /** Time spent on --validate's checksums and summaries (0 without it). */
  validateMs: number;
  totalMs: number;
  inputRecords: number;
  outputRecords: number;
  sentBytes: number;
  receivedBytes: number;
  peakRssBytes: number;
  /** What spilling cost (--memory smaller than the share); null when nothing spilled. */
  spill: SpillSummary | null;
}

export interface SpillSummary {
  /** Runs written to the temp dir (intermediate merges included). */
  runs: number;
  spilledBytes: number;
  /** Merges, the final one included. */
  mergePasses: number;
  spillMs: number;
  mergeMs: number;
}

/** Any function, as listed for JIT tuning (src/jit.ts). */
export type HotFunction = (...args: never[]) => unknown;
