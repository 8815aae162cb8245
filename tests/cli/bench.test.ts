import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAIN_TS, runNetsort } from "../helpers.ts";

let dir = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-bench-test-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const bench = (args: string[]) => runNetsort(["bench", ...args]);

const hasCc = Bun.spawnSync(["sh", "-c", "command -v cc"]).exitCode === 0;

describe("netsort bench", () => {
  test("a tiny bench prints one JSON document with verified runs and medians", async () => {
    const work = join(dir, "tiny");
    const { code, stdout, stderr } = await bench([
      "--peers",
      "2",
      "--size",
      "200kb",
      "--runs",
      "2",
      "--json",
      "--binary",
      "self",
      "--dir",
      work,
      ...(hasCc ? ["--c"] : []),
    ]);
    expect(stderr).not.toContain("INVALID");
    expect(code).toBe(0);
    const r = JSON.parse(stdout);
    // Independent reference: 200 KiB per peer rounded up to whole 100-byte records.
    const recordsPerPeer = Math.ceil((200 * 1024) / 100);
    expect(r.peers).toBe(2);
    expect(r.kind).toBe("uniform");
    expect(r.bytesPerPeer).toBe(recordsPerPeer * 100);
    expect(r.totalRecords).toBe(2 * recordsPerPeer);
    expect(r.verified).toBe(true);
    expect(r.netsortRuns).toHaveLength(2);
    for (const run of r.netsortRuns) {
      expect(run.peers).toHaveLength(2);
      expect(run.wallMs).toBeGreaterThan(0);
      if (existsSync("/usr/bin/time")) {
        const sum = run.peers.reduce(
          (t: number, p: { cpuUserMs: number; cpuSystemMs: number }) => t + p.cpuUserMs + p.cpuSystemMs,
          0,
        );
        expect(run.cpuMs).toBeCloseTo(sum, 6);
        expect(run.cpuMs).toBeGreaterThan(0);
      }
      expect(run.mbPerSec).toBeCloseTo((r.totalRecords * 100) / 1e6 / (run.wallMs / 1000), 6);
      const outputs = run.peers.reduce(
        (sum: number, p: { outputRecords: number }) => sum + p.outputRecords,
        0,
      );
      expect(outputs).toBe(r.totalRecords);
      for (const p of run.peers) {
        for (const key of ["readMs", "exchangeMs", "sortMs", "writeMs", "totalMs"]) {
          expect(p[key]).toBeGreaterThanOrEqual(0);
        }
        expect(p.totalMs).toBeGreaterThanOrEqual(p.readMs);
        expect(p.peakRssBytes).toBeGreaterThan(0);
      }
    }
    const walls = r.netsortRuns.map((run: { wallMs: number }) => run.wallMs);
    expect(r.median.wallMs).toBeCloseTo((walls[0] + walls[1]) / 2, 6);
    expect(r.median.peers).toHaveLength(2);
    const rss0 = Math.max(
      ...r.netsortRuns.map((run: { peers: { peakRssBytes: number }[] }) => run.peers[0].peakRssBytes),
    );
    expect(r.median.peers[0].peakRssBytes).toBe(rss0);
    expect(r.median.peers[0].rssPerShare).toBeCloseTo(rss0 / r.bytesPerPeer, 6);
    if (hasCc) {
      expect(r.c.verified).toBe(true);
      expect(r.c.runs).toHaveLength(2);
      expect(r.c.runs[0].phases.records).toBe(r.totalRecords);
      expect(r.c.ratio).toBeCloseTo(r.median.wallMs / r.c.median.wallMs, 6);
    }
    // The bench removes the data it generated.
    expect(readdirSync(work)).toEqual([]);
  }, 30_000);

  test("the balance figure is the largest over the mean output, per run and as the median", async () => {
    // Skewed keys: 90% of the records share one 48-bit prefix, so with the default
    // equal key ranges one of 4 peers gets ~92.5% of everything (3.7x the mean);
    // --partition sample spreads them evenly.
    const run = (partition: string) =>
      bench([
        "--peers",
        "4",
        "--size",
        "100kb",
        "--runs",
        "2",
        "--kind",
        "skew",
        "--partition",
        partition,
        "--json",
        "--binary",
        "self",
        "--dir",
        join(dir, `balance-${partition}`),
      ]);
    const figures: Record<string, number> = {};
    for (const partition of ["bits", "sample"]) {
      const { code, stdout, stderr } = await run(partition);
      expect(stderr).not.toContain("INVALID");
      expect(code).toBe(0);
      const r = JSON.parse(stdout);
      expect(r.partition).toBe(partition);
      const perRun: number[] = [];
      for (const one of r.netsortRuns) {
        // Independent of bench's stat() of the files: what each peer says it wrote.
        const sizes = one.peers.map((p: { outputRecords: number }) => p.outputRecords * 100);
        expect(one.outputBytes).toEqual(sizes);
        const mean = sizes.reduce((a: number, b: number) => a + b, 0) / sizes.length;
        expect(one.balance).toBeCloseTo(Math.max(...sizes) / mean, 9);
        perRun.push(one.balance);
      }
      expect(r.median.balance).toBeCloseTo((perRun[0] + perRun[1]) / 2, 9);
      figures[partition] = r.median.balance;
    }
    expect(figures.bits).toBeGreaterThan(3);
    expect(figures.sample).toBeLessThan(1.1);
  }, 60_000);

  test("the text report has a sample column and the balance line", async () => {
    const { code, stdout } = await bench([
      "--peers",
      "2",
      "--size",
      "50kb",
      "--runs",
      "1",
      "--partition",
      "sample",
      "--binary",
      "self",
      "--dir",
      join(dir, "text"),
    ]);
    expect(code).toBe(0);
    expect(stdout).toContain("--partition sample");
    expect(stdout).toMatch(/^peer\s+connect\s+sample\s+read\s/m);
    // 2 peers x 512 records of uniform keys: the outputs' sizes are printed beside the ratio.
    const line = stdout.split("\n").find((l) => l.startsWith("balance"));
    expect(line).toMatch(/largest output \/ mean = \d\.\d{3}x .*outputs of the median run .+ \/ .+/);
  }, 30_000);

  test("--rounds reaches every peer of every run (a --binary that notes its arguments)", async () => {
    const work = join(dir, "rounds");
    const argvLog = join(dir, "rounds-argv.log");
    const wrapper = join(dir, "netsort-noting-argv");
    writeFileSync(
      wrapper,
      `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec '${process.execPath}' '${MAIN_TS}' "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    const { code, stdout, stderr } = await bench([
      "--peers",
      "2",
      "--size",
      "100kb",
      "--runs",
      "2",
      "--rounds",
      "3",
      "--json",
      "--binary",
      wrapper,
      "--dir",
      work,
    ]);
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout).verified).toBe(true);
    // One line per peer process, `<id> <input> <output> <config> [flags]`: 2 runs x 2 peers, each with --rounds 3.
    const lines = readFileSync(argvLog, "utf8").trimEnd().split("\n");
    expect(lines.map((l) => l.split(" ")[0]).sort()).toEqual(["0", "0", "1", "1"]);
    for (const line of lines) expect(line).toMatch(/ --rounds 3( |$)/);
  }, 30_000);

  test("out-of-range flags are usage errors (exit 2)", async () => {
    for (const flags of [
      ["--peers", "0"],
      ["--peers", "65"],
      ["--runs", "51"],
      ["--kind", "zipf"],
      ["--runs", "0"],
      ["--rounds", "0"],
      ["--rounds", "65"],
      ["--rounds", "x"],
    ]) {
      const { code, stderr } = await bench([...flags, "--size", "1kb"]);
      expect(code).toBe(2);
      expect(stderr).not.toBe("");
    }
  }, 20_000);

  test("--secret-file reaches every peer: a secret too short for sort fails the bench (exit 1)", async () => {
    const secret = join(dir, "short-secret");
    writeFileSync(secret, "short");
    const args = [
      "--peers",
      "2",
      "--size",
      "10kb",
      "--runs",
      "1",
      "--binary",
      "self",
      "--dir",
      join(dir, "s"),
    ];
    const r = await bench([...args, "--secret-file", secret]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("error: bench: the sort failed");
    expect(r.stderr).toContain("secret file");
  }, 30_000);
});
