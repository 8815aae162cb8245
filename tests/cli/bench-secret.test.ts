/**
 * `netsort bench --secret-compare`: every run is followed by the same sort with
 * a shared secret, and the report compares the two (issue 13's speed target).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateSecret } from "../../src/secret.ts";
import { runNetsort } from "../helpers.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-bench-secret-test-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const tiny = ["--peers", "2", "--size", "200kb", "--binary", "self"];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

describe("netsort bench --secret-compare", () => {
  test("runs plain and sealed sorts alternately and reports their ratio and cost per GB", async () => {
    const { code, stdout, stderr } = await runNetsort([
      "bench",
      ...tiny,
      "--runs",
      "2",
      "--json",
      "--secret-compare",
      "--dir",
      join(dir, "json"),
    ]);
    expect(code).toBe(0);
    const r = JSON.parse(stdout);
    expect(r.netsortRuns).toHaveLength(2);
    expect(r.sealed.runs).toHaveLength(2);
    expect(r.sealed.verified).toBe(true);
    const plainWall = median(r.netsortRuns.map((x: { wallMs: number }) => x.wallMs));
    const sealedWall = median(r.sealed.runs.map((x: { wallMs: number }) => x.wallMs));
    expect(r.sealed.median.wallMs).toBeCloseTo(sealedWall, 6);
    expect(r.sealed.ratio).toBeCloseTo(sealedWall / plainWall, 6);
    expect(r.sealed.wallMsPerGb).toBeCloseTo((sealedWall - plainWall) / (r.totalBytes / 1e9), 3);
    // Progress: plain and sealed lines alternate.
    const runLines = stderr.split("\n").filter((l) => /\brun +\d+ +wall/.test(l));
    expect(runLines.map((l) => (/sealed run/.test(l) ? "sealed" : "plain"))).toEqual([
      "plain",
      "sealed",
      "plain",
      "sealed",
    ]);
  }, 60_000);

  test("the secret reaches the sealed runs only: an exposed --secret-file fails them after a plain run", async () => {
    const secret = join(dir, "exposed-secret");
    writeFileSync(secret, `${generateSecret()}\n`);
    chmodSync(secret, 0o644);
    const { code, stderr } = await runNetsort([
      "bench",
      ...tiny,
      "--runs",
      "1",
      "--secret-compare",
      "--secret-file",
      secret,
      "--dir",
      join(dir, "exposed"),
    ]);
    expect(code).toBe(1);
    // The plain run went through (no secret), the sealed one refused the file.
    expect(stderr).toMatch(/run +1 +wall/);
    expect(stderr).not.toMatch(/sealed run/);
    expect(stderr).toMatch(/secret file .*exposed-secret: mode 0644/);
  }, 60_000);
});
