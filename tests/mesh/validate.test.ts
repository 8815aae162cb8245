/** `sort --validate`: summaries exchanged in READY, one verdict on every peer. */
import { afterEach, describe, expect, test } from "bun:test";
import {
  freePorts,
  killAll,
  leftoverTempFiles,
  makeRecords,
  outputPaths,
  problemLines,
  removeDir,
  runPeers,
  tempDir,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "./harness.ts";

afterEach(() => killAll());

describe("sort --validate", () => {
  test("3 peers with an empty input: peer 0 prints the global verdict, every peer says VALID", async () => {
    const dir = tempDir();
    try {
      const data = [
        makeRecords(3000, "dups", 1),
        makeRecords(0, "empty", 2),
        makeRecords(2500, "uniform", 3),
      ];
      const inputs = writeInputs(dir, data);
      const outputs = outputPaths(dir, 3);
      const results = await runPeers(writeConfig(dir, freePorts(3)), inputs, outputs, {
        extraArgs: ["--validate"],
      });
      for (const r of results)
        expect({ id: r.id, exit: r.exitCode, err: problemLines(r.stderr) }).toEqual({
          id: r.id,
          exit: 0,
          err: [],
        });
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
      const out0 = results[0].stderr;
      expect(out0).toContain("validate: Records: 5500");
      // Duplicate keys counted across the whole concatenation, independently here.
      const keys = data.flatMap((d) =>
        Array.from({ length: d.length / 100 }, (_, i) =>
          Buffer.from(d.subarray(i * 100, i * 100 + 10)).toString("hex"),
        ),
      );
      const dups = keys.length - new Set(keys).size;
      expect(out0).toContain(`validate: Duplicate keys: ${dups}`);
      for (const r of results) expect(r.stderr).toContain("VALID: outputs sorted");
    } finally {
      removeDir(dir);
    }
  }, 30_000);

  test("a peer without --validate is refused at hello by the others (exit 2), no outputs", async () => {
    const dir = tempDir();
    try {
      const inputs = writeInputs(dir, [makeRecords(500, "uniform", 4), makeRecords(500, "uniform", 5)]);
      const outputs = outputPaths(dir, 2);
      const config = writeConfig(dir, freePorts(2));
      const startMs = performance.now();
      const [a, b] = await Promise.all([
        runPeers(config, inputs.slice(0, 1), outputs.slice(0, 1), { extraArgs: ["--validate"] }),
        // The harness passes the peer index as its id: run peer 1 through a one-element
        // list by giving it its own id via a shifted spawn.
        (async () => {
          const child = Bun.spawn([process.execPath, "src/cli/main.ts", "1", inputs[1], outputs[1], config], {
            cwd: `${import.meta.dir}/../..`,
            stdout: "pipe",
            stderr: "pipe",
          });
          try {
            const stderr = await new Response(child.stderr).text();
            return { exitCode: await child.exited, stderr };
          } finally {
            child.kill("SIGKILL");
          }
        })(),
      ]);
      console.log(
        `[measured] validate mixed with non-validating peer: ${JSON.stringify({
          elapsedMs: Math.round(performance.now() - startMs),
          exitCodes: [a[0].exitCode, b.exitCode],
          stderr: [a[0].stderr.trim(), b.stderr.trim()],
        })}`,
      );
      expect(a[0].exitCode).toBe(2);
      expect(a[0].stderr).toContain("--validate");
      expect(b.exitCode).toBe(2);
      expect(b.stderr).toContain("--validate");
      expect(leftoverTempFiles(dir)).toEqual([]);
    } finally {
      removeDir(dir);
    }
  }, 30_000);
});
