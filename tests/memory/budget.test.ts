import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { EXIT_USAGE, UsageError } from "../../src/errors.ts";
import { batchBytes } from "../../src/limits.ts";
import {
  availableMemory,
  checkMemoryBudget,
  defaultMemoryBudget,
  type MemoryFiles,
  minimumBudgetBytes,
  pageCacheHeadroomShare,
  peerBuffersBytes,
  runtimeOverheadBytes,
  storeBudgetBytes,
} from "../../src/memory/budget.ts";
import { minimumStoreBytes } from "../../src/sort/spill.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const root = mkdtempSync(join(tmpdir(), "netsort-budget-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let trees = 0;

/** A fake /proc and /sys/fs/cgroup: `files` maps paths (relative to the tree) to contents. */
function fakeTree(files: Record<string, string>): MemoryFiles {
  const base = join(root, `tree${trees++}`);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(base, path)), { recursive: true });
    writeFileSync(join(base, path), text);
  }
  return {
    procSelfCgroup: join(base, "proc/self/cgroup"),
    cgroupRoot: join(base, "sys/fs/cgroup"),
    meminfo: join(base, "proc/meminfo"),
  };
}

const meminfo = (availableKb: number) =>
  `MemTotal:       24683656 kB\nMemFree:        1000000 kB\nMemAvailable:   ${availableKb} kB\nBuffers:        1 kB\n`;
const V1_UNLIMITED = "9223372036854771712\n";

