/**
 * Helpers for fault-scenario tests (tests/mesh/{faults,strangers,auth,disk,netns}.test.ts),
 * on top of harness.ts. What harness.ts lacks for fault tests: a peer whose log
 * lines can be awaited while it runs (to kill it in a given phase), exit
 * timestamps (to measure how fast the others stop), fast random inputs of tens
 * of MB, and the "one line, names the cause" checks.
 * Every spawned child is tracked; `killPeers()` (call it in afterEach) ends them,
 * and `dirsPerTest()` sets that up with per-test temp dirs in one line.
 */
import { afterEach } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { killAll, leftoverTempFiles, netsortCommand, removeDir, tempDir } from "./harness.ts";

/**
 * The log line a peer prints once every stream to it has ended (src/job.ts; it
 * read "exchange done at N ms" before, "exchange: waited N ms after reading" now).
 * Tests that kill or cut a peer in a phase wait for it or check its absence.
 */
export const exchangeDoneLine = /exchange done|exchange: waited \d+ ms/;

/** How a peer process ended, with the moment it did (performance.now() of this test process). */
export interface PeerExit {
  id: number;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** performance.now() when the process was seen to exit. */
  exitAtMs: number;
  /** From spawn to exit. */
  elapsedMs: number;
}

interface Waiter {
  pattern: RegExp;
  resolve: (atMs: number) => void;
}

/** A running peer: its output so far, and a way to wait for a log line. */
export class Peer {
  stdout = "";
  stderr = "";
  readonly startedAtMs = performance.now();
  readonly exited: Promise<PeerExit>;
  private readonly waiters = new Set<Waiter>();
  /** Every output chunk with the moment it arrived, for `firstSeenMs`. */
  private readonly chunks: Array<{ atMs: number; text: string }> = [];
  private exitInfo: PeerExit | null = null;

  constructor(
    readonly id: number,
    readonly child: Subprocess<"ignore", "pipe", "pipe">,
  ) {
    const pumped = Promise.all([
      this.pump(child.stdout, (s) => (this.stdout += s)),
      this.pump(child.stderr, (s) => (this.stderr += s)),
    ]);
    this.exited = child.exited.then(async () => {
      const exitAtMs = performance.now();
      await pumped;
      this.exitInfo = {
        id,
        exitCode: child.exitCode,
        signal: child.signalCode === null ? null : String(child.signalCode),
        stdout: this.stdout,
        stderr: this.stderr,
        exitAtMs,
        elapsedMs: exitAtMs - this.startedAtMs,
      };
      for (const w of this.waiters) w.resolve(-1);
      this.waiters.clear();
      return this.exitInfo;
    });
  }

  /** The exit, once known (null while running). */
  get exit(): PeerExit | null {
    return this.exitInfo;
  }

  /**
   * Resolves with performance.now() when `pattern` first appears in stdout or
   * stderr; rejects when the peer exits without it or after `timeoutMs`.
   */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<number> {
    if (pattern.test(this.stdout) || pattern.test(this.stderr)) return performance.now();
    if (this.exitInfo !== null) throw this.notSeen(pattern, "it exited");
    let timer: Timer | undefined;
    const waiter: Waiter = { pattern, resolve: () => {} };
    try {
      const seen = Promise.withResolvers<number>();
      waiter.resolve = seen.resolve;
      this.waiters.add(waiter);
      timer = setTimeout(() => seen.reject(this.notSeen(pattern, `${timeoutMs} ms passed`)), timeoutMs);
      const atMs = await seen.promise;
      if (atMs < 0) throw this.notSeen(pattern, "it exited");
      return atMs;
    } finally {
      clearTimeout(timer);
      this.waiters.delete(waiter);
    }
  }

  /**
   * When `pattern` first appeared in the output (performance.now()), or null.
   * Matched per chunk: fine for patterns within one log line.
   */
  firstSeenMs(pattern: RegExp): number | null {
    for (const c of this.chunks) if (pattern.test(c.text)) return c.atMs;
    return null;
  }

  private notSeen(pattern: RegExp, why: string): Error {
    return new Error(
      `peer ${this.id}: ${pattern} not seen before ${why}\n--- stdout\n${this.stdout}--- stderr\n${this.stderr}`,
    );
  }

  private async pump(stream: ReadableStream<Uint8Array>, append: (s: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      append(text);
      this.chunks.push({ atMs: performance.now(), text });
      for (const w of this.waiters) {
        if (w.pattern.test(this.stdout) || w.pattern.test(this.stderr)) w.resolve(performance.now());
      }
    }
  }
}

const running = new Set<Peer>();

