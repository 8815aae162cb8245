/** `netsort --version` from source: says so, with the commit when git is there. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gitCommit } from "../../src/cli/version.ts";
import { MAIN_TS, runNetsort } from "../helpers.ts";

const repo = join(import.meta.dir, "../..");
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string };
const empty = mkdtempSync(join(tmpdir(), "netsort-version-test-"));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

test("gitCommit: a short hash (with +changes for edits) in the checkout, null outside one", () => {
  expect(gitCommit(repo)).toMatch(/^[0-9a-f]{7,}(\+changes)?$/);
  expect(gitCommit(empty)).toBeNull();
});

test("from source: version, 'from source', the checkout's commit, platform and Bun", async () => {
  const r = await runNetsort(["--version"]);
  expect(r).toEqual({
    code: 0,
    stdout: `netsort ${pkg.version} (from source, commit ${gitCommit(repo)}, ${process.platform}-${process.arch}, Bun ${Bun.version})\n`,
    stderr: "",
  });
});

test("from source without git: says the commit is unknown instead of failing", () => {
  // An empty PATH: no git to ask (bun itself is called by its absolute path).
  const r = Bun.spawnSync([process.execPath, MAIN_TS, "--version"], {
    env: { ...process.env, PATH: empty },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toContain(
    `netsort ${pkg.version} (from source, commit unknown (no git checkout),`,
  );
});
