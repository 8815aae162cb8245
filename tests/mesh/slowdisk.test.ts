/**
 * A healthy peer on a slow disk is not a dead peer (issue 9, point 4). Of two
 * peers, peer 1 writes its ~40 MB share to a small ext4 on a loop device whose
 * write bandwidth a blkio cgroup limits to 4 MB/s for peer 1: writing and
 * fsyncing take ~10 s, twice the default 5 s idle timeout, while peer 0 (on
 * the normal disk) waits for its READY. With writes and fsyncs on the event
 * loop, peer 1 sent no ping meanwhile, and peer 0 failed with "no traffic from
 * peer 1" (measured on the code before the change); now both must exit 0 with
 * outputs that verify. (With both peers throttled, both stalled at the same
 * time and nobody noticed: one slow peer is the case that failed.)
 * Needs root, loop devices, mkfs.ext4 and a blkio (v1) or io (v2) controller;
 * skipped with the reason otherwise. Everything set up is undone in finally.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { allExited, killPeers, randomFile, sh, spawnPeer } from "./fault-helpers.ts";
import {
  freePorts,
  killAll,
  outputPaths,
  problemLines,
  removeDir,
  tempDir,
  verifyOutputs,
  writeConfig,
} from "./harness.ts";

/** Write bandwidth of the throttled device, for peer 1. */
const writeBytesPerSecond = 4_000_000;
/** Input per peer: uniform keys, so each peer's output share is about this much too. */
const inputBytesPerPeer = 40_000_000;
/** The loop device's backing file (sparse): room for peer 1's output. */
const deviceBytes = 128 * 1024 * 1024;
const runBoundMs = 60_000;

const blkioV1 = "/sys/fs/cgroup/blkio";
const unifiedRoot = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : null;

/** Why this machine cannot run the test, or null when it can. */
function cannotRun(): string | null {
  if (process.platform !== "linux") return "Linux only (loop devices, cgroups)";
  if (process.getuid?.() !== 0) return "needs root (losetup, mount, cgroups)";
  if (!existsSync("/dev/loop-control")) return "no loop devices (/dev/loop-control)";
  if (Bun.which("losetup") === null || Bun.which("mkfs.ext4") === null) return "losetup or mkfs.ext4 missing";
  if (existsSync(join(blkioV1, "blkio.throttle.write_bps_device"))) return null;
  if (unifiedRoot !== null) {
    const enabled = readFileSync(join(unifiedRoot, "cgroup.subtree_control"), "utf8");
    if (enabled.split(/\s+/).includes("io")) return null;
  }
  return "no blkio (cgroup v1) throttle and no io controller enabled at the cgroup v2 root";
}
const skipWhy = cannotRun();
if (skipWhy !== null) console.log(`[skip] slow disk: ${skipWhy}`);

afterEach(() => {
  killPeers();
  killAll();
});

async function run(cmd: string[]): Promise<string> {
  const r = await sh(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.out}`);
  return r.out.trim();
}

/** A cgroup whose members write to `majMin` at most `bytesPerSecond`; returns its cgroup.procs file. */
function throttledCgroup(name: string, majMin: string, bytesPerSecond: number): string {
  if (existsSync(join(blkioV1, "blkio.throttle.write_bps_device"))) {
    const dir = join(blkioV1, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "blkio.throttle.write_bps_device"), `${majMin} ${bytesPerSecond}\n`);
    return join(dir, "cgroup.procs");
  }
  const dir = join(unifiedRoot ?? "/sys/fs/cgroup", name);
  mkdirSync(dir);
  writeFileSync(join(dir, "io.max"), `${majMin} wbps=${bytesPerSecond}\n`);
  return join(dir, "cgroup.procs");
}

describe("slow disk", () => {
  test.skipIf(skipWhy !== null)(
    `peer 1 writes ~40 MB at ${writeBytesPerSecond / 1e6} MB/s, 2x the idle timeout: both peers exit 0, outputs verify`,
    async () => {
      const dir = tempDir("netsort-slowdisk-");
      const mnt = join(dir, "mnt");
      const cgroupName = `netsort-slowdisk-${process.pid}`;
      let loop: string | null = null;
      let mounted = false;
      let cgroupProcs: string | null = null;
      try {
        const image = join(dir, "disk.img");
        await run(["truncate", "-s", String(deviceBytes), image]);
        loop = await run(["losetup", "-f", "--show", image]);
        await run(["mkfs.ext4", "-q", loop]);
        mkdirSync(mnt);
        await run(["mount", loop, mnt]);
        mounted = true;
        const majMin = readFileSync(`/sys/block/${loop.replace("/dev/", "")}/dev`, "utf8").trim();
        cgroupProcs = throttledCgroup(cgroupName, majMin, writeBytesPerSecond);

        const inputs = [0, 1].map((id) => randomFile(join(dir, `input-${id}.dat`), inputBytesPerPeer));
        const outputs = [outputPaths(dir, 2)[0], outputPaths(mnt, 2)[1]];
        const config = writeConfig(dir, freePorts(2));
        // Peer 1 joins the cgroup before it execs netsort, so all its threads are throttled.
        const prefix = ["sh", "-c", `echo $$ > ${cgroupProcs} && exec "$@"`, "sh"];
        const peers = [0, 1].map((id) =>
          spawnPeer({
            id,
            input: inputs[id],
            output: outputs[id],
            config,
            prefix: id === 1 ? prefix : undefined,
          }),
        );
        const exits = await allExited(peers, runBoundMs - 10_000);
        console.log(
          `[measured] slow disk: ${JSON.stringify(exits.map((e) => ({ id: e.id, exitCode: e.exitCode, ms: Math.round(e.elapsedMs) })))}`,
        );
        for (const e of exits) {
          // Logs go to stderr: only error and warning lines count as problems.
          expect({ id: e.id, exitCode: e.exitCode, problems: problemLines(e.stderr) }).toEqual({
            id: e.id,
            exitCode: 0,
            problems: [],
          });
        }
        expect(verifyOutputs(inputs, outputs)).toEqual([]);
      } finally {
        killPeers();
        if (mounted) await sh(["umount", mnt]);
        if (loop !== null) await sh(["losetup", "-d", loop]);
        if (cgroupProcs !== null) {
          try {
            rmdirSync(join(cgroupProcs, ".."));
          } catch (error) {
            console.log(`[cleanup] cgroup ${cgroupName}: ${error}`);
          }
        }
        removeDir(dir);
      }
    },
    runBoundMs,
  );
});
