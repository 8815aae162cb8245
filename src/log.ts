/**
 * The one logger. Every log line goes to stderr, for every command, so stdout
 * carries only data and JSON (`netsort sort ... --json | jq` works without -q).
 * A line is the message alone; warnings and errors carry a "warning: " or
 * "error: " tag, debug lines "debug: ". An error is one line; --verbose adds its
 * stack trace. Levels: --quiet shows warnings and errors only, --verbose adds
 * debug lines.
 */
import { type ConsolaReporter, createConsola, type LogObject } from "consola";

let verbose = false;

const tags: Record<string, string> = {
  fatal: "error: ",
  error: "error: ",
  warn: "warning: ",
  debug: "debug: ",
  trace: "trace: ",
  verbose: "debug: ",
};

function text(arg: unknown): string {
  if (arg instanceof Error) return verbose && arg.stack !== undefined ? arg.stack : arg.message;
  return typeof arg === "string" ? arg : Bun.inspect(arg);
}

/** Exported for tests: the line a log call writes, without the newline. */
export function formatLogLine(logObj: Pick<LogObject, "type" | "args">): string {
  return `${tags[logObj.type] ?? ""}${logObj.args.map(text).join(" ")}`;
}

const stderrReporter: ConsolaReporter = {
  log(logObj) {
    // console.error writes synchronously in Bun: the line is out before process.exit.
    console.error(formatLogLine(logObj));
  },
};

export const log = createConsola({ level: 3, reporters: [stderrReporter] });

export function setLogLevel(level: "quiet" | "normal" | "verbose"): void {
  verbose = level === "verbose";
  log.level = level === "quiet" ? 1 : level === "verbose" ? 4 : 3;
}

export function isVerbose(): boolean {
  return verbose;
}

/** A human-readable byte count: 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Throughput in MB/s (10^6 bytes per second), with one decimal. */
export function formatRate(bytes: number, ms: number): string {
  if (ms <= 0) return "-";
  return `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`;
}
