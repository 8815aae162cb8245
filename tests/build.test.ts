/**
 * One real build (a few seconds): build.ts makes a working standalone executable
 * that does not read .env or bunfig.toml from the directory it runs in.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gitCommit } from "../src/cli/version.ts";

const repo = join(import.meta.dir, "..");
const dirs: string[] = [];

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `netsort-build-${name}-`));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Run build.ts into a new temp dir; returns the executable's path. */
async function build(name: string, env: Record<string, string | undefined> = process.env): Promise<string> {
  const out = tempDir(name);
  const proc = Bun.spawn([process.execPath, join(repo, "build.ts"), "--outdir", out], {
    cwd: repo,
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/netsort +\d+\.\d MiB +\d+\.\d s\n/);
  } finally {
    proc.kill("SIGKILL");
  }
  // Only the executable: its source map is embedded, the side copy removed.
  expect(readdirSync(out)).toEqual(["netsort"]);
  return join(out, "netsort");
}

/** `netsort --version` of a build: the fields build.ts embeds, in one line. */
const versionPattern =
  /^netsort (\S+) \(commit (.+), built (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ), target (bun-\S+), Bun (\S+)\)\n$/;

function runIn(cwd: string, cmd: string[]) {
  const result = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

test("build.ts builds a standalone netsort that names its version, commit, date, target and Bun, and ignores .env and bunfig.toml", async () => {
  const startedMs = Date.now();
  const bin = await build("out");
  const clean = tempDir("clean");
  const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
  const version = runIn(clean, [bin, "--version"]);
  expect(version.code).toBe(0);
  const fields = versionPattern.exec(version.stdout);
  if (fields === null) throw new Error(`unexpected --version: ${version.stdout}`);
  const [, v, commit, date, target, bun] = fields;
  expect(v).toBe(pkg.version);
  const here = gitCommit(repo);
  if (here === null) throw new Error("this test needs the repository's git checkout");
  expect(commit).toBe(here);
  // Seconds resolution: the date lies between the test's start (rounded down) and now.
  expect(Date.parse(date)).toBeGreaterThanOrEqual(Math.floor(startedMs / 1000) * 1000);
  expect(Date.parse(date)).toBeLessThanOrEqual(Date.now());
  expect(target).toBe(`bun-${process.platform}-${process.arch}`);
  expect(bun).toBe(Bun.version);

  // A bunfig.toml that preloads a script, and a .env that turns colours off: a
  // binary that loaded either would print the marker or lose its colour codes
  // (each check fails against a build with that autoload turned on).
  const hostile = tempDir("hostile");
  writeFileSync(join(hostile, "marker.ts"), 'console.log("BUNFIG PRELOAD RAN");\n');
  writeFileSync(join(hostile, "bunfig.toml"), 'preload = ["./marker.ts"]\n');
  writeFileSync(join(hostile, ".env"), "NO_COLOR=1\nFORCE_COLOR=0\nDOTENV_LOADED=1\n");
  const env = { ...process.env };
  delete env.NO_COLOR;
  delete env.FORCE_COLOR;
  for (const args of [["--help"], ["config", "--help"]]) {
    const here = Bun.spawnSync([bin, ...args], {
      cwd: hostile,
      env,
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    const there = Bun.spawnSync([bin, ...args], {
      cwd: clean,
      env,
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    expect(here.exitCode).toBe(0);
    expect(here.stdout.toString()).not.toContain("PRELOAD RAN");
    expect(here.stdout.toString()).toBe(there.stdout.toString());
    expect(here.stderr.toString()).toBe(there.stderr.toString());
  }
}, 120_000);

test("a build without git says so in --version", async () => {
  // No git on PATH: build.ts cannot learn the commit and must not invent one.
  const noTools = tempDir("empty-path");
  const bin = await build("nogit", { ...process.env, PATH: noTools });
  const version = runIn(tempDir("clean-nogit"), [bin, "--version"]);
  expect(version.code).toBe(0);
  expect(versionPattern.exec(version.stdout)?.[2]).toBe("unknown (built without git)");
}, 120_000);
