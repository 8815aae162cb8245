/**
 * A network cut (issue 4, scenario 11). Two peers in separate network namespaces
 * joined by a veth pair (10.201.x.1 and 10.201.x.2 exist only inside the
 * namespaces this file creates); mid-exchange the link is brought down. No FIN
 * or RST ever arrives, so only the idle timeout can notice: both peers must stop
 * within it (plus one timer tick and exit), exit 1 naming the silent peer, and
 * leave no output or temp file. Where namespaces cannot be created (not root, no
 * iproute2, a container without CAP_NET_ADMIN: probed before the tests run) the
 * test is skipped with the reason; a setup that fails after the probe passed
 * fails the test.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  allExited,
  errorLine,
  exchangeDoneLine,
  killPeers,
  leftovers,
  randomFile,
  sh,
  skipReason,
  spawnPeer,
} from "./fault-helpers.ts";
import { outputPaths, removeDir, tempDir } from "./harness.ts";

/** Per-peer input: big enough that the exchange is still running when the link goes down. */
const inputBytes = 30 * 1000 * 1000;
const idleTimeoutMs = 1_500;
/** Detection happens at the idle timeout; allow one ~375 ms tick and the process exit on top. */
const stopSlackMs = 1_000;
const runBoundMs = 30_000;

// Unique per run, so parallel or leftover runs never collide.
const tag = process.pid % 100_000;
const ns = [`nsort-a-${tag}`, `nsort-b-${tag}`];
const veth = [`nsva${tag}`, `nsvb${tag}`];
const subnet = `10.201.${tag % 250}`;
const addr = [`${subnet}.1`, `${subnet}.2`];
const port = [7100, 7101];

let dir: string;

async function run(argv: string[]): Promise<void> {
  const r = await sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.out.trim()}`);
}

/**
 * Can this machine create a namespace and a veth pair? Decided before the tests
 * run (not root, no iproute2, a container without CAP_NET_ADMIN), so the test is
 * skipped with the reason; once the probe passes, a failed setup fails the test.
 */
async function netnsProblem(): Promise<string | null> {
  const probeNs = `nsort-probe-${tag}`;
  const probeVeth = [`nspa${tag}`, `nspb${tag}`];
  try {
    if ((await sh(["ip", "-V"])).code !== 0) return "iproute2 (`ip`) is not installed";
    await run(["ip", "netns", "add", probeNs]);
    await run(["ip", "link", "add", probeVeth[0], "type", "veth", "peer", "name", probeVeth[1]]);
    await run(["ip", "link", "set", probeVeth[0], "netns", probeNs]);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    // Deleting the namespace deletes the veth end inside it, and with it the pair.
    await sh(["ip", "link", "del", probeVeth[0]]);
    await sh(["ip", "netns", "del", probeNs]);
  }
}

const problem = await netnsProblem();
if (problem !== null) skipReason("11 network cut", `cannot create network namespaces here: ${problem}`);

beforeAll(async () => {
  if (problem !== null) return;
  dir = tempDir("netsort-netns-");
  await run(["ip", "netns", "add", ns[0]]);
  await run(["ip", "netns", "add", ns[1]]);
  await run(["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]]);
  for (const i of [0, 1]) {
    await run(["ip", "link", "set", veth[i], "netns", ns[i]]);
    await run(["ip", "-n", ns[i], "addr", "add", `${addr[i]}/24`, "dev", veth[i]]);
    await run(["ip", "-n", ns[i], "link", "set", veth[i], "up"]);
    await run(["ip", "-n", ns[i], "link", "set", "lo", "up"]);
  }
}, 30_000);

afterAll(async () => {
  if (problem !== null) return;
  killPeers();
  // Deleting a namespace deletes the veth end inside it, and with it the pair.
  for (const n of ns) await sh(["ip", "netns", "del", n]);
  removeDir(dir);
});

afterEach(() => killPeers());

describe("11. a network cut", () => {
  test.skipIf(problem !== null)(
    `the link goes down mid-exchange: both peers stop within the idle timeout, exit 1${problem === null ? "" : ` (skipped: ${problem})`}`,
    async () => {
      const config = join(dir, "cluster.yaml");
      writeFileSync(
        config,
        `servers:\n${[0, 1].map((i) => `  - {serverId: ${i}, host: ${addr[i]}, port: ${port[i]}}`).join("\n")}\n`,
      );
      const inputs = [0, 1].map((i) => randomFile(join(dir, `input-${i}.dat`), inputBytes));
      const outputs = outputPaths(dir, 2);
      const peers = [0, 1].map((id) =>
        spawnPeer({
          id,
          input: inputs[id],
          output: outputs[id],
          config,
          args: [`--idle-timeout-ms=${idleTimeoutMs}`, "--connect-timeout-ms=15000"],
          prefix: ["ip", "netns", "exec", ns[id]],
        }),
      );
      await Promise.all(peers.map((p) => p.waitFor(/mesh up/, 15_000)));
      await run(["ip", "-n", ns[0], "link", "set", veth[0], "down"]);
      const cutAtMs = performance.now();
      expect(peers.map((p) => exchangeDoneLine.test(p.stderr))).toEqual([false, false]);
      const exits = await allExited(peers, runBoundMs);
      const stopMs = exits.map((e) => Math.round(e.exitAtMs - cutAtMs));
      const messages = exits.map((e) => {
        expect({ id: e.id, exitCode: e.exitCode }).toEqual({ id: e.id, exitCode: 1 });
        return errorLine(e);
      });
      console.log(
        `[measured] 11 network cut (ran in netns ${ns.join(", ")}): ${JSON.stringify({ idleTimeoutMs, stopMs, messages })}`,
      );
      expect(messages[0]).toMatch(
        new RegExp(`no traffic from peer 1 \\(${addr[1]}:${port[1]}\\) for ${idleTimeoutMs} ms`),
      );
      expect(messages[1]).toMatch(
        new RegExp(`no traffic from peer 0 \\(${addr[0]}:${port[0]}\\) for ${idleTimeoutMs} ms`),
      );
      for (const ms of stopMs) expect(ms).toBeLessThanOrEqual(idleTimeoutMs + stopSlackMs);
      expect(leftovers(dir, outputs)).toEqual([]);
    },
    runBoundMs + 10_000,
  );
});
