/** `netsort demo`: the README's first command, end to end with real peer processes. */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { removeDir, tempDir, verifyOutputs } from "../mesh/harness.ts";

const MAIN = join(import.meta.dir, "../../src/cli/main.ts");
let child: Subprocess | null = null;

afterEach(() => {
  child?.kill("SIGKILL");
  child = null;
});

async function demo(args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn([process.execPath, MAIN, "demo", ...args], { stdout: "pipe", stderr: "pipe" });
  child = proc;
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out: out + err };
}

describe("netsort demo", () => {
  test("3 peers with --validate: VALID summary, and the kept files verify independently", async () => {
    const dir = tempDir("netsort-demo-test-");
    try {
      const { code, out } = await demo([
        "--peers",
        "3",
        "--size",
        "300kb",
        "--dir",
        dir,
        "--validate",
        "--kind",
        "dups",
      ]);
      expect(code).toBe(0);
      expect(out).toContain("check          VALID");
      expect(out).toContain("validate: VALID");
      const inputs = [0, 1, 2].map((i) => join(dir, `input-${i}.dat`));
      const outputs = [0, 1, 2].map((i) => join(dir, `output-${i}.dat`));
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
      expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    } finally {
      removeDir(dir);
    }
  }, 30_000);

  test("bad flags are usage errors (exit 2) and create nothing", async () => {
    const dir = join(tempDir("netsort-demo-test-"), "never");
    try {
      for (const args of [["--peers", "0"], ["--size", "lots"], ["--kind", "sorted"], ["--bogus"]]) {
        const { code } = await demo([...args, "--dir", dir]);
        expect({ args, code }).toEqual({ args, code: 2 });
      }
      expect(existsSync(dir)).toBe(false);
    } finally {
      removeDir(join(dir, ".."));
    }
  }, 30_000);
});
