/**
 * What `bench --svg` draws (src/local/bench.ts): the median run by wall time,
 * one row per peer, and the C baseline's median run as its own row.
 */
import { describe, expect, test } from "bun:test";
import {
  type BenchReport,
  balanceOf,
  benchTimeline,
  medianRunIndex,
  spillReportLines,
} from "../../src/local/bench.ts";

describe("medianRunIndex", () => {
  test("picks the run with the median wall time, wherever it is", () => {
    expect(medianRunIndex([300, 100, 200])).toBe(2);
    expect(medianRunIndex([5])).toBe(0);
    // Even count: the lower of the middle two.
    expect(medianRunIndex([400, 100, 300, 200])).toBe(3);
  });
});

describe("balanceOf", () => {
  test("is the largest output over the mean", () => {
    expect(balanceOf([100, 100, 100, 100])).toBe(1);
    // One peer holds everything: 4x the mean of 4 outputs.
    expect(balanceOf([0, 400, 0, 0])).toBe(4);
    expect(balanceOf([300, 100])).toBe(1.5);
    expect(balanceOf([7])).toBe(1);
  });
  test("all-empty outputs are even, not NaN", () => {
    expect(balanceOf([0, 0, 0])).toBe(1);
  });
});

function run(run: number, wallMs: number, startMs: number) {
  return {
    run,
    wallMs,
    mbPerSec: 1,
    cpuMs: 1,
    loadAverage: 0,
    peers: [0, 1].map((id) => ({
      id,
      startedAtEpochMs: 1_000 + id,
      spans: [{ phase: "sort" as const, startMs, endMs: startMs + wallMs / 2 }],
    })),
  };
}

describe("benchTimeline", () => {
  const report = {
    peers: 2,
    kind: "uniform",
    bytesPerPeer: 1024 * 1024,
    netsortRuns: [run(1, 900, 11), run(2, 500, 22), run(3, 700, 33)],
    c: {
      runs: [
        { run: 1, wallMs: 50, phases: { sortMs: 1 } },
        { run: 2, wallMs: 30, phases: { sortMs: 2 } },
        { run: 3, wallMs: 40, phases: { sortMs: 3 } },
      ],
    },
  } as unknown as BenchReport;

  test("draws the median run and the C baseline's median run", () => {
    const t = benchTimeline(report);
    expect(t?.rows.map((r) => r.label)).toEqual(["peer 0", "peer 1", "C baseline"]);
    expect(t?.rows[0].spans[0].startMs).toBe(33); // run 3: 700 ms is the median
    expect(t?.rows[1].spans[0].startMs).toBe(34); // peer 1 started 1 ms later
    expect(t?.rows[2].spans[0].endMs).toBe(3); // C run 3: 40 ms is its median
    expect(t?.title).toContain("median run 3 of 3");
  });

  test("without runs there is nothing to draw", () => {
    expect(benchTimeline({ ...report, netsortRuns: [] })).toBeNull();
  });
});

describe("spillReportLines", () => {
  const peer = (id: number, spilledIn: number) => ({
    id,
    spilledIn,
    spillRuns: spilledIn > 0 ? 9 : 0,
    spilledBytes: spilledIn > 0 ? 512_000_000 : 0,
    mergeMs: spilledIn > 0 ? 1234.4 : 0,
    outputRecords: 5_000_000,
    totalMs: 10_000,
  });
  const report = (peers: ReturnType<typeof peer>[]) =>
    ({ median: { peers }, netsortRuns: [{}, {}, {}] }) as unknown as BenchReport;

  test("one line per peer with runs, spilled MB, merge ms and the share's MB/s", () => {
    const lines = spillReportLines(report([peer(0, 3), peer(1, 0)]));
    expect(lines).toHaveLength(4);
    expect(lines[2].split(/\s+/)).toEqual(["0", "3/3", "9", "512", "1234", "50.0"]);
    expect(lines[3].split(/\s+/)).toEqual(["1", "0/3", "0", "0", "0", "50.0"]);
  });

  test("nothing when no peer spilled", () => {
    expect(spillReportLines(report([peer(0, 0), peer(1, 0)]))).toEqual([]);
  });
});
