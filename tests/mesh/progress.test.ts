/**
 * What a peer's log says while it runs (issue 14, "What the logs say"): the
 * progress line names the peers still missing from the first line on; phase
 * lines give durations of the work itself (a read is not charged the mesh
 * wait); "1 peer" is singular. Real peers on loopback; children killed after.
 */
import { describe, expect, test } from "bun:test";
import { allExited, dirsPerTest, spawnPeer } from "./fault-helpers.ts";
import { freePorts, makeRecords, outputPaths, writeConfig, writeInputs } from "./harness.ts";

/** The first progress line comes after 5 s (progressIntervalMs); allow for a loaded machine. */
const firstProgressBoundMs = 9_000;
const runBoundMs = 30_000;

const newDir = dirsPerTest("netsort-progress-");

describe("log lines", () => {
  test(
    "while the mesh is not up, the first progress line names every missing peer with its host:port",
    async () => {
      const dir = newDir();
      const ports = freePorts(3);
      const config = writeConfig(dir, ports);
      const [input] = writeInputs(dir, [makeRecords(100, "uniform", 1)]);
      const [output] = outputPaths(dir, 1);
      // Peers 1 and 2 are never started: peer 0 waits and says for whom.
      const peer = spawnPeer({ id: 0, input, output, config, args: ["--connect-timeout-ms=20000"] });
      await peer.waitFor(/^progress at \d+ ms: .*waiting for/m, firstProgressBoundMs);
      const line = peer.stderr.split("\n").find((l) => l.startsWith("progress at ")) ?? "";
      expect(line).toMatch(
        new RegExp(
          `waiting for peer 1 \\(127\\.0\\.0\\.1:${ports[1]}\\), peer 2 \\(127\\.0\\.0\\.1:${ports[2]}\\)$`,
        ),
      );
    },
    runBoundMs,
  );

  test(
    "a read is timed over the reading itself, not the wait for a late peer; '1 peer connected'",
    async () => {
      const dir = newDir();
      const config = writeConfig(dir, freePorts(2));
      const inputs = writeInputs(dir, [makeRecords(2000, "uniform", 2), makeRecords(2000, "uniform", 3)]);
      const outputs = outputPaths(dir, 2);
      const lateMs = 2_500;
      const first = spawnPeer({ id: 0, input: inputs[0], output: outputs[0], config, args: [] });
      await Bun.sleep(lateMs);
      const late = spawnPeer({ id: 1, input: inputs[1], output: outputs[1], config, args: [] });
      const exits = await allExited([first, late], runBoundMs);
      expect(exits.map((e) => e.exitCode)).toEqual([0, 0]);
      const log = exits[0].stderr;
      // Peer 0 read its 200 KB long before peer 1 existed: its read took milliseconds, not seconds.
      const readMs = Number(/^read \S+ \S+ \(2000 records\) in (\d+) ms/m.exec(log)?.[1] ?? Number.NaN);
      expect(readMs).toBeLessThan(lateMs / 2);
      expect(log).toMatch(/^mesh up: 1 peer connected in \d+ ms$/m);
      // The wait shows as its own duration, after the read.
      const waitedMs = Number(/^exchange: waited (\d+) ms after reading/m.exec(log)?.[1] ?? Number.NaN);
      expect(waitedMs).toBeGreaterThan(lateMs / 2);
    },
    runBoundMs,
  );
});
