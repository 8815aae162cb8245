/**
 * A cluster of real peer processes on this machine's loopback, for `demo` and
 * `bench`: the same command line users run, one process per peer.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { NetsortError } from "../errors.ts";
import { log } from "../log.ts";
import type { PhaseTimings } from "../types.ts";

/** How to start this same netsort again: the compiled binary, or bun + the entry file. */
export function selfCommand(): string[] {
  // In a compiled binary the entry is inside Bun's embedded filesystem.
  if (Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:\\~BUN\\")) return [process.execPath];
  return [process.execPath, Bun.main];
}

/** Ports free a moment ago on 127.0.0.1 (bind port 0, note it, close). */
export function freeLoopbackPorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

export function writeLocalConfig(dir: string, peers: number): string {
  const ports = freeLoopbackPorts(peers);
  const lines = [
    "servers:",
    ...ports.map((port, id) => `  - { serverId: ${id}, host: 127.0.0.1, port: ${port} }`),
  ];
  const path = join(dir, "cluster.yaml");
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

export interface PeerRun {
  id: number;
  exitCode: number;
  /** Wall time of the process, ms. */
  elapsedMs: number;
  timings: (PhaseTimings & { serverId: number }) | null;
  output: string;
}

export interface ClusterRun {
  peers: PeerRun[];
  /** From the first start to the last exit, ms. */
  wallMs: number;
}

/** Hard bound on one local cluster run. */
const clusterTimeoutMs = 30 * 60 * 1000;

/**
 * Start every peer at once (optionally staggered), wait for all, and collect
 * each peer's `--json` timings. Every child is killed if the run fails or times out.
 */
export async function runLocalCluster(opts: {
  config: string;
  inputs: string[];
  outputs: string[];
  extraArgs?: readonly string[];
  staggerMs?: number;
  command?: string[];
  /** Echo each peer's log lines, prefixed with its id. */
  echo?: boolean;
  /** Wrap each peer's command, e.g. ["/usr/bin/time", "-v"]. */
  wrapper?: string[];
}): Promise<ClusterRun> {
  const command = opts.command ?? selfCommand();
  const children: Subprocess[] = [];
  const start = performance.now();
  let timer: Timer | undefined;
  try {
    const runs = opts.inputs.map(async (input, id): Promise<PeerRun> => {
      if (opts.staggerMs) await Bun.sleep(opts.staggerMs * id);
      const t0 = performance.now();
      const child = Bun.spawn(
        [
          ...(opts.wrapper ?? []),
          ...command,
          String(id),
          input,
          opts.outputs[id],
          opts.config,
          "--json",
          ...(opts.extraArgs ?? []),
        ],
        { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } },
      );
      children.push(child);
      const [stdout, stderr] = await Promise.all([
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
      ]);
      const exitCode = await child.exited;
      const elapsedMs = performance.now() - t0;
      let timings: PeerRun["timings"] = null;
      const lines: string[] = [];
      for (const line of `${stdout}${stderr}`.split("\n")) {
        if (line.startsWith("{") && line.includes('"totalMs"')) timings = JSON.parse(line);
        else if (line.trim() !== "") lines.push(line);
      }
      // The peers' log lines are log lines here too: stderr, like every log.
      if (opts.echo) for (const line of lines) log.info(`[peer ${id}] ${line}`);
      return { id, exitCode, elapsedMs, timings, output: lines.join("\n") };
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NetsortError(`local cluster still running after ${clusterTimeoutMs} ms`)),
        clusterTimeoutMs,
      );
    });
    const peers = await Promise.race([Promise.all(runs), timeout]);
    return { peers, wallMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  }
}
