/**
 * --partition sample with real peers on loopback (issue 11): for each key
 * distribution, 4 peers sort their inputs; every peer exits 0, the outputs in
 * peer order are exactly the sorted union of the inputs (an independent
 * reference sort), and the largest output holds at most 1.10x the mean. Also:
 * a peer whose mode differs is refused by name, and in the default bits mode a
 * peer with far more than its share says so, suggesting --partition sample.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateSecret } from "../../src/secret.ts";
import { concat } from "../helpers.ts";
import { distributions, referenceSort } from "../partition/distributions.ts";
import { allExited, dirsPerTest, spawnPeer } from "./fault-helpers.ts";
import {
  freePorts,
  makeRecords,
  outputPaths,
  problemLines,
  RECORD,
  runPeers,
  writeConfig,
  writeInputs,
} from "./harness.ts";

const peers = 4;
/** Records per peer: enough that a 1.10x bound is about the method, not the noise of small numbers. */
const recordsPerPeer = 20_000;
/** The balance goal: the largest output at most this many times the mean. */
const maxImbalance = 1.1;
const runBoundMs = 60_000;

const newDir = dirsPerTest("netsort-sample-mesh-");

async function sortWith(inputs: Uint8Array[], args: string[]) {
  const dir = newDir();
  const config = writeConfig(dir, freePorts(inputs.length));
  const inputPaths = writeInputs(dir, inputs);
  const outputs = outputPaths(dir, inputs.length);
  const results = await runPeers(config, inputPaths, outputs, { extraArgs: args, timeoutMs: runBoundMs });
  return { results, outputs };
}

/** Layouts: equal inputs, and one with an empty and a tiny input among them. */
const layouts: Record<string, number[]> = {
  equal: [recordsPerPeer, recordsPerPeer, recordsPerPeer, recordsPerPeer],
  "empty and tiny": [0, 3 * recordsPerPeer, 7, recordsPerPeer],
};

const cases: Array<[string, string]> = [
  ["uniform", "equal"],
  ["ascii", "equal"],
  ["skewed", "equal"],
  ["oneHotPrefix", "equal"],
  ["allEqualKeys", "equal"],
  ["fewDistinctKeys", "equal"],
  ["skewed", "empty and tiny"],
  ["uniform", "empty and tiny"],
];

describe("--partition sample with real peers", () => {
  for (const [kind, layout] of cases) {
    test(
      `${kind}, ${layout} inputs: exact sorted output, largest output <= ${maxImbalance}x the mean`,
      async () => {
        const inputs = layouts[layout].map((n, peer) => distributions[kind](n, peer));
        const { results, outputs } = await sortWith(inputs, ["--partition", "sample"]);
        for (const r of results) {
          expect({ id: r.id, exitCode: r.exitCode, problems: problemLines(r.stderr) }).toEqual({
            id: r.id,
            exitCode: 0,
            problems: [],
          });
        }
        const outs = outputs.map((p) => new Uint8Array(readFileSync(p)));
        // Outputs 0..N-1 concatenated are the sorted union of the inputs, byte for byte.
        expect(Buffer.compare(concat(outs), referenceSort(concat(inputs)))).toBe(0);
        const sizes = outs.map((o) => o.length / RECORD);
        const mean = sizes.reduce((a, b) => a + b, 0) / peers;
        const largest = Math.max(...sizes);
        console.log(
          `[measured] sample ${kind}/${layout}: outputs ${sizes.join(" / ")} records, largest/mean ${(largest / mean).toFixed(3)}`,
        );
        expect(largest / mean).toBeLessThanOrEqual(maxImbalance);
      },
      runBoundMs,
    );
  }

  test(
    "with a shared secret: held streams are opened first, the output is still exact",
    async () => {
      const dir = newDir();
      const secretFile = join(dir, "secret");
      writeFileSync(secretFile, generateSecret(), { mode: 0o600 });
      const inputs = layouts.equal.map((n, peer) => distributions.skewed(n, peer));
      const { results, outputs } = await sortWith(inputs, [
        "--partition",
        "sample",
        "--secret-file",
        secretFile,
      ]);
      expect(results.map((r) => r.exitCode)).toEqual([0, 0, 0, 0]);
      const outs = outputs.map((p) => new Uint8Array(readFileSync(p)));
      expect(Buffer.compare(concat(outs), referenceSort(concat(inputs)))).toBe(0);
    },
    runBoundMs,
  );

  test(
    "a peer with another --partition mode is refused by name on every peer (exit 2)",
    async () => {
      const dir = newDir();
      const config = writeConfig(dir, freePorts(3));
      const inputs = writeInputs(
        dir,
        [0, 1, 2].map((p) => makeRecords(1000, "uniform", 40 + p)),
      );
      const outputs = outputPaths(dir, 3);
      // runPeers gives every peer the same flags: start peer 2 apart with the other mode.
      const all = [0, 1, 2].map((id) =>
        spawnPeer({
          id,
          input: inputs[id],
          output: outputs[id],
          config,
          args: id === 2 ? ["--partition", "sample"] : [],
        }),
      );
      const exits = await allExited(all, 20_000);
      for (const e of exits) {
        expect(e.exitCode).toBe(2);
        expect(e.stderr).toMatch(
          /^error: .*peers disagree on --partition: peer \d has (bits|sample), peer \d has (bits|sample)/m,
        );
      }
    },
    runBoundMs,
  );

  test(
    "bits mode: the peer that gets most of a skewed input warns once and suggests --partition sample",
    async () => {
      const inputs = [0, 1, 2, 3].map((p) => makeRecords(recordsPerPeer, "skew", 60 + p));
      const { results } = await sortWith(inputs, []);
      const warned = results.filter((r) => /--partition sample/.test(r.stderr));
      expect(results.map((r) => r.exitCode)).toEqual([0, 0, 0, 0]);
      // "skew" puts 90% of the keys on one prefix: exactly one peer holds far more than its share.
      expect(warned.length).toBe(1);
      expect(warned[0].stderr.match(/--partition sample/g)?.length).toBe(1);
      // With sampling, the same inputs spread evenly: nobody warns (the warning is for bits mode).
      const sampled = await sortWith(inputs, ["--partition", "sample"]);
      expect(sampled.results.filter((r) => /warning: .*--partition sample/.test(r.stderr))).toEqual([]);
    },
    runBoundMs,
  );
});
