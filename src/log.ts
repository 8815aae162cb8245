/**
 * The one consola instance. Levels: --quiet shows warnings and errors only,
 * --verbose adds debug lines and stack traces.
 */
import { createConsola } from "consola";

export const log = createConsola({ level: 3, formatOptions: { date: false, compact: true } });

let verbose = false;

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
