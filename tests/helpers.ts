/**
 * Small helpers shared by the tests. Kept independent of src/ on purpose: test
 * data and process handling must not come from the code under test.
 */
import { join } from "node:path";

/** mulberry32: a small seeded PRNG in [0, 1); a failure reproduces from its seed. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The parts, one after another, in one new array. */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const MAIN_TS = join(import.meta.dir, "../src/cli/main.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `bun src/cli/main.ts <args>` to completion; the child is killed if the test gives up. */
export async function runNetsort(args: string[], env?: Record<string, string>): Promise<CliResult> {
  const proc = Bun.spawn([process.execPath, MAIN_TS, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: env === undefined ? undefined : { ...process.env, ...env },
  });
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    proc.kill("SIGKILL");
  }
}
