/**
 * The floor of the exchange on this machine: N peer processes that only read
 * their input in readChunkBytes chunks, send (N-1)/N of it to the others over
 * Bun.listen / Bun.connect on loopback in batchBytes pieces, and drop what they
 * receive. No partition, store, sort or write: what a netsort peer cannot spend
 * less than with these sockets (docs/performance.md, "Issue 15, third session").
 * Prints the wall time (first spawn to last exit) and the CPU of all peers per
 * run, then the medians.
 *
 *   bun bench/exchange-floor.ts [--peers N] [--size 256mb] [--runs N] [--dir D]
 *
 * Inputs are random bytes written into --dir (default: a fresh temp dir,
 * removed after). Only 127.0.0.1 is used.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseIntArg, parseSize } from "../src/cli/args.ts";
import { batchBytes, readChunkBytes } from "../src/limits.ts";
import { median } from "../src/local/bench.ts";

/** A peer dials until every other one listens, for at most this long. */
const connectTimeoutMs = 10_000;
const connectRetryMs = 20;
/** One run of all peers, at most this long. */
const runTimeoutMs = 120_000;
/** Inputs are written in pieces of this many bytes. */
const writePieceBytes = 16 * 1024 * 1024;

const { values } = parseArgs({
  options: {
    peers: { type: "string", default: "4" },
    size: { type: "string", default: "256mb" },
    runs: { type: "string", default: "3" },
    dir: { type: "string" },
    // Internal: run as peer <id> of the listed ports, reading <input>.
    peer: { type: "string" },
    ports: { type: "string" },
    input: { type: "string" },
  },
});

if (values.peer !== undefined) await runPeer();
else await runBench();

async function runPeer(): Promise<void> {
  const id = Number(values.peer);
  const ports = String(values.ports).split(",").map(Number);
  const n = ports.length;
  let closedIn = 0;
  let allIn!: () => void;
  const allInDone = new Promise<void>((resolve) => {
    allIn = resolve;
  });
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: ports[id],
    socket: {
      data() {},
      close() {
        if (++closedIn === n - 1) allIn();
      },
    },
  });
  type Out = { socket: Bun.Socket<{ wake: (() => void) | null }> };
  const outs: Array<Out | null> = [];
  for (let k = 0; k < n; k++) {
    if (k === id) {
      outs.push(null);
      continue;
    }
    const deadlineMs = performance.now() + connectTimeoutMs;
    for (;;) {
      try {
        const socket = await Bun.connect<{ wake: (() => void) | null }>({
          hostname: "127.0.0.1",
          port: ports[k],
          data: { wake: null },
          socket: {
            data() {},
            drain(s) {
              s.data.wake?.();
            },
          },
        });
        outs.push({ socket });
        break;
      } catch (error) {
        if (performance.now() > deadlineMs) throw new Error(`peer ${id}: peer ${k} not up: ${error}`);
        await Bun.sleep(connectRetryMs);
      }
    }
  }
  const send = async (out: Out, piece: Uint8Array) => {
    for (let offset = 0; offset < piece.length; ) {
      offset += Math.max(0, out.socket.write(piece, offset, piece.length - offset));
      if (offset < piece.length)
        await new Promise<void>((resolve) => {
          out.socket.data.wake = resolve;
        });
    }
  };
  const fd = openSync(String(values.input), "r");
  const chunk = new Uint8Array(readChunkBytes);
  try {
    for (let piece = 0; ; ) {
      const got = readSync(fd, chunk, 0, chunk.length, null);
      if (got <= 0) break;
      // Every n-th piece is ours; the others go round the peers. A copy, as a
      // peer's batch is: the chunk buffer is read into again.
      for (let offset = 0; offset < got; offset += batchBytes, piece++) {
        const out = outs[piece % n];
        if (out !== null) await send(out, chunk.slice(offset, Math.min(got, offset + batchBytes)));
      }
    }
  } finally {
    closeSync(fd);
  }
  for (const out of outs) out?.socket.end();
  await allInDone;
  listener.stop(true);
}

async function runBench(): Promise<void> {
  const peers = parseIntArg("--peers", values.peers, 2, 64);
  const sizeBytes = parseSize("--size", values.size);
  const runs = parseIntArg("--runs", values.runs, 1, 100);
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), "netsort-floor-"));
  const inputs = Array.from({ length: peers }, (_, id) => join(dir, `floor-in-${id}.bin`));
  try {
    for (const input of inputs) writeRandom(input, sizeBytes);
    const walls: number[] = [];
    const cpus: number[] = [];
    for (let run = 1; run <= runs; run++) {
      const ports = freePorts(peers);
      const startMs = performance.now();
      const children = inputs.map((input, id) =>
        Bun.spawn(
          [
            process.execPath,
            import.meta.path,
            "--peer",
            String(id),
            "--ports",
            ports.join(","),
            "--input",
            input,
          ],
          { stdout: "inherit", stderr: "inherit" },
        ),
      );
      const timer = setTimeout(() => {
        for (const c of children) c.kill("SIGKILL");
      }, runTimeoutMs);
      try {
        const codes = await Promise.all(children.map((c) => c.exited));
        if (codes.some((c) => c !== 0))
          throw new Error(`a floor peer failed: exit codes ${codes.join(", ")}`);
      } finally {
        clearTimeout(timer);
        for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
      }
      const wallMs = performance.now() - startMs;
      let userMs = 0;
      let systemMs = 0;
      for (const c of children) {
        const cpu = c.resourceUsage()?.cpuTime;
        userMs += Number(cpu?.user ?? 0) / 1000;
        systemMs += Number(cpu?.system ?? 0) / 1000;
      }
      walls.push(wallMs);
      cpus.push(userMs + systemMs);
      console.log(
        `run ${run}: wall ${Math.round(wallMs)} ms, cpu of all peers ${Math.round(userMs + systemMs)} ms (user ${Math.round(userMs)}, system ${Math.round(systemMs)})`,
      );
    }
    const totalMB = (peers * sizeBytes) / 1e6;
    console.log(
      `floor: ${peers} peers x ${values.size}: median wall ${Math.round(median(walls))} ms (${(totalMB / (median(walls) / 1000)).toFixed(0)} MB/s), median cpu of all peers ${Math.round(median(cpus))} ms`,
    );
  } finally {
    for (const input of inputs) rmSync(input, { force: true });
    if (values.dir === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

function writeRandom(path: string, bytes: number): void {
  const piece = new Uint8Array(Math.min(bytes, writePieceBytes));
  const fd = openSync(path, "w");
  try {
    for (let done = 0; done < bytes; done += piece.length) {
      crypto.getRandomValues(piece.subarray(0, Math.min(65536, piece.length))); // a random head per piece
      writeFileSync(fd, piece.subarray(0, Math.min(piece.length, bytes - done)));
    }
  } finally {
    closeSync(fd);
  }
}

/** Ports the kernel hands out now (bound and released at once: a small race, fine for a bench). */
function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}