describe("availableMemory: cgroup limits and MemAvailable", () => {
  test("cgroup v2, nested: the parent's limit binds when the leaf says max", () => {
    const files = fakeTree({
      "proc/self/cgroup": "0::/batch.slice/job-7.scope\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
      "sys/fs/cgroup/batch.slice/memory.max": `${GiB}\n`,
      "sys/fs/cgroup/batch.slice/job-7.scope/memory.max": "max\n",
    });
    const found = availableMemory(files);
    expect(found.bytes).toBe(GiB);
    expect(found.source).toBe(`cgroup v2 ${files.cgroupRoot}/batch.slice/memory.max`);
  });

  test("cgroup v2: the leaf's own limit when it is the tightest, and memory.high below memory.max", () => {
    const leaf = fakeTree({
      "proc/self/cgroup": "0::/a/b\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/a/memory.max": `${2 * GiB}\n`,
      "sys/fs/cgroup/a/b/memory.max": `${700 * MiB}\n`,
    });
    expect(availableMemory(leaf).bytes).toBe(700 * MiB);
    const high = fakeTree({
      "proc/self/cgroup": "0::/a\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/a/memory.max": `${2 * GiB}\n`,
      "sys/fs/cgroup/a/memory.high": `${GiB}\n`,
    });
    expect(availableMemory(high).bytes).toBe(GiB);
    expect(availableMemory(high).source).toContain("memory.high");
  });

  test("cgroup v2 'max' all the way up: MemAvailable decides", () => {
    const files = fakeTree({
      "proc/self/cgroup": "0::/user.slice\n",
      "proc/meminfo": meminfo(3 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/user.slice/memory.max": "max\n",
    });
    expect(availableMemory(files)).toEqual({ bytes: 3 * GiB, source: `${files.meminfo} MemAvailable` });
  });

  test("MemAvailable below the cgroup limit wins", () => {
    const files = fakeTree({
      "proc/self/cgroup": "0::/x\n",
      "proc/meminfo": meminfo(512 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/x/memory.max": `${GiB}\n`,
    });
    expect(availableMemory(files).bytes).toBe(512 * MiB);
  });

  test("hybrid layout: v2 under unified/, v1 memory controller elsewhere", () => {
    const files = fakeTree({
      "proc/self/cgroup": "4:memory:/process_api/abc\n0::/\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/unified/cgroup.controllers": "\n",
      "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
      "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": `${300 * MiB}\n`,
    });
    const found = availableMemory(files);
    expect(found.bytes).toBe(300 * MiB);
    expect(found.source).toBe(`cgroup v1 ${files.cgroupRoot}/memory/process_api/abc/memory.limit_in_bytes`);
  });

  test("cgroup v1: unlimited is no limit; a combined controller mount is read too", () => {
    const unlimited = fakeTree({
      "proc/self/cgroup": "9:memory:/docker/abc\n",
      "proc/meminfo": meminfo(2 * 1024 * 1024),
      "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
      "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": V1_UNLIMITED,
    });
    expect(availableMemory(unlimited)).toEqual({
      bytes: 2 * GiB,
      source: `${unlimited.meminfo} MemAvailable`,
    });
    const combined = fakeTree({
      "proc/self/cgroup": "3:cpu,memory:/job\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/cpu,memory/job/memory.limit_in_bytes": `${600 * MiB}\n`,
    });
    expect(availableMemory(combined).bytes).toBe(600 * MiB);
  });

  test("cgroup v1 in a container: the path is the host's, the container's cgroup is the mount's root", () => {
    const files = fakeTree({
      "proc/self/cgroup": "7:memory:/docker/0123abcd\n",
      "proc/meminfo": meminfo(8 * 1024 * 1024),
      "sys/fs/cgroup/memory/memory.limit_in_bytes": `${700 * MiB}\n`,
    });
    expect(availableMemory(files).bytes).toBe(700 * MiB);
  });

  test("no cgroup file, or nonsense in it: MemAvailable; nothing at all: free memory", () => {
    const none = fakeTree({ "proc/meminfo": meminfo(4 * 1024 * 1024) });
    expect(availableMemory(none).bytes).toBe(4 * GiB);
    const garbage = fakeTree({
      "proc/self/cgroup": "0::/a\n",
      "proc/meminfo": meminfo(4 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/a/memory.max": "lots\n",
    });
    expect(availableMemory(garbage).bytes).toBe(4 * GiB);
    const nothing = fakeTree({});
    const found = availableMemory(nothing);
    expect(found.bytes).toBeGreaterThan(0);
    expect(found.source).toContain("freemem");
  });

  test.skipIf(process.platform !== "linux")("this machine: a positive figure from a real file", () => {
    const found = availableMemory();
    expect(found.bytes).toBeGreaterThan(64 * MiB);
    expect(found.source).toMatch(/cgroup|meminfo/);
  });
});

describe("defaultMemoryBudget: shared among the peers on this host, less overhead and headroom", () => {
  const container = (limit: number) =>
    fakeTree({
      "proc/self/cgroup": "0::/\n",
      "proc/meminfo": meminfo(20 * 1024 * 1024),
      "sys/fs/cgroup/cgroup.controllers": "memory\n",
      "sys/fs/cgroup/memory.max": `${limit}\n`,
    });

  test("the formula, for 1 and 4 peers", () => {
    const files = container(2 * GiB);
    const one = defaultMemoryBudget(1, files);
    expect(one.bytes).toBe(Math.floor((2 * GiB - runtimeOverheadBytes) * (1 - pageCacheHeadroomShare)));
    expect(one.availableBytes).toBe(2 * GiB);
    const four = defaultMemoryBudget(4, files);
    expect(four.bytes).toBe(Math.floor((GiB / 2 - runtimeOverheadBytes) * (1 - pageCacheHeadroomShare)));
    expect(four.peersOnHost).toBe(4);
    expect(() => defaultMemoryBudget(0, files)).toThrow(RangeError);
  });

  test("a 700 MB container: one peer gets a budget it can run with, and its peak stays inside", () => {
    const files = container(700 * 1000 * 1000);
    const budget = defaultMemoryBudget(1, files);
    expect(budget.bytes).toBeGreaterThanOrEqual(minimumBudgetBytes(1));
    expect(budget.bytes + runtimeOverheadBytes).toBeLessThan(700 * 1000 * 1000);
    expect(() => checkMemoryBudget(budget.bytes, 1, budget)).not.toThrow();
  });

  test("too little memory for the peers on the host is a usage error with the numbers and the source", () => {
    const files = container(300 * MiB);
    const budget = defaultMemoryBudget(4, files);
    let error: unknown = null;
    try {
      checkMemoryBudget(budget.bytes, 4, budget);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT_USAGE);
    expect((error as Error).message).toContain(String(minimumBudgetBytes(4)));
    expect((error as Error).message).toContain(`${files.cgroupRoot}/memory.max`);
  });
});

describe("minimumBudgetBytes and the store's share", () => {
  test("the fixed buffers: one peer's own, plus at least two batch buffers per other peer", () => {
    for (const peers of [1, 2, 4, 8, 16, 64]) {
      const fixed = peerBuffersBytes(peers);
      expect(fixed - peerBuffersBytes(1)).toBeGreaterThanOrEqual((peers - 1) * 2 * batchBytes);
      expect(minimumBudgetBytes(peers)).toBe(fixed + minimumStoreBytes());
      expect(storeBudgetBytes(minimumBudgetBytes(peers), peers)).toBe(minimumStoreBytes());
    }
    // Reader chunk + own batch + receive garbage for one peer.
    expect(peerBuffersBytes(1)).toBeGreaterThan(8 * MiB);
  });

  test("an explicit --memory below the minimum is exit 2 naming both numbers", () => {
    expect(() => checkMemoryBudget(minimumBudgetBytes(4), 4)).not.toThrow();
    expect(() => checkMemoryBudget(minimumBudgetBytes(4) - 1, 4)).toThrow(UsageError);
    expect(() => checkMemoryBudget(10 * MiB, 4)).toThrow(`--memory ${10 * MiB} bytes`);
    expect(() => checkMemoryBudget(10 * MiB, 4)).toThrow(String(minimumBudgetBytes(4)));
  });
});
