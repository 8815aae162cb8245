/**
 * scripts/launch.sh with a fake netsort (records its arguments, directory and
 * NETSORT_SECRET, prints a line on stdout and stderr, exits with a code chosen per
 * peer, or sleeps) and a fake ssh (records host and command, then runs the command
 * locally with /bin/sh from another directory, stdin forwarded and NETSORT_SECRET
 * removed from its environment as a login would; it never connects anywhere, and
 * exits 255 like an unreachable host for the host named in FAKE_SSH_UNREACHABLE).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { hostname, networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";

const repo = join(import.meta.dir, "../..");
/** A non-loopback IPv4 address of this machine, if it has one. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === "IPv4" && !a.internal)?.address;
/**
 * A name that /etc/hosts maps to a loopback address, other than localhost and this
 * machine's name (which launch.sh takes as local by spelling). Only when the hosts
 * file is consulted first, so that resolving it sends no packet anywhere.
 */
const hostsFileLoopbackName = ((): string | undefined => {
  const ownNames = [hostname().toLowerCase(), hostname().toLowerCase().split(".")[0]];
  try {
    if (readFileSync("/etc/nsswitch.conf", "utf8").match(/^hosts:\s*(\S+)/m)?.[1] !== "files")
      return undefined;
    for (const line of readFileSync("/etc/hosts", "utf8").split("\n")) {
      const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
      if (!address.startsWith("127.")) continue;
      const name = names.find(
        (n) => !n.toLowerCase().includes("localhost") && !ownNames.includes(n.toLowerCase()),
      );
      if (name !== undefined) return name;
    }
  } catch {} // no such files: not Linux/glibc, the test is skipped
  return undefined;
})();
const launchSh = join(repo, "scripts/launch.sh");
const mainTs = join(repo, "src/cli/main.ts");

const fakeNetsort = `#!/usr/bin/env bash
set -u
if [[ $1 == config ]]; then exec bun "$MAIN_TS" "$@"; fi
rec="$FAKE_DIR/peer-$1"
printf '%s\\0' "$@" > "$rec.args"
printf '%s' "$PWD" > "$rec.cwd"
printf '%s' "\${NETSORT_SECRET-(unset)}" > "$rec.secret"
echo "out line of $1"
echo "err line of $1" >&2
code_var="FAKE_CODE_$1"
if [[ -n \${FAKE_SLEEP:-} && \${!code_var:-0} == 0 ]]; then
  sleep 30 &
  echo "$$ $!" > "$rec.pids.tmp" && mv "$rec.pids.tmp" "$rec.pids"
  wait
fi
exit "\${!code_var:-0}"
`;

const fakeSsh = `#!/usr/bin/env bash
set -u
while [[ $# -gt 0 ]]; do
  case $1 in
    -o) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
printf '%s\\0' "$@" > "$FAKE_DIR/ssh-$$.call"
if [[ $1 == "\${FAKE_SSH_UNREACHABLE:-}" ]]; then
  echo "ssh: connect to host $1 port 22: No route to host" >&2
  exit 255
fi
unset NETSORT_SECRET
cd / && exec /bin/sh -c "$2"
`;

let dir = "";
let work = "";
let fakeDir = "";
let netsortPath = "";
let sshPath = "";
const running: Bun.Subprocess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-launch-"));
  netsortPath = join(dir, "fake-netsort");
  sshPath = join(dir, "fake-ssh");
  writeFileSync(netsortPath, fakeNetsort);
  writeFileSync(sshPath, fakeSsh);
  chmodSync(netsortPath, 0o755);
  chmodSync(sshPath, 0o755);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh working directory and record directory per test. */
function freshDirs(name: string): void {
  work = join(dir, `work-${name}`);
  fakeDir = join(dir, `rec-${name}`);
  mkdirSync(work);
  mkdirSync(fakeDir);
}

/** Every pid a fake peer recorded (itself and its sleeping child). */
function recordedPids(): number[] {
  if (!existsSync(fakeDir)) return [];
  return readdirSync(fakeDir)
    .filter((f) => f.endsWith(".pids"))
    .flatMap((f) => readFileSync(join(fakeDir, f), "utf8").trim().split(" ").map(Number));
}

/** Gone, or a zombie waiting for a reaper we do not control (both hold no resources). */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

