/**
 * scripts/launch.sh over two "machines": this one and a network namespace created
 * for the test (a veth pair in a private /30: this machine has .1, the namespace
 * .2; no other traffic). The namespace is reached through a stand-in `ssh` (first
 * on PATH) that, like a fresh login, passes no environment: it runs the remote
 * command with `ip netns exec <ns> env -i PATH=... HOME=... sh -c "<command>"`,
 * stdin forwarded, and records its arguments. Real netsort peers, run from source.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateSecret } from "../../src/secret.ts";
import {
  freePorts,
  makeRecords,
  outputPaths,
  removeDir,
  tempDir,
  verifyOutputs,
  writeInputs,
} from "../mesh/harness.ts";

const repo = join(import.meta.dir, "../..");
const launchSh = join(repo, "scripts/launch.sh");
const netsort = `${process.execPath} ${join(repo, "src/cli/main.ts")}`;

/** Root, and an `ip` that knows network namespaces: otherwise these tests cannot run. */
const netnsReady = process.getuid?.() === 0 && Bun.spawnSync(["ip", "netns", "list"]).exitCode === 0;

// Names unique to this process, so that a concurrent run cannot collide with ours.
// Interface names are limited to 15 characters.
const tag = process.pid % 100_000;
const ns = `netsort-launch-${tag}`;
const vethHere = `nsl${tag}h`;
const vethThere = `nsl${tag}n`;
const subnet = `10.213.${tag % 250}`;
const hereIp = `${subnet}.1`;
const thereIp = `${subnet}.2`;

/** Every launch.sh run and every peer it starts ends within this. */
const runTimeoutMs = 60_000;
/** How long a failing launch may take: seconds, not the peers' 60 s connect timeout. */
const failFastMs = 20_000;
/** How often the process table is scanned for the secret while a launch runs. */
const cmdlineScanIntervalMs = 20;

/** Strong secrets (src/secret.ts refuses weak ones before any proof): the control's, and the stand-in's wrong one. */
const controlSecret = generateSecret();
const wrongSecret = generateSecret();

const standInSsh = `#!/usr/bin/env bash
# Stand-in for ssh: records its arguments, then runs the command in the namespace
# with an empty environment, as a fresh login would (no NETSORT_SECRET).
printf '%s\\0' "$@" > "$STANDIN_DIR/call-$$"
while [[ $# -gt 0 ]]; do
  case $1 in
    -o) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=$1
shift
if [[ $host != "${thereIp}" || -n \${STANDIN_UNREACHABLE:-} ]]; then
  echo "ssh: connect to host $host port 22: No route to host" >&2
  exit 255
fi
case \${STANDIN_STDIN:-} in
  none) exec </dev/null ;;
  wrong) exec < <(echo "${wrongSecret}") ;;
esac
exec ip netns exec "${ns}" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -c "$*"
`;