/** SIGKILL every peer a test started and that is still running. Call in afterEach. */
export function killPeers(): void {
  for (const p of running) {
    if (p.exit === null) {
      try {
        p.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  running.clear();
}

/**
 * Call once at the top of a test file: returns newDir(), a fresh temp dir named
 * `prefix`..., and after each test kills every peer (spawnPeer's and
 * runPeers') and removes the dirs that test made.
 */
export function dirsPerTest(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    killPeers();
    killAll();
    for (const d of dirs.splice(0)) removeDir(d);
  });
  return () => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
}

export interface SpawnOptions {
  id: number;
  input: string;
  output: string;
  config: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  /** Put before the command, e.g. ["ip", "netns", "exec", "nsA"] or a `bash -c` wrapper. */
  prefix?: string[];
}

/** Start one peer: `netsort <id> <in> <out> <config> [args]`. */
export function spawnPeer(o: SpawnOptions): Peer {
  const argv = [...(o.prefix ?? []), ...netsortCommand(), String(o.id), o.input, o.output, o.config];
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", ...o.env };
  const child = Bun.spawn([...argv, ...(o.args ?? [])], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env,
  });
  const peer = new Peer(o.id, child);
  running.add(peer);
  return peer;
}

/** Wait for every peer to exit; SIGKILL them all and reject after `timeoutMs` (nothing may hang). */
export async function allExited(peers: Peer[], timeoutMs: number): Promise<PeerExit[]> {
  let timer: Timer | undefined;
  const timeout = Promise.withResolvers<never>();
  timer = setTimeout(() => {
    const stuck = peers.filter((p) => p.exit === null).map((p) => p.id);
    for (const p of peers) if (p.exit === null) p.child.kill("SIGKILL");
    timeout.reject(new Error(`peers ${stuck.join(", ")} still running after ${timeoutMs} ms (killed)`));
  }, timeoutMs);
  try {
    return await Promise.race([Promise.all(peers.map((p) => p.exited)), timeout.promise]);
  } finally {
    clearTimeout(timer);
  }
}

/** A file of `bytes` random bytes (fast: for inputs whose sorted result is never checked). */
export function randomFile(path: string, bytes: number): string {
  const pieceBytes = 8 * 1024 * 1024;
  const fd = openSync(path, "w");
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(pieceBytes, bytes - done);
      writeSync(fd, randomBytes(n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** The non-empty lines of a text. */
export function textLines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

/** The tag of an error line (src/log.ts). */
const errorTag = /^error: /;

/**
 * The one-line error message of a failed peer: exactly one error line on stderr
 * (warnings such as dropped strangers may precede it) and no stack trace.
 * Returned without its "error: " tag.
 */
export function errorLine(e: PeerExit): string {
  const lines = textLines(e.stderr).filter((l) => errorTag.test(l));
  if (lines.length !== 1 || /^\s*at .*:\d+:\d+\)?$/m.test(e.stderr)) {
    throw new Error(`peer ${e.id}: expected one error line on stderr, got:\n${e.stderr}`);
  }
  return lines[0].replace(errorTag, "");
}

/** Files a failed run must not leave: outputs (given) and `.<name>.netsort-<pid>.tmp` beside them. */
export function leftovers(dir: string, outputs: string[]): string[] {
  const names = new Set(readdirSync(dir));
  const found = outputs.filter((o) => names.has(o.slice(dir.length + 1)));
  return [...found, ...leftoverTempFiles(dir).map((f) => join(dir, f))];
}

/** True when nobody listens on 127.0.0.1:port (we can bind it ourselves). */
export function portIsFree(port: number): boolean {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

/** Print why a scenario cannot run here, so a skip is visible in the test log. */
export function skipReason(scenario: string, why: string): void {
  console.warn(`[skipped] ${scenario}: ${why}`);
}

/** Run a short command; resolves to its exit code and output (bounded); 127 when it is not installed, as in a shell. */
export async function sh(argv: string[], timeoutMs = 10_000): Promise<{ code: number; out: string }> {
  let child: Subprocess<"ignore", "pipe", "pipe">;
  try {
    child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (error) {
    return { code: 127, out: `${argv[0]}: ${error instanceof Error ? error.message : String(error)}` };
  }
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [out, err] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const code = await child.exited;
  clearTimeout(timer);
  return { code, out: out + err };
}

/** Drops the capabilities that let root ignore file modes, for the commands run after it. */
const withoutModeBypass = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"];

/**
 * How to run a peer for which a chmod 000 file is unreadable: as it is when not
 * root; as root, under `setpriv` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
 * (uid 0 still owns its temp dirs, so only the file modes change). Probed once
 * with `cat`, so a test can be skipped, with the reason, before it runs.
 */
export async function modesApplyPrefix(): Promise<{ prefix: string[]; problem: null } | { problem: string }> {
  const dir = mkdtempSync(join(tmpdir(), "netsort-modes-probe-"));
  try {
    const file = join(dir, "unreadable");
    writeFileSync(file, "x");
    chmodSync(file, 0o000);
    const prefix = process.getuid?.() === 0 ? withoutModeBypass : [];
    const ok = await sh([...prefix, "true"]);
    if (ok.code !== 0) return { problem: `${[...prefix, "true"].join(" ")} fails: ${ok.out.trim()}` };
    const denied = await sh([...prefix, "cat", file]);
    if (denied.code === 0 || !/Permission denied/.test(denied.out)) {
      return { problem: `a chmod 000 file stays readable under ${prefix.join(" ") || "this user"}` };
    }
    return { prefix, problem: null };
  } catch (error) {
    return { problem: `cannot probe file modes: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
