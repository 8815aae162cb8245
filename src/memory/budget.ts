/**
 * How much memory a peer may use for records and buffers (`--memory`), and the
 * least it needs.
 *
 * The default is derived from what this process can actually have:
 * - its memory cgroup's limit, the tightest on the way from its own cgroup up to
 *   the root of the mount (a parent's limit binds its children): cgroup v2
 *   `memory.max` (and `memory.high`, above which the kernel throttles the
 *   process into reclaim), from the `0::/path` line of /proc/self/cgroup;
 *   cgroup v1 `memory.limit_in_bytes`, from the line whose controllers include
 *   `memory`. "max" and v1's "unlimited" (about 2^63) are no limit. A path that
 *   does not exist under the mount (a container that sees its own cgroup at the
 *   mount's root) leaves the root's own limit, which is the container's.
 * - /proc/meminfo MemAvailable: what the host can give without swapping.
 * The smaller of the two is shared equally among the peers of the config that
 * run on this host (they start together, so each sees the same figure). From a
 * peer's share, the runtime's own memory (runtimeOverheadBytes: Bun, JIT code,
 * socket buffers and garbage between collections) is set aside, and a quarter
 * of the rest is left as headroom (pageCacheHeadroomShare): the output and
 * spilled runs go through the page cache, which a memory cgroup charges to the
 * process until the kernel has written the pages back and reclaimed them; a
 * peer that fills its cgroup to the last page with records would push its own
 * dirty pages into synchronous reclaim, or into the OOM killer.
 * The current usage of the cgroup is not subtracted: it includes page cache
 * and the peers starting beside us, and would make the budget depend on timing.
 *
 * All file locations are parameters (MemoryFiles), so tests fake them.
 */
import { existsSync, readFileSync } from "node:fs";
import { freemem } from "node:os";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { FRAME_HEADER_BYTES } from "../exchange/protocol.ts";
import { batchBuffersPerStream } from "../exchange/streams.ts";
import { batchBytes, readChunkBytes } from "../limits.ts";
import { HUGE_PAGE_BYTES } from "../mem.ts";
import { minimumStoreBytes } from "../sort/spill.ts";

const MiB = 1024 * 1024;
/**
 * What a peer uses beyond its budget: the Bun runtime (~22 MiB at start),
 * compiled code, the mesh's socket buffers, and received buffers awaiting
 * collection. Peak RSS is the budget plus about this much.
 */
export const runtimeOverheadBytes = 96 * MiB;
/** Share of a peer's memory (after runtimeOverheadBytes) kept free for the page cache and reclaim. */
export const pageCacheHeadroomShare = 0.25;
/**
 * Received data not yet collected: src/job.ts runs a collection every
 * gcEveryReceivedBytes (4 MiB) received, so about this much is garbage at a time.
 */
const receiveGarbageBytes = 4 * MiB;
/** A cgroup v1 limit at or above this is the kernel's "unlimited" (2^63 rounded down to a page). */
const v1UnlimitedBytes = 2 ** 62;

/** Where the memory facts are read from; tests point these at fake trees. */
export interface MemoryFiles {
  /** The process's cgroup membership, normally /proc/self/cgroup. */
  procSelfCgroup: string;
  /** Where cgroup file systems are mounted, normally /sys/fs/cgroup (v2 there or under unified/, v1 under memory/). */
  cgroupRoot: string;
  /** Normally /proc/meminfo. */
  meminfo: string;
}

export const systemMemoryFiles: MemoryFiles = {
  procSelfCgroup: "/proc/self/cgroup",
  cgroupRoot: "/sys/fs/cgroup",
  meminfo: "/proc/meminfo",
};

/** Memory this process can have, and the file that said so (for messages). */
export interface AvailableMemory {
  bytes: number;
  source: string;
}

