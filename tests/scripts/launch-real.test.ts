/**
 * scripts/launch.sh with the real netsort: a user's whole path on one machine,
 * config + patterns in, verified outputs and [peer N] lines out, --validate passed through.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import {
  freePorts,
  makeRecords,
  outputPaths,
  removeDir,
  tempDir,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "../mesh/harness.ts";

const repo = join(import.meta.dir, "../..");
let child: Subprocess | null = null;

afterEach(() => {
  // launch.sh stops its peers on TERM; KILL as a last resort if a test gave up.
  child?.kill("SIGTERM");
  child = null;
});

test("3 real peers through launch.sh with -- --validate: exit 0, prefixed lines, verified outputs", async () => {
  const dir = tempDir("netsort-launch-real-");
  try {
    const inputs = writeInputs(
      dir,
      [0, 1, 2].map((id) => makeRecords(3000, id === 1 ? "skew" : "uniform", 40 + id)),
    );
    const outputs = outputPaths(dir, 3);
    const config = writeConfig(dir, freePorts(3));
    const proc = Bun.spawn(
      [
        "bash",
        join(repo, "scripts/launch.sh"),
        config,
        join(dir, "input-{id}.dat"),
        join(dir, "output-{id}.dat"),
        "--",
        "--validate",
      ],
      {
        stdout: "pipe",
        stderr: "pipe",
        env: {
          ...process.env,
          NETSORT: `${process.execPath} ${join(repo, "src/cli/main.ts")}`,
          NO_COLOR: "1",
        },
      },
    );
    child = proc;
    const [out, err] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    const code = await proc.exited;
    expect({ code, err: err.includes("[peer") ? "" : err }).toEqual({ code: 0, err: "" });
    const text = out + err;
    for (const id of [0, 1, 2]) expect(text).toContain(`[peer ${id}] `);
    expect(text).toMatch(/\[peer 0\] validate: Records: 9000/);
    expect(text).toMatch(/\[peer 0\] validate: VALID/);
    expect(text).toContain("all 3 peers exited 0");
    expect(verifyOutputs(inputs, outputs)).toEqual([]);
  } finally {
    removeDir(dir);
  }
}, 40_000);
