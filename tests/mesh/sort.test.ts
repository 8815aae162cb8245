/**
 * End-to-end sorts with real peer processes on loopback: several cluster sizes,
 * staggered starts, empty inputs, skew, duplicates. Outputs are verified by the
 * harness's own checker, never only by `netsort check`.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  type DataKind,
  freePorts,
  killAll,
  leftoverTempFiles,
  makeRecords,
  outputPaths,
  removeDir,
  runPeers,
  tempDir,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "./harness.ts";

afterEach(() => killAll());

interface Case {
  peers: number;
  records: number[] | number;
  kind?: DataKind;
  delaysMs?: number[];
  emptyPeers?: number[];
}

async function sortCase(c: Case): Promise<void> {
  const dir = tempDir();
  try {
    const perPeer = Array.from({ length: c.peers }, (_, id) => {
      const n = Array.isArray(c.records) ? c.records[id] : c.records;
      const kind = c.emptyPeers?.includes(id) ? "empty" : (c.kind ?? "uniform");
      return makeRecords(n, kind, 1000 + id * 7 + c.peers);
    });
    const config = writeConfig(dir, freePorts(c.peers));
    const inputs = writeInputs(dir, perPeer);
    const outputs = outputPaths(dir, c.peers);
    const results = await runPeers(config, inputs, outputs, { delaysMs: c.delaysMs });
    for (const r of results) {
      if (r.exitCode !== 0) throw new Error(`peer ${r.id} exited ${r.exitCode}: ${r.stderr}${r.stdout}`);
    }
    expect(verifyOutputs(inputs, outputs)).toEqual([]);
    expect(leftoverTempFiles(dir)).toEqual([]);
  } finally {
    removeDir(dir);
  }
}

describe("mesh sort", () => {
  test("1 peer sorts alone", () => sortCase({ peers: 1, records: 5000 }), 20_000);
  test("2 peers", () => sortCase({ peers: 2, records: 20_000 }), 30_000);
  test("3 peers (not a power of two)", () => sortCase({ peers: 3, records: 10_000 }), 30_000);
  test(
    "4 peers, started at different moments",
    () => sortCase({ peers: 4, records: 10_000, delaysMs: [0, 300, 700, 150] }),
    30_000,
  );
  test("8 peers", () => sortCase({ peers: 8, records: 3000 }), 40_000);
  test(
    "4 peers, one started 2 s late",
    () => sortCase({ peers: 4, records: 5000, delaysMs: [0, 0, 2000, 0] }),
    30_000,
  );
  test("4 peers, every input empty", () => sortCase({ peers: 4, records: 0, kind: "empty" }), 30_000);
  test("4 peers, one input empty", () => sortCase({ peers: 4, records: 8000, emptyPeers: [1] }), 30_000);
  test(
    "4 peers, every record owned by peer 0",
    () => sortCase({ peers: 4, records: 6000, kind: "one-owner" }),
    30_000,
  );
  test("4 peers, duplicate-heavy keys", () => sortCase({ peers: 4, records: 6000, kind: "dups" }), 30_000);
  test(
    "4 peers, 90% of keys share a prefix",
    () => sortCase({ peers: 4, records: 8000, kind: "skew" }),
    30_000,
  );
  test("3 peers, uneven input sizes", () => sortCase({ peers: 3, records: [1, 12_345, 300] }), 30_000);
});