export interface MemoryBudget {
  /** The budget for one peer: records and buffers. */
  bytes: number;
  /** What the whole host (or cgroup) offers, before sharing. */
  availableBytes: number;
  source: string;
  peersOnHost: number;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** A limit file's value in bytes, or null for none ("max", unlimited, missing, unreadable, nonsense). */
function readLimit(path: string): number | null {
  const text = readText(path)?.trim();
  if (text === undefined || text === "max" || !/^\d+$/.test(text)) return null;
  const bytes = Number(text);
  return bytes >= v1UnlimitedBytes ? null : bytes;
}

/** The cgroup path and every ancestor up to "/", deepest first. */
function selfAndAncestors(path: string): string[] {
  const parts = path.split("/").filter((p) => p.length > 0);
  const out: string[] = [];
  for (let n = parts.length; n >= 0; n--) out.push(`/${parts.slice(0, n).join("/")}`);
  return out;
}

/** The tightest limit among `names` in the cgroup at `path` and its ancestors under `mount`. */
function tightest(mount: string, path: string, names: string[], label: string): AvailableMemory | null {
  let best: AvailableMemory | null = null;
  for (const dir of selfAndAncestors(path)) {
    for (const name of names) {
      const file = join(mount, dir, name);
      const bytes = readLimit(file);
      if (bytes !== null && (best === null || bytes < best.bytes))
        best = { bytes, source: `${label} ${file}` };
    }
  }
  return best;
}

/** The memory cgroup limit of this process (v2 and v1 both looked at), or null when there is none. */
export function cgroupLimit(files: MemoryFiles = systemMemoryFiles): AvailableMemory | null {
  const text = readText(files.procSelfCgroup);
  if (text === null) return null;
  let best: AvailableMemory | null = null;
  const consider = (found: AvailableMemory | null) => {
    if (found !== null && (best === null || found.bytes < best.bytes)) best = found;
  };
  for (const line of text.split("\n")) {
    const match = /^(\d+):([^:]*):(\/.*)$/.exec(line.trim());
    if (match === null) continue;
    const [, id, controllers, path] = match;
    if (id === "0" && controllers === "") {
      // cgroup v2: mounted at the root (unified) or under unified/ (hybrid).
      for (const mount of [files.cgroupRoot, join(files.cgroupRoot, "unified")]) {
        if (existsSync(join(mount, "cgroup.controllers"))) {
          consider(tightest(mount, path, ["memory.max", "memory.high"], "cgroup v2"));
          break;
        }
      }
    } else if (controllers.split(",").includes("memory")) {
      for (const name of new Set(["memory", controllers])) {
        consider(tightest(join(files.cgroupRoot, name), path, ["memory.limit_in_bytes"], "cgroup v1"));
      }
    }
  }
  return best;
}

/** /proc/meminfo MemAvailable in bytes, or null when it cannot be read. */
export function memAvailable(files: MemoryFiles = systemMemoryFiles): AvailableMemory | null {
  const text = readText(files.meminfo);
  const match = text === null ? null : /^MemAvailable:\s+(\d+)\s+kB$/m.exec(text);
  if (match === null) return null;
  return { bytes: Number(match[1]) * 1024, source: `${files.meminfo} MemAvailable` };
}

/** The memory this process can have: the smaller of its cgroup limit and MemAvailable (os.freemem() when neither is known). */
export function availableMemory(files: MemoryFiles = systemMemoryFiles): AvailableMemory {
  const limit = cgroupLimit(files);
  const host = memAvailable(files);
  if (limit !== null && (host === null || limit.bytes <= host.bytes)) return limit;
  if (host !== null) return host;
  return { bytes: freemem(), source: "free memory (os.freemem)" };
}

/**
 * The default --memory: what this process can have, shared among the
 * `peersOnHost` peers of the config on this host, less the runtime's own
 * memory, less the page-cache headroom. May come out below
 * minimumBudgetBytes (checkMemoryBudget says so).
 */
export function defaultMemoryBudget(
  peersOnHost: number,
  files: MemoryFiles = systemMemoryFiles,
): MemoryBudget {
  if (!Number.isInteger(peersOnHost) || peersOnHost < 1)
    throw new RangeError(`peers on this host: ${peersOnHost}`);
  const available = availableMemory(files);
  const perPeer = Math.floor(available.bytes / peersOnHost);
  const bytes = Math.max(0, Math.floor((perPeer - runtimeOverheadBytes) * (1 - pageCacheHeadroomShare)));
  return { bytes, availableBytes: available.bytes, source: available.source, peersOnHost };
}

function hugeRounded(bytes: number): number {
  return bytes >= HUGE_PAGE_BYTES ? Math.ceil(bytes / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES : bytes;
}

/**
 * A peer's fixed buffers outside the record store, for a config of `peers`:
 * the reader's chunk, the partitioner's own batch, one send pool per other
 * peer (src/exchange/streams.ts; on huge pages, so whole 2 MiB pages from
 * 1 MiB up), and received data awaiting collection.
 */
export function peerBuffersBytes(peers: number): number {
  if (!Number.isInteger(peers) || peers < 1) throw new RangeError(`peers: ${peers}`);
  const stride = Math.ceil((FRAME_HEADER_BYTES + batchBytes) / 8) * 8;
  const pool = batchBuffersPerStream(peers) * stride;
  const poolBytes = pool > HUGE_PAGE_BYTES / 2 ? hugeRounded(Math.max(pool, HUGE_PAGE_BYTES)) : pool;
  return (
    hugeRounded(readChunkBytes) +
    FRAME_HEADER_BYTES +
    batchBytes +
    (peers - 1) * poolBytes +
    receiveGarbageBytes
  );
}

/** The least --memory a peer of `peers` can run with: its fixed buffers and the smallest spilling store. */
export function minimumBudgetBytes(peers: number): number {
  return peerBuffersBytes(peers) + minimumStoreBytes();
}

/** Of a peer's budget, what its record store (SpillingStore budgetBytes) gets. */
export function storeBudgetBytes(memoryBytes: number, peers: number): number {
  return memoryBytes - peerBuffersBytes(peers);
}

function mb(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/**
 * A budget below the minimum is a usage error (exit 2) saying both numbers, and
 * for a derived default, where it came from. Call before any data moves.
 */
export function checkMemoryBudget(
  memoryBytes: number,
  peers: number,
  derived: MemoryBudget | null = null,
): void {
  const minimum = minimumBudgetBytes(peers);
  if (memoryBytes >= minimum) return;
  if (derived === null) {
    throw new UsageError(
      `--memory ${memoryBytes} bytes (${mb(memoryBytes)}) is below the ${minimum} bytes (${mb(minimum)}) a peer of ${peers} needs`,
    );
  }
  throw new UsageError(
    `not enough memory: ${mb(derived.availableBytes)} available (${derived.source}) shared by ${derived.peersOnHost} peer(s) on this host leaves ${mb(memoryBytes)} per peer after ${mb(runtimeOverheadBytes)} for the runtime and page-cache headroom, below the ${minimum} bytes (${mb(minimum)}) a peer of ${peers} needs; run fewer peers here or give them more memory`,
  );
}
