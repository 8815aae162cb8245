/**
 * Test harness for multi-process mesh runs: free loopback ports, configs, input
 * data made by this file's own generator (independent of `netsort gen`), peers
 * spawned as real processes, and an independent verifier of the outputs.
 * Every spawned child is tracked and killed by `killAll()` (call it in afterEach).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { freeLoopbackPorts } from "../../src/local/cluster.ts";
import { prng } from "../helpers.ts";

export const REPO = resolve(import.meta.dir, "../..");
export const RECORD = 100;
export const KEY = 10;

/** How a test runs netsort: from source (default) or the compiled binary. */
export function netsortCommand(kind: "source" | "binary" = "source"): string[] {
  if (kind === "binary") return [join(REPO, "dist/netsort")];
  return [process.execPath, join(REPO, "src/cli/main.ts")];
}

export function binaryExists(): boolean {
  return existsSync(join(REPO, "dist/netsort"));
}

export function tempDir(prefix = "netsort-mesh-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Ports that were free a moment ago (the same helper `demo` and `bench` use). */
export const freePorts = freeLoopbackPorts;

/** Write a config for `ports.length` peers on 127.0.0.1, alternating number and quoted-string ports. */
export function writeConfig(dir: string, ports: number[], name = "cluster.yaml"): string {
  const lines = ["servers:"];
  ports.forEach((port, id) => {
    lines.push(
      `  - serverId: ${id}`,
      "    host: 127.0.0.1",
      `    port: ${id % 2 === 0 ? port : `"${port}"`}`,
    );
  });
  const path = join(dir, name);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

export type DataKind = "uniform" | "skew" | "dups" | "one-owner" | "empty";

/** `records` records of the given kind. */
export function makeRecords(records: number, kind: DataKind, seed: number): Uint8Array {
  const rand = prng(seed);
  const out = new Uint8Array(kind === "empty" ? 0 : records * RECORD);
  for (let i = 0; i < out.length; i++) out[i] = (rand() * 256) | 0;
  const dupKeys = Array.from({ length: 17 }, () => Array.from({ length: KEY }, () => (rand() * 256) | 0));
  for (let r = 0; r < out.length / RECORD; r++) {
    const o = r * RECORD;
    if (kind === "skew" && rand() < 0.9) out.set([0x46, 0x12, 0x34, 0x56, 0x78, 0x9a], o);
    if (kind === "dups") out.set(dupKeys[(rand() * dupKeys.length) | 0], o);
    if (kind === "one-owner") out[o] = 0; // top bit 0: peer 0 owns every key for any N <= 128
  }
  return out;
}

export function writeInputs(dir: string, perPeer: Uint8Array[]): string[] {
  return perPeer.map((data, id) => {
    const path = join(dir, `input-${id}.dat`);
    writeFileSync(path, data);
    return path;
  });
}

export function outputPaths(dir: string, peers: number): string[] {
  return Array.from({ length: peers }, (_, id) => join(dir, `output-${id}.dat`));
}

/**
 * The warning and error lines of a peer's stderr. Every log line goes to stderr
 * (src/log.ts), so a clean run is one with none of these, not an empty stderr.
 */
export function problemLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => /^(error|warning): /.test(line));
}

export interface PeerResult {
  id: number;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

const children = new Set<Subprocess>();

/** Kill every child any test started. Call in afterEach. */
export function killAll(): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
}

export interface RunOptions {
  command?: string[];
  /** Per-peer start delay in ms. */
  delaysMs?: number[];
  extraArgs?: string[];
  /** Kill everything still running after this long. */
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Spawn one peer per config entry and wait for all of them (bounded). */
export async function runPeers(
  config: string,
  inputs: string[],
  outputs: string[],
  o: RunOptions = {},
): Promise<PeerResult[]> {
  const command = o.command ?? netsortCommand();
  const timeoutMs = o.timeoutMs ?? 30_000;
  const started = performance.now();
  const runs = inputs.map(async (input, id) => {
    const delay = o.delaysMs?.[id] ?? 0;
    if (delay > 0) await Bun.sleep(delay);
    const t0 = performance.now();
    const child = Bun.spawn([...command, String(id), input, outputs[id], config, ...(o.extraArgs ?? [])], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, NO_COLOR: "1", ...o.env },
    });
    children.add(child);
    const [stdout, stderr] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    await child.exited;
    children.delete(child);
    return {
      id,
      exitCode: child.exitCode,
      signal: child.signalCode === null ? null : String(child.signalCode),
      stdout,
      stderr,
      elapsedMs: performance.now() - t0,
    } satisfies PeerResult;
  });
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      killAll();
      reject(new Error(`peers still running after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([Promise.all(runs), timeout]);
  } finally {
    clearTimeout(timer);
    if (performance.now() - started > timeoutMs) killAll();
  }
}

/** floor(p * N / 2^48) with BigInt: independent of src/record.ts. */
export function expectedOwner(record: Uint8Array, offset: number, peers: number): number {
  let p = 0n;
  for (let i = 0; i < 6; i++) p = (p << 8n) | BigInt(record[offset + i]);
  return Number((p * BigInt(peers)) >> 48n);
}

function compareBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): number {
  for (let i = 0; i < n; i++) {
    const d = a[ao + i] - b[bo + i];
    if (d !== 0) return d;
  }
  return 0;
}

/** Records as hex strings, sorted: a multiset fingerprint for small test data. */
function sortedHex(buffers: Uint8Array[]): string[] {
  const all: string[] = [];
  for (const b of buffers)
    for (let o = 0; o < b.length; o += RECORD)
      all.push(Buffer.from(b.subarray(o, o + RECORD)).toString("hex"));
  return all.sort();
}

/**
 * Independent verification: every output sorted by key (equal keys by whole
 * record), every record owned by its file's peer, and the outputs together hold
 * exactly the input records. Returns a list of problems (empty = valid).
 */
export function verifyOutputs(inputs: string[], outputs: string[]): string[] {
  const problems: string[] = [];
  const peers = outputs.length;
  const outData: Uint8Array[] = [];
  for (const [id, path] of outputs.entries()) {
    if (!existsSync(path)) {
      problems.push(`output ${id} missing`);
      continue;
    }
    const data = new Uint8Array(readFileSync(path));
    outData.push(data);
    if (data.length % RECORD !== 0) problems.push(`output ${id}: size ${data.length} not a multiple of 100`);
    for (let o = 0; o + RECORD <= data.length; o += RECORD) {
      const owner = expectedOwner(data, o, peers);
      if (owner !== id) {
        problems.push(`output ${id}: record ${o / RECORD} belongs to peer ${owner}`);
        break;
      }
      if (o > 0 && compareBytes(data, o - RECORD, data, o, RECORD) > 0) {
        problems.push(`output ${id}: record ${o / RECORD} out of order`);
        break;
      }
    }
  }
  if (problems.length > 0) return problems;
  const inHex = sortedHex(inputs.map((p) => new Uint8Array(readFileSync(p))));
  const outHex = sortedHex(outData);
  if (inHex.length !== outHex.length)
    problems.push(`outputs hold ${outHex.length} records, inputs ${inHex.length}`);
  else if (inHex.some((h, i) => h !== outHex[i]))
    problems.push("outputs do not hold exactly the input records");
  return problems;
}

/** Temp files the peers may have left beside the outputs. */
export function leftoverTempFiles(dir: string): string[] {
  return Array.from(new Bun.Glob(".*.netsort-*.tmp").scanSync({ cwd: dir, dot: true }));
}
