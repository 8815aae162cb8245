/**
 * Exit 0 must mean every output is committed (issue 9, points 1 and 3).
 * 1: a skewed 4-peer run (peer 1 owns ~90% of the records, so the others finish
 *    early and wait in the last round) with stale outputs of an "earlier run" at
 *    every output path; one light peer is SIGKILLed at a series of moments from
 *    mesh-up to the end. For every survivor: exit 0 implies every output exists
 *    and the outputs together are exactly the sorted inputs (checked here, not
 *    by netsort); a survivor that does not exit 0 stops within a bound.
 * 3: two peers given the same output path on one host (also spelled through a
 *    symlinked directory): no peer exits 0, and the error names the path or both peers.
 * Real peer processes on loopback; every child is killed in afterEach.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { allExited, dirsPerTest, errorLine, type Peer, type PeerExit, spawnPeer } from "./fault-helpers.ts";
import {
  expectedOwner,
  freePorts,
  makeRecords,
  outputPaths,
  RECORD,
  removeDir,
  tempDir,
  writeConfig,
  writeInputs,
} from "./harness.ts";

const peers = 4;
/** makeRecords("skew") gives 90% of the records the prefix 0x46...: peer 1 of 4 owns them. */
const heavyPeer = 1;
/** The light peers take turns being killed. */
const victims = [0, 2, 3];
/** Per peer: enough that the heavy peer's sort and write take a while after the others are done. */
const recordsPerPeer = 60_000;
/** How many kill moments, spread evenly from mesh-up to near the end of an undisturbed run. */
const killPoints = 12;
/**
 * The kills spread over this share of the undisturbed run from mesh-up: later runs
 * are a little faster than the first, and a kill after the victim exited tests nothing.
 */
const killSpreadShare = 0.9;
/** A survivor that does not exit 0 must stop this soon after the kill. */
const stopBoundMs = 15_000;
/** One run's peers are all killed after this long: nothing may hang. */
const runBoundMs = 40_000;

let shared: string;
let inputs: string[];
/** The inputs' records, sorted: what outputs 0..3 concatenated must hold, byte for byte. */
let expected: Buffer;
let shares: Buffer[];

/** Every record of `buffers`, sorted as unsigned bytes (the whole record: key, then value). */
function sortedRecords(buffers: Uint8Array[]): Buffer {
  const all: Buffer[] = [];
  for (const b of buffers)
    for (let o = 0; o < b.length; o += RECORD) all.push(Buffer.from(b.subarray(o, o + RECORD)));
  all.sort(Buffer.compare);
  return Buffer.concat(all);
}

beforeAll(() => {
  shared = tempDir("netsort-commit-");
  inputs = writeInputs(
    shared,
    Array.from({ length: peers }, (_, id) => makeRecords(recordsPerPeer, "skew", 900 + id)),
  );
  expected = sortedRecords(inputs.map((p) => new Uint8Array(readFileSync(p))));
  shares = expectedShares();
  // The data is as skewed as the scenario needs: the heavy peer owns most of it.
  expect(shares[heavyPeer].length).toBeGreaterThan(0.8 * expected.length);
}, 60_000);

afterAll(() => removeDir(shared));

const newDir = dirsPerTest("netsort-commit-run-");

/**
 * Outputs of an "earlier run": sorted, well-formed records, but not these inputs'
 * (another seed), so that a survivor trusting them is caught.
 */
function writeStaleOutputs(outputs: string[]): void {
  for (const [id, path] of outputs.entries()) {
    writeFileSync(path, sortedRecords([makeRecords(500, "uniform", 7000 + id)]));
  }
}

/** Each peer's share of the sorted inputs: what its output must hold, byte for byte. */
function expectedShares(): Buffer[] {
  const shares: Buffer[] = [];
  let from = 0;
  for (let id = 0; id < peers; id++) {
    let to = from;
    while (to < expected.length && expectedOwner(expected, to, peers) === id) to += RECORD;
    shares.push(expected.subarray(from, to));
    from = to;
  }
  expect(from).toBe(expected.length);
  return shares;
}

/**
 * What is wrong with the outputs, independently of netsort: each must exist and
 * hold exactly its peer's share of the sorted inputs (so each is sorted, and
 * together they are the inputs). Empty when all is well.
 */
function outputProblems(outputs: string[]): string[] {
  const problems: string[] = [];
  for (const [id, path] of outputs.entries()) {
    if (!existsSync(path)) {
      problems.push(`output ${id} missing`);
      continue;
    }
    const data = readFileSync(path);
    if (!data.equals(shares[id]))
      problems.push(
        `output ${id} is not its share (${data.length / RECORD} records, want ${shares[id].length / RECORD}: stale or wrong)`,
      );
  }
  return problems;
}

interface Trial {
  dir: string;
  outputs: string[];
  peers: Peer[];
}

function startTrial(): Trial {
  const dir = newDir();
  const config = writeConfig(dir, freePorts(peers));
  const outputs = outputPaths(dir, peers);
  writeStaleOutputs(outputs);
  const started = inputs.map((input, id) => spawnPeer({ id, input, output: outputs[id], config }));
  return { dir, outputs, peers: started };
}

