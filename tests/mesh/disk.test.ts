/**
 * Disk faults (issue 4, scenario 8) with 3 real peers, peer 1 the one in trouble:
 * an output directory that is missing or not writable is found at start-up
 * (exit 2, before data moves); running out of space while writing (a 1 MiB
 * tmpfs) or past the file-size limit (`ulimit -f`: Bun ignores SIGXFSZ, so the
 * write fails with EFBIG) is a run-time failure (exit 1). Either way the others
 * stop within 2 s naming peer 1, and nobody leaves an output or a temp file.
 * Tests run as root, where chmod does not stop writes: "not writable" is a
 * read-only tmpfs mount instead (skipped with the reason when a probe, run
 * before the tests, finds that mounting fails here).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  allExited,
  dirsPerTest,
  errorLine,
  leftovers,
  type PeerExit,
  sh,
  skipReason,
  spawnPeer,
} from "./fault-helpers.ts";
import {
  freePorts,
  makeRecords,
  outputPaths,
  removeDir,
  tempDir,
  writeConfig,
  writeInputs,
} from "./harness.ts";

/** Records per peer: peer 1's output (~1.5 MB) overflows the 1 MiB tmpfs and the 512 KiB ulimit. */
const recordsPerPeer = 15_000;
const tmpfsBytes = 1024 * 1024;
const ulimitKiB = 512;
/** A peer with an unusable output directory reports it this soon after it starts. */
const badPeerBoundMs = 3_000;
/** After peer 1 exits, the others must stop this soon (they were told: ABORT). */
const abortBoundMs = 2_000;
const runBoundMs = 30_000;

let shared: string;
let inputs: string[];
const mounts: string[] = [];

/**
 * Can this machine mount a tmpfs (root, not a locked-down container)? Decided
 * before the tests run, so the two tmpfs tests are skipped with the reason;
 * once the probe passes, a mount that fails fails the test.
 */
