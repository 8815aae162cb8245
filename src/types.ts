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
}

/** Per-phase figures of one peer's run, printed at the end and read by `bench`. */
export interface PhaseTimings {
  connectMs: number;
  readMs: number;
  exchangeMs: number;
  sortMs: number;
  writeMs: number;
  /** Time spent on --validate's checksums and summaries (0 without it). */
  validateMs: number;
  totalMs: number;
  inputRecords: number;
  outputRecords: number;
  sentBytes: number;
  receivedBytes: number;
  peakRssBytes: number;
}

/** Any function, as listed for JIT tuning (src/jit.ts). */
export type HotFunction = (...args: never[]) => unknown;
