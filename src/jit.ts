/**
 * JIT tuning by job size. Every peer process compiles the same hot loops
 * (partition, bucket add, radix sort) through JSC's tiers; the top tier (FTL)
 * makes them faster but costs ~50-90 ms of compiler-thread CPU per function,
 * per process, whatever the data size. Measured on the 2-core project VM
 * (perf -a, samples by thread name, same session):
 * - 16 peers x 64 MiB: compiler threads 3.8-4.1 s -> 1.8-2.0 s of CPU, peer
 *   threads unchanged within noise, wall 8.4-9.0 s -> 7.8-8.0 s;
 * - 4 peers x 256 MiB: compiler threads -0.17 s, peer threads +0.28 s: a wash,
 *   so large inputs keep FTL (at 1 GiB per peer it pays).
 */

import { noFTL } from "bun:jsc";
import { assert } from "./errors.ts";
import { ftlMinInputBytes } from "./limits.ts";
import { partitionHotFunctions } from "./partition/partitioner.ts";
import { storeHotFunctions } from "./sort/buckets.ts";
import { sortHotFunctions } from "./sort/radix.ts";
import type { HotFunction } from "./types.ts";

const hotFunctions: ReadonlyArray<HotFunction> = [
  ...partitionHotFunctions,
  ...storeHotFunctions,
  ...sortHotFunctions,
];

/**
 * Call once, before any record is handled. Returns how many functions were
 * kept out of FTL (0 for large inputs).
 */
export function tuneJit(inputBytes: number): number {
  if (inputBytes >= ftlMinInputBytes) return 0;
  for (const fn of hotFunctions) {
    assert(typeof fn === "function", "jit: a hot function is missing (renamed?)");
    noFTL(fn as (...args: unknown[]) => unknown);
  }
  return hotFunctions.length;
}