async function mountProblem(): Promise<string | null> {
  const probe = mkdtempSync(join(tmpdir(), "netsort-mount-probe-"));
  try {
    const r = await sh(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
    if (r.code !== 0) return `mount -t tmpfs fails here: ${r.out.trim()}`;
    await sh(["umount", probe]);
    return null;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const noMount = await mountProblem();
if (noMount !== null) skipReason("8 output dir not writable, 8 out of space", noMount);
/** The reason, in the title of a test that is skipped. */
const skipNote = noMount === null ? "" : ` (skipped: ${noMount})`;

beforeAll(() => {
  shared = tempDir("netsort-disk-");
  inputs = writeInputs(
    shared,
    [0, 1, 2].map((id) => makeRecords(recordsPerPeer, "uniform", 300 + id)),
  );
});

afterAll(async () => {
  for (const m of mounts) await sh(["umount", "-l", m]);
  removeDir(shared);
});

const newDir = dirsPerTest("netsort-disk-");

async function mountTmpfs(path: string, options: string): Promise<void> {
  mkdirSync(path, { recursive: true });
  const r = await sh(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path]);
  if (r.code !== 0) throw new Error(`mount ${path}: ${r.out}`);
  mounts.push(path);
}

async function unmount(path: string): Promise<void> {
  await sh(["umount", path]);
  mounts.splice(mounts.indexOf(path), 1);
}

/**
 * Run 3 peers with peer 1 writing to `badOutput`; returns the exits.
 * `prefix` wraps peer 1's command (e.g. a ulimit).
 */
async function runWithBadOutput(dir: string, badOutput: string, prefix?: string[]): Promise<PeerExit[]> {
  const config = writeConfig(dir, freePorts(3));
  const outputs = outputPaths(dir, 3);
  outputs[1] = badOutput;
  const args = ["--connect-timeout-ms=20000"];
  const peers = [0, 1, 2].map((id) =>
    spawnPeer({
      id,
      input: inputs[id],
      output: outputs[id],
      config,
      args,
      prefix: id === 1 ? prefix : undefined,
    }),
  );
  const exits = await allExited(peers, runBoundMs);
  expect(leftovers(dir, outputPaths(dir, 3))).toEqual([]);
  return exits;
}

/** Peers 0 and 2 exit 1, saying peer 1 aborted with `why`, within the bound after peer 1. */
function expectOthersAborted(exits: PeerExit[], why: RegExp): number[] {
  return [exits[0], exits[2]].map((e) => {
    expect({ id: e.id, exitCode: e.exitCode }).toEqual({ id: e.id, exitCode: 1 });
    const line = errorLine(e);
    expect(line).toMatch(/^peer 1 aborted: output /);
    expect(line).toMatch(why);
    const ms = Math.round(e.exitAtMs - exits[1].exitAtMs);
    if (ms > abortBoundMs)
      throw new Error(`peer ${e.id} stopped ${ms} ms after peer 1 (bound ${abortBoundMs} ms)`);
    return ms;
  });
}

function report(scenario: string, exits: PeerExit[], othersMs: number[]): void {
  console.log(
    `[measured] ${scenario}: ${JSON.stringify({ peer1Ms: Math.round(exits[1].elapsedMs), othersAfterPeer1Ms: othersMs, message: errorLine(exits[1]) })}`,
  );
}

describe("8. disk", () => {
  test(
    "output directory missing: exit 2 at start-up, the others exit 1 naming peer 1",
    async () => {
      const dir = newDir();
      const missing = join(dir, "no-such-dir");
      const bad = join(missing, "output-1.dat");
      const exits = await runWithBadOutput(dir, bad);
      expect(exits[1].exitCode).toBe(2);
      expect(exits[1].elapsedMs).toBeLessThan(badPeerBoundMs);
      expect(errorLine(exits[1])).toBe(
        `output ${bad}: cannot write in ${missing} (directory does not exist)`,
      );
      expect(exits[1].stderr).not.toMatch(/read \d/); // found before any data moved
      report("8 output dir missing", exits, expectOthersAborted(exits, /directory does not exist/));
    },
    runBoundMs + 5_000,
  );

  test.skipIf(noMount !== null)(
    `output directory not writable (read-only mount): exit 2 at start-up, the others exit 1${skipNote}`,
    async () => {
      const dir = newDir();
      const ro = join(dir, "read-only");
      await mountTmpfs(ro, "ro,size=64k");
      try {
        const bad = join(ro, "output-1.dat");
        const exits = await runWithBadOutput(dir, bad);
        expect(exits[1].exitCode).toBe(2);
        expect(exits[1].elapsedMs).toBeLessThan(badPeerBoundMs);
        expect(errorLine(exits[1])).toMatch(new RegExp(`^output ${bad}: cannot write in ${ro} \\(`));
        expect(exits[1].stderr).not.toMatch(/read \d/);
        report("8 output dir read-only", exits, expectOthersAborted(exits, /cannot write in/));
      } finally {
        await unmount(ro);
      }
    },
    runBoundMs + 5_000,
  );

  test.skipIf(noMount !== null)(
    `out of space while writing (1 MiB tmpfs): exit 1, no partial output, the others exit 1${skipNote}`,
    async () => {
      const dir = newDir();
      const small = join(dir, "small");
      await mountTmpfs(small, `size=${tmpfsBytes}`);
      try {
        const bad = join(small, "output-1.dat");
        const exits = await runWithBadOutput(dir, bad);
        expect(exits[1].exitCode).toBe(1);
        expect(errorLine(exits[1])).toMatch(
          new RegExp(`^output ${bad}: write failed after \\d+ bytes \\(no space left on device\\)$`),
        );
        expect(readdirSync(small)).toEqual([]); // neither the output nor its temp file
        report("8 out of space", exits, expectOthersAborted(exits, /no space left on device/));
      } finally {
        await unmount(small);
      }
    },
    runBoundMs + 5_000,
  );

  test(
    "past the file-size limit (ulimit -f): exit 1 with EFBIG, no partial output, the others exit 1",
    async () => {
      const dir = newDir();
      const bad = join(dir, "output-1.dat");
      const exits = await runWithBadOutput(dir, bad, [
        "bash",
        "-c",
        `ulimit -f ${ulimitKiB}; exec "$@"`,
        "bash",
      ]);
      expect({ exitCode: exits[1].exitCode, signal: exits[1].signal }).toEqual({ exitCode: 1, signal: null });
      expect(errorLine(exits[1])).toBe(
        `output ${bad}: write failed after ${ulimitKiB * 1024} bytes (file too large)`,
      );
      report("8 ulimit -f", exits, expectOthersAborted(exits, /file too large/));
    },
    runBoundMs + 5_000,
  );
});
