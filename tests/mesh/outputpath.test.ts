/**
 * An output path that is the peer's own input (issue 9, point 3): the same
 * path, or a hard link or symlink to it. Before, the input was replaced by the
 * sorted share and everyone exited 0. Now that peer exits 2 at start-up naming
 * both paths, before anything is written, its input is byte for byte as it was,
 * and the other peer stops naming it.
 */
import { describe, expect, test } from "bun:test";
import { linkSync, readFileSync, symlinkSync } from "node:fs";
import { allExited, dirsPerTest, errorLine, spawnPeer } from "./fault-helpers.ts";
import { freePorts, makeRecords, outputPaths, writeConfig, writeInputs } from "./harness.ts";

const recordsPerPeer = 5_000;
const runBoundMs = 30_000;

const newDir = dirsPerTest("netsort-outpath-");

describe("output path is the input", () => {
  for (const kind of ["same path", "hard link", "symlink"] as const) {
    test(
      `${kind}: that peer exits 2 naming both paths, its input untouched; the other exits 1`,
      async () => {
        const dir = newDir();
        const inputs = writeInputs(
          dir,
          [0, 1].map((id) => makeRecords(recordsPerPeer, "uniform", 900 + id)),
        );
        const before = readFileSync(inputs[1]);
        const outputs = outputPaths(dir, 2);
        if (kind === "same path") outputs[1] = inputs[1];
        if (kind === "hard link") linkSync(inputs[1], outputs[1]);
        if (kind === "symlink") symlinkSync(inputs[1], outputs[1]);
        const config = writeConfig(dir, freePorts(2));
        const peers = [0, 1].map((id) =>
          spawnPeer({
            id,
            input: inputs[id],
            output: outputs[id],
            config,
            args: ["--connect-timeout-ms=20000"],
          }),
        );
        const exits = await allExited(peers, runBoundMs);
        expect(exits[1].exitCode).toBe(2);
        expect(errorLine(exits[1])).toBe(
          `output ${outputs[1]} is the input ${inputs[1]} (same file): the sort would replace its own input; choose another output path`,
        );
        expect(exits[1].stderr).not.toMatch(/read \d/); // refused before any data moved
        expect(readFileSync(inputs[1]).equals(before)).toBe(true);
        expect(exits[0].exitCode).toBe(1);
        expect(errorLine(exits[0])).toMatch(/^peer 1 aborted: output .* is the input /);
        console.log(
          `[measured] output is input (${kind}): ${JSON.stringify({ peer1Ms: Math.round(exits[1].elapsedMs), peer0AfterPeer1Ms: Math.round(exits[0].exitAtMs - exits[1].exitAtMs) })}`,
        );
      },
      runBoundMs + 5_000,
    );
  }
});
