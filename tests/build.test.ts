/**
 * One real build (a few seconds): build.ts makes a working standalone executable
 * that does not read .env or bunfig.toml from the directory it runs in.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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

function runIn(cwd: string, cmd: string[]) {
  const result = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

test("build.ts builds a standalone netsort that prints the package version and ignores .env and bunfig.toml", async () => {
  const out = tempDir("out");
  const build = Bun.spawn(["bun", join(repo, "build.ts"), "--outdir", out], {
    cwd: repo,
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(build.stdout).text(),
      new Response(build.stderr).text(),
      build.exited,
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/netsort +\d+\.\d MiB +\d+\.\d s\n/);
  } finally {
    build.kill("SIGKILL");
  }
  // Only the executable: its source map is embedded, the side copy removed.
  expect(readdirSync(out)).toEqual(["netsort"]);
  const bin = join(out, "netsort");

  const clean = tempDir("clean");
  const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
  const version = runIn(clean, [bin, "--version"]);
  expect(version.code).toBe(0);
  expect(version.stdout).toBe(`${pkg.version}\n`);

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