function ip(...args: string[]): void {
  const r = Bun.spawnSync(["ip", ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.toString().trim()}`);
}

function teardownNamespace(): void {
  // Deleting one end of a veth pair deletes both; errors mean it is already gone.
  Bun.spawnSync(["ip", "link", "del", vethHere], { stderr: "ignore" });
  Bun.spawnSync(["ip", "netns", "del", ns], { stderr: "ignore" });
}

let dir = "";
let binDir = "";
const running: Subprocess[] = [];

beforeAll(() => {
  if (!netnsReady) return;
  teardownNamespace(); // a leftover of a killed run with the same pid
  ip("netns", "add", ns);
  ip("link", "add", vethHere, "type", "veth", "peer", "name", vethThere);
  ip("link", "set", vethThere, "netns", ns);
  ip("addr", "add", `${hereIp}/30`, "dev", vethHere);
  ip("link", "set", vethHere, "up");
  ip("-n", ns, "addr", "add", `${thereIp}/30`, "dev", vethThere);
  ip("-n", ns, "link", "set", vethThere, "up");
  ip("-n", ns, "link", "set", "lo", "up");
  dir = tempDir("netsort-launch-netns-");
  binDir = join(dir, "bin");
  mkdirSync(binDir);
  writeFileSync(join(binDir, "ssh"), standInSsh);
  chmodSync(join(binDir, "ssh"), 0o755);
});

afterEach(() => {
  // launch.sh stops its peers on TERM; the tests wait for it, so this is for a test that gave up.
  for (const proc of running.splice(0)) proc.kill("SIGTERM");
});

afterAll(async () => {
  if (!netnsReady) return;
  await Bun.sleep(200); // let a launch stopped by afterEach take its peers down
  teardownNamespace();
  if (dir !== "") removeDir(dir);
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  tookMs: number;
  /** Every stand-in ssh call's arguments. */
  sshCalls: string[][];
  /** Command lines seen in the process table while it ran that held `watchFor`. */
  cmdlinesWithSecret: string[];
  /** Whether the scan saw the remote peer's command line (it scanned while peers ran). */
  scanSawRemotePeer: boolean;
  outputs: string[];
  inputs: string[];
}

/**
 * Run launch.sh for a 3-peer cluster: peers 0 and 2 on this machine (given by
 * its veth address, not a loopback name), peer 1 in the namespace.
 */
async function launch(
  name: string,
  env: Record<string, string>,
  extra: string[] = [],
  watchFor = "",
): Promise<Run> {
  const work = join(dir, name);
  const calls = join(work, "calls");
  mkdirSync(calls, { recursive: true });
  const inputs = writeInputs(
    work,
    [0, 1, 2].map((id) => makeRecords(2000, id === 2 ? "skew" : "uniform", 70 + id)),
  );
  const outputs = outputPaths(work, 3);
  const hosts = [hereIp, thereIp, hereIp];
  const ports = freePorts(3);
  const servers = hosts.map((host, id) => `  - {serverId: ${id}, host: "${host}", port: ${ports[id]}}`);
  writeFileSync(join(work, "cluster.yaml"), `servers:\n${servers.join("\n")}\n`);
  const base: Record<string, string | undefined> = { ...process.env };
  delete base.NETSORT_SECRET;
  delete base.NETSORT_SSH;
  const startedMs = Date.now();
  const proc = Bun.spawn(
    [
      "bash",
      launchSh,
      "cluster.yaml",
      "input-{id}.dat",
      "output-{id}.dat",
      ...(extra.length ? ["--", ...extra] : []),
    ],
    {
      cwd: work,
      env: {
        ...base,
        PATH: `${binDir}:${process.env.PATH}`,
        NETSORT: netsort,
        NETSORT_REMOTE: netsort,
        NO_COLOR: "1",
        STANDIN_DIR: calls,
        ...env,
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  running.push(proc);
  const cmdlinesWithSecret: string[] = [];
  let scanSawRemotePeer = false;
  let scanning = watchFor !== "";
  const scan = (async () => {
    while (scanning) {
      for (const line of commandLines()) {
        if (line.includes(watchFor)) cmdlinesWithSecret.push(line);
        if (line.includes(`${netsort} 1 input-1.dat`)) scanSawRemotePeer = true;
      }
      await Bun.sleep(cmdlineScanIntervalMs);
    }
  })();
  const timer = setTimeout(() => proc.kill("SIGTERM"), runTimeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  scanning = false;
  await scan;
  const sshCalls = readdirSync(calls).map((f) =>
    readFileSync(join(calls, f), "utf8").split("\0").slice(0, -1),
  );
  return {
    code,
    stdout,
    stderr,
    tookMs: Date.now() - startedMs,
    sshCalls,
    cmdlinesWithSecret,
    scanSawRemotePeer,
    outputs,
    inputs,
  };
}

/** The command line of every process (arguments joined by spaces). */
function commandLines(): string[] {
  const lines: string[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      lines.push(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" "));
    } catch {} // it ended meanwhile
  }
  return lines;
}

describe.skipIf(!netnsReady)(
  "scripts/launch.sh over this machine and a network namespace (needs root and ip netns)",
  () => {
    test("sorts with peers on both machines; NETSORT_SECRET reaches the remote peer and no command line", async () => {
      const secret = `launch-netns-secret-${crypto.randomUUID()}`;
      const run = await launch("secret", { NETSORT_SECRET: secret }, ["--validate"], secret);
      expect({ code: run.code, stderr: run.code === 0 ? "" : run.stderr }).toEqual({ code: 0, stderr: "" });
      expect(verifyOutputs(run.inputs, run.outputs)).toEqual([]);
      const text = run.stdout + run.stderr;
      for (const id of [0, 1, 2]) expect(text).toContain(`[peer ${id}] `);
      expect(text).toMatch(/\[peer 0\] .*VALID/);
      expect(text).toContain("all 3 peers exited 0");
      // Only peer 1 went over ssh: this machine's own address counts as local.
      expect(run.sshCalls.map((call) => call.filter((arg) => arg === thereIp || arg === hereIp))).toEqual([
        [thereIp],
      ]);
      for (const call of run.sshCalls) expect(call.join(" ")).not.toContain(secret);
      expect(run.cmdlinesWithSecret).toEqual([]);
      expect(run.scanSawRemotePeer).toBe(true);
    }, 90_000);

    test("controls: a wrong or missing secret on the remote peer fails fast with exit 2", async () => {
      // The stand-in replaces the secret line with another: netsort's proof check refuses.
      const wrong = await launch("wrong-secret", {
        NETSORT_SECRET: controlSecret,
        STANDIN_STDIN: "wrong",
      });
      expect(wrong.code).toBe(2);
      expect(wrong.tookMs).toBeLessThan(failFastMs);
      expect(wrong.stderr).toMatch(/launch\.sh: peer \d \(10\.213\.\d+\.\d\) exited 2: .*secrets differ/);
      expect(wrong.outputs.filter((path) => existsSync(path))).toEqual([]);
      // The stand-in drops its stdin: the remote shell reads no line and says so.
      const none = await launch("no-secret", {
        NETSORT_SECRET: controlSecret,
        STANDIN_STDIN: "none",
      });
      expect(none.code).toBe(2);
      expect(none.tookMs).toBeLessThan(failFastMs);
      expect(none.stderr).toContain(
        `launch.sh: peer 1 (${thereIp}) exited 2: launch.sh: no NETSORT_SECRET line on stdin`,
      );
    }, 90_000);

    test("--secret-file works when the file exists on every host", async () => {
      // One file system under both "machines": the same path exists on each.
      mkdirSync(join(dir, "secret-file"), { recursive: true });
      const secretPath = join(dir, "secret-file", "secret.txt");
      writeFileSync(secretPath, `${generateSecret()}\n`);
      chmodSync(secretPath, 0o600);
      const run = await launch("secret-file", {}, ["--secret-file", "secret.txt"]);
      expect({ code: run.code, stderr: run.code === 0 ? "" : run.stderr }).toEqual({ code: 0, stderr: "" });
      expect(verifyOutputs(run.inputs, run.outputs)).toEqual([]);
    }, 90_000);

    test("a remote peer that cannot start (ssh 255, netsort missing 127) stops the launch within seconds", async () => {
      const unreachable = await launch("unreachable", { STANDIN_UNREACHABLE: "1" });
      expect(unreachable.tookMs).toBeLessThan(failFastMs);
      expect(unreachable.code).toBe(1);
      expect(unreachable.stderr).toContain(
        `launch.sh: peer 1 (${thereIp}) exited 255 (ssh failed: host unreachable, host key unknown, or no key-based login?): ssh: connect to host ${thereIp} port 22: No route to host; stopping the other 2 peer(s)`,
      );
      expect(unreachable.stdout).toMatch(/peer 0 \(.*\): stopped/);
      const missing = await launch("missing", { NETSORT_REMOTE: "/nonexistent/netsort" });
      expect(missing.tookMs).toBeLessThan(failFastMs);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(
        /launch\.sh: peer 1 \(.*\) exited 127 .*\/nonexistent\/netsort.*not found/,
      );
    }, 90_000);
  },
);
