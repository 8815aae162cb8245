/** `netsort demo`: the README's first command, end to end with real peer processes. */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateSecret } from "../../src/secret.ts";
import { removeDir, tempDir, verifyOutputs } from "../mesh/harness.ts";

const MAIN = join(import.meta.dir, "../../src/cli/main.ts");
let child: Subprocess | null = null;

afterEach(() => {
  child?.kill("SIGKILL");
  child = null;
});

async function demo(args: string[]): Promise<{ code: number; out: string; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, MAIN, "demo", ...args], { stdout: "pipe", stderr: "pipe" });
  child = proc;
  const [stdout, stderr] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code: await proc.exited, out: stdout + stderr, stdout, stderr };
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
      // The summary is stdout; the peers' log lines, validate verdict included, stderr.
      expect(out).toContain("validate: VALID");
      // 300 KiB inputs, no --rounds: the peers read once (rounds only by default from 64 MiB).
      expect(out).toMatch(/\[peer 0\] read .* records\) in \d+ ms/);
      expect(out).not.toContain("key-range rounds");
      const inputs = [0, 1, 2].map((i) => join(dir, `input-${i}.dat`));
      const outputs = [0, 1, 2].map((i) => join(dir, `output-${i}.dat`));
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
      expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    } finally {
      removeDir(dir);
    }
  }, 30_000);

  test("--json: one JSON summary on stdout; --partition, --memory, --temp-dir, --secret-file reach every peer", async () => {
    const dir = tempDir("netsort-demo-test-");
    try {
      const secret = join(dir, "secret");
      writeFileSync(secret, `${generateSecret()}\n`);
      chmodSync(secret, 0o600);
      const args = ["--peers", "2", "--size", "100kb", "--dir", dir, "--json", "--stagger-ms", "0"];
      const peerFlags = [
        "--partition",
        "sample",
        "--memory",
        "64mb",
        "--temp-dir",
        dir,
        "--secret-file",
        secret,
      ];
      const r = await demo([...args, ...peerFlags]);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({
        peers: 2,
        kind: "uniform",
        dir,
        check: { valid: true, records: 2 * 1024 },
      });
      expect(doc.peerTimings.map((p: { exitCode: number }) => p.exitCode)).toEqual([0, 0]);
      // Each peer got --partition sample: it says how it split the records.
      for (const id of [0, 1]) {
        expect(r.stderr).toMatch(
          new RegExp(`\\[peer ${id}\\] partition: 1 split points from \\d+ sampled records of 2048`),
        );
      }
      // The secret file reached them too: one too short makes every peer refuse it.
      writeFileSync(secret, "short");
      const refused = await demo([...args, "--secret-file", secret]);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe("");
      expect(refused.stderr).toContain("[peer 0] error: secret file");
      expect(refused.stderr.trimEnd().split("\n").at(-1)).toBe(
        "error: demo: peer 0 exited 2, peer 1 exited 2",
      );
    } finally {
      removeDir(dir);
    }
  }, 60_000);

  test("--rounds reaches every peer: each reads in that many rounds, the outputs verify", async () => {
    const dir = tempDir("netsort-demo-test-");
    try {
      const r = await demo([
        "--peers",
        "3",
        "--size",
        "1mb",
        "--dir",
        dir,
        "--stagger-ms",
        "0",
        "--rounds",
        "3",
      ]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("check          VALID");
      for (const id of [0, 1, 2]) {
        expect(r.stderr).toMatch(
          new RegExp(`^\\[peer ${id}\\] read .* in 3 key-range rounds in \\d+ ms`, "m"),
        );
      }
      const inputs = [0, 1, 2].map((i) => join(dir, `input-${i}.dat`));
      const outputs = [0, 1, 2].map((i) => join(dir, `output-${i}.dat`));
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
    } finally {
      removeDir(dir);
    }
  }, 30_000);

  test("bad flags are usage errors (exit 2) and create nothing", async () => {
    const dir = join(tempDir("netsort-demo-test-"), "never");
    try {
      for (const args of [
        ["--peers", "0"],
        ["--size", "lots"],
        ["--kind", "sorted"],
        ["--bogus"],
        ["--rounds", "0"],
        ["--rounds", "65"],
        ["--rounds", "two"],
      ]) {
        const { code } = await demo([...args, "--dir", dir]);
        expect({ args, code }).toEqual({ args, code: 2 });
      }
      expect(existsSync(dir)).toBe(false);
    } finally {
      removeDir(join(dir, ".."));
    }
  }, 30_000);
});
