/**
 * The compiled binary runs the same mesh, and outputs are deterministic: the same
 * inputs give byte-identical outputs whatever the start order and timing. The
 * binary is built from the current sources into a temp dir (a few seconds), never
 * taken from dist/, which may be stale.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  freePorts,
  killAll,
  makeRecords,
  outputPaths,
  REPO,
  removeDir,
  runPeers,
  tempDir,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "./harness.ts";

afterEach(() => killAll());

/** A binary built from these sources for this file: dist/netsort may be older than the code. */
let buildDir: string;
let binary: string;

beforeAll(async () => {
  buildDir = tempDir("netsort-binary-test-");
  binary = join(buildDir, "netsort");
  const build = Bun.spawn([process.execPath, join(REPO, "build.ts"), "--outdir", buildDir], {
    cwd: REPO,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  try {
    if ((await build.exited) !== 0)
      throw new Error(`build failed: ${await new Response(build.stderr).text()}`);
  } finally {
    build.kill("SIGKILL");
  }
}, 120_000);

afterAll(() => removeDir(buildDir));

function expectAllOk(
  results: { id: number; exitCode: number | null; stderr: string; stdout: string }[],
): void {
  for (const r of results) {
    if (r.exitCode !== 0) throw new Error(`peer ${r.id} exited ${r.exitCode}: ${r.stderr}${r.stdout}`);
  }
}

describe("compiled binary", () => {
  test("4 peers of a freshly built netsort, staggered, sort duplicate-heavy data", async () => {
    const dir = tempDir();
    try {
      const inputs = writeInputs(
        dir,
        [0, 1, 2, 3].map((id) => makeRecords(4000, "dups", 77 + id)),
      );
      const outputs = outputPaths(dir, 4);
      const config = writeConfig(dir, freePorts(4));
      expectAllOk(
        await runPeers(config, inputs, outputs, {
          command: [binary],
          delaysMs: [0, 400, 100, 250],
        }),
      );
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
    } finally {
      removeDir(dir);
    }
  }, 40_000);
});

describe("determinism", () => {
  test("same inputs, different start orders: byte-identical outputs", async () => {
    const dir = tempDir();
    try {
      // Equal keys with different values: only a whole-record tie-break makes the order unique.
      const inputs = writeInputs(
        dir,
        [0, 1, 2].map((id) => makeRecords(5000, "dups", 500 + id)),
      );
      const first = outputPaths(dir, 3).map((p) => `${p}.first`);
      const second = outputPaths(dir, 3).map((p) => `${p}.second`);
      expectAllOk(
        await runPeers(writeConfig(dir, freePorts(3), "a.yaml"), inputs, first, { delaysMs: [0, 200, 400] }),
      );
      expectAllOk(
        await runPeers(writeConfig(dir, freePorts(3), "b.yaml"), inputs, second, { delaysMs: [400, 0, 150] }),
      );
      expect(verifyOutputs(inputs, first)).toEqual([]);
      for (let i = 0; i < 3; i++) {
        expect(Buffer.compare(readFileSync(first[i]), readFileSync(second[i]))).toBe(0);
      }
    } finally {
      removeDir(dir);
    }
  }, 40_000);
});