afterEach(() => {
  for (const proc of running.splice(0)) proc.kill("SIGKILL");
  for (const pid of recordedPids()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

function writeConfig(hosts: string[]): string {
  const lines = hosts.map((host, id) => `  - {serverId: ${id}, host: "${host}", port: ${7100 + id}}`);
  writeFileSync(join(work, "cluster.yaml"), `servers:\n${lines.join("\n")}\n`);
  return "cluster.yaml";
}

function start(args: string[], env: Record<string, string> = {}): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(["bash", launchSh, ...args], {
    cwd: work,
    env: { ...process.env, NETSORT: netsortPath, FAKE_DIR: fakeDir, MAIN_TS: mainTs, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  running.push(proc);
  return proc;
}

async function launch(args: string[], env: Record<string, string> = {}) {
  const proc = start(args, env);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

function peerArgs(id: number): string[] {
  return readFileSync(join(fakeDir, `peer-${id}.args`), "utf8")
    .split("\0")
    .slice(0, -1);
}

function sshCalls(): string[][] {
  return readdirSync(fakeDir)
    .filter((f) => f.startsWith("ssh-"))
    .map((f) => readFileSync(join(fakeDir, f), "utf8").split("\0").slice(0, -1));
}

describe("scripts/launch.sh", () => {
  test("starts every local peer with its id, input, output, config and extra flags; prefixes every line", async () => {
    freshDirs("args");
    // 127.x, localhost and this machine's own name (in capitals) all count as local.
    const config = writeConfig(["127.0.0.1", "localhost", hostname().toUpperCase()]);
    const extra = ["--verbose", "--secret", "it's a b"];
    // NETSORT may be several words.
    const { code, stdout, stderr } = await launch(
      [config, "in dir/in-{id}.dat", "out'{id}'.dat", "--", ...extra],
      { NETSORT: `bash ${netsortPath}` },
    );
    expect(stderr).not.toContain("launch.sh:");
    expect(code).toBe(0);
    for (const id of [0, 1, 2]) {
      expect(peerArgs(id)).toEqual([String(id), `in dir/in-${id}.dat`, `out'${id}'.dat`, config, ...extra]);
      expect(readFileSync(join(fakeDir, `peer-${id}.cwd`), "utf8")).toBe(work);
      expect(stdout).toContain(`[peer ${id}] out line of ${id}\n`);
      expect(stderr).toContain(`[peer ${id}] err line of ${id}\n`);
      expect(stdout).toMatch(new RegExp(`peer ${id} \\(.*\\): exit 0\\n`));
    }
    // Nothing unprefixed from the peers, nothing on the wrong stream, no ssh.
    for (const line of stdout.trim().split("\n")) expect(line).toMatch(/^\[(peer \d|launch)\] /);
    expect(stdout).not.toContain("err line");
    expect(stderr).not.toContain("out line");
    expect(sshCalls()).toEqual([]);
  }, 15_000);

  test("exit code: 1 when a peer fails, 2 when a peer exits 2", async () => {
    freshDirs("codes");
    const config = writeConfig(["127.0.0.1", "127.0.0.2", "localhost"]);
    const one = await launch([config, "in-{id}", "out-{id}"], { FAKE_CODE_1: "1" });
    expect(one.code).toBe(1);
    expect(one.stdout).toMatch(/peer 1 \(127\.0\.0\.2\): exit 1\n/);
    expect(one.stderr).toMatch(/launch\.sh: peer 1 \(127\.0\.0\.2\) exited 1: err line of 1/);
    const two = await launch([config, "in-{id}", "out-{id}"], { FAKE_CODE_2: "2" });
    expect(two.code).toBe(2);
    expect(two.stdout).toMatch(/peer 2 \(localhost\): exit 2\n/);
    const other = await launch([config, "in-{id}", "out-{id}"], { FAKE_CODE_2: "3" });
    expect(other.code).toBe(1);
  }, 15_000);

  // Each case: peers 0 and 2 (local) would run for 30 s; peer 1 (over ssh) cannot
  // start or fails at once. launch.sh must stop the others and exit within seconds.
  const failFastCases: [string, Record<string, string>, RegExp][] = [
    [
      "ssh exits 255 (host unreachable)",
      { FAKE_SSH_UNREACHABLE: "198.51.100.3" },
      /peer 1 \(198\.51\.100\.3\) exited 255 \(ssh failed[^)]*\): ssh: connect to host 198\.51\.100\.3 port 22: No route to host; stopping the other 2 peer\(s\)/,
    ],
    [
      "the remote netsort is missing (127)",
      { NETSORT_REMOTE: "/nonexistent/netsort" },
      /peer 1 \(198\.51\.100\.3\) exited 127 \(netsort command not found[^)]*\): .*\/nonexistent\/netsort.*not found/,
    ],
    [
      "a remote peer exits 1",
      { FAKE_CODE_1: "1" },
      /peer 1 \(198\.51\.100\.3\) exited 1: err line of 1; stopping/,
    ],
  ];
  for (const [name, env, message] of failFastCases) {
    test(`fails fast when ${name}: stops every other peer, names the peer and its last line`, async () => {
      freshDirs(name.replace(/\W+/g, "-"));
      const config = writeConfig(["127.0.0.1", "198.51.100.3", "localhost"]);
      const startedMs = Date.now();
      const proc = start([config, "in-{id}", "out-{id}"], { FAKE_SLEEP: "1", NETSORT_SSH: sshPath, ...env });
      const [stdout, stderr, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      const tookMs = Date.now() - startedMs;
      expect(tookMs).toBeLessThan(8_000); // the sleeping peers would hold it for 30 s
      expect(code).toBe(1);
      expect(stderr).toMatch(message);
      expect(stdout).toMatch(/peer 0 \(127\.0\.0\.1\): stopped \(exit \d+\)\n/);
      for (const pid of recordedPids()) expect(isGone(pid)).toBe(true);
    }, 20_000);
  }

  test.skipIf(ownAddress === undefined)(
    "a host given as one of this machine's addresses (not loopback) runs here, not over ssh (needs a non-loopback IPv4 address)",
    async () => {
      freshDirs("own-ip");
      const config = writeConfig([ownAddress ?? "", "198.51.100.7"]);
      const { code, stdout } = await launch([config, "in-{id}", "out-{id}"], { NETSORT_SSH: sshPath });
      expect(code).toBe(0);
      // Only the documentation address (not this machine) went over ssh.
      expect(sshCalls().map((call) => call[0])).toEqual(["198.51.100.7"]);
      expect(readFileSync(join(fakeDir, "peer-0.cwd"), "utf8")).toBe(work);
      expect(stdout).toContain("all 2 peers exited 0");
    },
    15_000,
  );

  test.skipIf(hostsFileLoopbackName === undefined)(
    "a host name that resolves to this machine runs here, not over ssh (needs a loopback name in /etc/hosts)",
    async () => {
      freshDirs("own-name");
      const config = writeConfig([hostsFileLoopbackName ?? "", "198.51.100.5"]);
      const { code } = await launch([config, "in-{id}", "out-{id}"], { NETSORT_SSH: sshPath });
      expect(code).toBe(0);
      expect(sshCalls().map((call) => call[0])).toEqual(["198.51.100.5"]);
      expect(readFileSync(join(fakeDir, "peer-0.cwd"), "utf8")).toBe(work);
    },
    15_000,
  );

  test("NETSORT_SECRET reaches a remote peer over ssh's stdin, never in ssh's arguments", async () => {
    freshDirs("secret");
    const config = writeConfig(["127.0.0.1", "198.51.100.4"]);
    const secret = "s3cret-'$(x)-value";
    const { code, stderr } = await launch([config, "in-{id}", "out-{id}"], {
      NETSORT_SSH: sshPath,
      NETSORT_SECRET: secret,
    });
    expect(stderr).not.toContain("launch.sh:");
    expect(code).toBe(0);
    // The fake ssh drops NETSORT_SECRET from the environment, as a fresh login has none.
    expect(readFileSync(join(fakeDir, "peer-1.secret"), "utf8")).toBe(secret);
    expect(readFileSync(join(fakeDir, "peer-0.secret"), "utf8")).toBe(secret);
    const calls = sshCalls();
    expect(calls.length).toBe(1);
    for (const arg of calls[0]) expect(arg).not.toContain("s3cret");
    // Without a secret, the remote peer gets none (and the command does not wait for one).
    freshDirs("no-secret");
    writeConfig(["127.0.0.1", "198.51.100.4"]);
    const none = await launch([config, "in-{id}", "out-{id}"], { NETSORT_SSH: sshPath, NETSORT_SECRET: "" });
    expect(none.code).toBe(0);
    expect(readFileSync(join(fakeDir, "peer-1.secret"), "utf8")).toBe("(unset)");
    // A secret of several lines cannot go as one line: refused before any peer starts.
    freshDirs("multiline-secret");
    writeConfig(["127.0.0.1", "198.51.100.4"]);
    const multi = await launch([config, "in-{id}", "out-{id}"], {
      NETSORT_SSH: sshPath,
      NETSORT_SECRET: "line one\nline two",
    });
    expect(multi.code).toBe(2);
    expect(multi.stderr).toContain("NETSORT_SECRET must be one line");
    expect(readdirSync(fakeDir)).toEqual([]);
  }, 15_000);

  test("a bad config exits 2 with netsort's message and starts no peer", async () => {
    freshDirs("badconfig");
    writeFileSync(join(work, "bad.yaml"), "servers:\n  - {serverId: 5, host: a, port: 1}\n");
    const { code, stderr } = await launch(["bad.yaml", "in-{id}", "out-{id}"]);
    expect(code).toBe(2);
    expect(stderr).toContain("serverId 5 is outside");
    expect(readdirSync(fakeDir)).toEqual([]);
    // The default netsort command (whichever it finds) says the same kind of thing.
    const defaultCommand = await launch(["missing.yaml", "in-{id}", "out-{id}"], { NETSORT: "" });
    expect(defaultCommand.code).toBe(2);
    expect(defaultCommand.stderr).toContain("missing.yaml");
  }, 15_000);

  test("usage errors exit 2; --help exits 0", async () => {
    freshDirs("usage");
    const config = writeConfig(["127.0.0.1", "localhost"]);
    expect((await launch([])).code).toBe(2);
    expect((await launch([config, "in-{id}", "out-{id}", "--verbose"])).code).toBe(2);
    const clash = await launch([config, "in-{id}", "out.dat"]);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain("same output");
    expect(readdirSync(fakeDir)).toEqual([]);
    const help = await launch(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: scripts/launch.sh <config>");
  }, 15_000);

  test("a remote peer runs over NETSORT_SSH: right host, cd to this directory, arguments intact", async () => {
    freshDirs("ssh");
    const config = writeConfig(["127.0.0.1", "198.51.100.1"]);
    const extra = ["--label", "$(touch pwned) `x` it's"];
    const { code, stdout, stderr } = await launch([config, "in {id}.dat", "out-{id}.dat", "--", ...extra], {
      NETSORT_SSH: sshPath,
      FAKE_CODE_1: "2",
    });
    const calls = sshCalls();
    expect(calls.length).toBe(1);
    expect(calls[0].length).toBe(2); // exactly a host and one command string
    expect(calls[0][0]).toBe("198.51.100.1");
    // The fake ssh ran the command from "/": only the remote `cd` brings it here.
    expect(readFileSync(join(fakeDir, "peer-1.cwd"), "utf8")).toBe(work);
    expect(peerArgs(1)).toEqual(["1", "in 1.dat", "out-1.dat", config, ...extra]);
    expect(peerArgs(0)).toEqual(["0", "in 0.dat", "out-0.dat", config, ...extra]);
    expect(existsSync(join("/", "pwned")) || existsSync(join(work, "pwned"))).toBe(false);
    expect(stdout).toContain("[peer 1] out line of 1\n");
    expect(stderr).toContain("[peer 1] err line of 1\n");
    expect(stdout).toMatch(/peer 1 \(198\.51\.100\.1\): exit 2\n/);
    expect(code).toBe(2);
  }, 15_000);

  for (const [signal, expected] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    test(`${signal} stops every peer and its children, then exits ${expected}`, async () => {
      freshDirs(signal);
      const config = writeConfig(["127.0.0.1", "localhost", "198.51.100.2"]);
      const proc = start([config, "in-{id}", "out-{id}"], { FAKE_SLEEP: "1", NETSORT_SSH: sshPath });
      const stdout = new Response(proc.stdout).text();
      const stderr = new Response(proc.stderr).text();
      const startDeadlineMs = Date.now() + 5_000;
      while (recordedPids().length < 6 && Date.now() < startDeadlineMs) await Bun.sleep(20);
      const pids = recordedPids();
      expect(pids.length).toBe(6); // three fake peers and their sleeping children
      for (const pid of pids) expect(isGone(pid)).toBe(false);
      const sentAtMs = Date.now();
      proc.kill(signal);
      const code = await proc.exited;
      const stopMs = Date.now() - sentAtMs;
      expect(code).toBe(expected);
      expect(stopMs).toBeLessThan(3_000); // TERM works: no wait for the 5 s KILL fallback
      for (const pid of pids) expect(isGone(pid)).toBe(true);
      expect(await stderr).toContain(`${signal}: stopping 3 peer(s)`);
      expect(await stdout).toContain("[peer 2] out line of 2");
    }, 15_000);
  }
});