/** A peer's exit, with its error line when it has one (logs go to stderr too: only `error:` lines count). */
function describeExit(e: PeerExit): string {
  const error = e.stderr.split("\n").find((l) => l.startsWith("error: ")) ?? "";
  return `peer ${e.id} exit ${e.exitCode ?? e.signal}${error === "" ? "" : ` (${error.trim()})`}`;
}

describe("1. a peer dies in a skewed run: exit 0 means every output is in place", () => {
  test(
    `SIGKILL a light peer at ${killPoints} moments from mesh-up to the end; every survivor's exit 0 is backed by all outputs`,
    async () => {
      // Control: undisturbed, every peer exits 0, the stale outputs are all replaced,
      // and the run's length from mesh-up sets where the kills land.
      const control = startTrial();
      const meshUpAtMs = await control.peers[victims[0]].waitFor(/mesh up/, runBoundMs);
      const controlExits = await allExited(control.peers, runBoundMs);
      expect(controlExits.map(describeExit)).toEqual(controlExits.map((e) => `peer ${e.id} exit 0`));
      expect(outputProblems(control.outputs)).toEqual([]);
      const runMs = Math.max(...controlExits.map((e) => e.exitAtMs)) - meshUpAtMs;
      // The window of issue 9: a light peer has sorted (then written and sent READY)
      // long before the heavy peer is done, and waits in the last round.
      const sortedAtMs = control.peers[victims[0]].firstSeenMs(/sorted \d+ records/);
      console.log(
        `[measured] 1 control: mesh-up to end ${Math.round(runMs)} ms, light peer ${victims[0]} sorted at ${sortedAtMs === null ? "?" : Math.round(sortedAtMs - meshUpAtMs)} ms`,
      );

      const violations: string[] = [];
      const table: string[] = [];
      for (let i = 0; i < killPoints; i++) {
        const delayMs = Math.round((runMs * killSpreadShare * i) / (killPoints - 1));
        const victimId = victims[i % victims.length];
        const trial = startTrial();
        const victim = trial.peers[victimId];
        await victim.waitFor(/mesh up/, runBoundMs);
        await Bun.sleep(delayMs);
        const killedAtMs = performance.now();
        const killed = victim.exit === null;
        if (killed) victim.child.kill("SIGKILL");
        const exits = await allExited(trial.peers, runBoundMs);
        const survivors = exits.filter((e) => e.id !== victimId);
        const problems = outputProblems(trial.outputs);
        for (const s of survivors) {
          if (s.exitCode === 0 && problems.length > 0)
            violations.push(
              `kill of peer ${victimId} at +${delayMs} ms: peer ${s.id} exited 0 but ${problems.join("; ")}`,
            );
          if (s.exitCode !== 0 && s.exitAtMs - killedAtMs > stopBoundMs)
            violations.push(
              `kill of peer ${victimId} at +${delayMs} ms: peer ${s.id} stopped ${Math.round(s.exitAtMs - killedAtMs)} ms after the kill`,
            );
        }
        table.push(
          `+${delayMs} ms kill peer ${victimId}${killed ? "" : " (had already exited)"}: ${exits.map(describeExit).join(", ")}; outputs ${problems.length === 0 ? "valid" : problems.join("; ")}`,
        );
      }
      console.log(`[measured] 1 kill points:\n  ${table.join("\n  ")}`);
      expect(violations).toEqual([]);
    },
    // The control and killPoints runs of a few seconds each, on a loaded machine.
    (killPoints + 1) * runBoundMs,
  );
});

describe("3. two peers given the same output path on one host", () => {
  const spellings: Array<{ name: string; second: (dir: string, shared: string) => string }> = [
    { name: "the same spelling", second: (_dir, path) => path },
    {
      name: "spelled through a symlinked directory",
      second: (dir, path) => {
        symlinkSync(dir, join(dir, "alias"));
        return join(dir, "alias", path.slice(dir.length + 1));
      },
    },
  ];
  for (const s of spellings) {
    test(
      `${s.name}: no peer exits 0, and the error names the path or both peers`,
      async () => {
        const dir = newDir();
        const config = writeConfig(dir, freePorts(2));
        const small = writeInputs(
          dir,
          [0, 1].map((id) => makeRecords(3000, "uniform", 40 + id)),
        );
        mkdirSync(join(dir, "out"));
        const path = join(dir, "out", "shared.dat");
        const paths = [path, s.second(join(dir, "out"), path)];
        const started = [0, 1].map((id) => spawnPeer({ id, input: small[id], output: paths[id], config }));
        const exits = await allExited(started, runBoundMs);
        console.log(`[measured] 3 same output, ${s.name}: ${exits.map(describeExit).join(", ")}`);
        for (const e of exits) {
          expect({ id: e.id, exitedZero: e.exitCode === 0 }).toEqual({ id: e.id, exitedZero: false });
          const line = errorLine(e);
          const namesPath = paths.some((p) => line.includes(p));
          const namesBoth = /peer 0\b/.test(line) && /peer 1\b/.test(line);
          expect({ line, namesPathOrBothPeers: namesPath || namesBoth }).toEqual({
            line,
            namesPathOrBothPeers: true,
          });
          expect(e.elapsedMs).toBeLessThan(10_000);
        }
      },
      runBoundMs,
    );
  }
});
