/**
 * How a peer's run ends when something went wrong: the one failure path, and
 * making sure every other peer learns why within seconds.
 */
import { Mesh } from "../exchange/mesh.ts";
import { abortDialMs, abortLingerMs, earlyAbortLingerMs } from "../limits.ts";
import { log } from "../log.ts";
import type { SortOptions } from "../types.ts";
import type { Run } from "./run.ts";

/**
 * After a failure, make sure peers that were not connected learn why: a peer
 * that listens answers their dials for at most `lingerMs`; one that could not
 * listen dials them instead. Then close, flushing the ABORTs already queued.
 */
async function tellAndClose(mesh: Mesh, options: SortOptions, lingerMs: number): Promise<void> {
  await mesh.linger(Math.min(options.connectTimeoutMs, lingerMs));
  await mesh.tellByDialing(Math.min(options.connectTimeoutMs, abortDialMs));
  await mesh.close();
}

/**
 * The input, output or memory was unusable before any data moved: still
 * listen, bounded, so every other peer's dial is answered with our reason and
 * they stop now, naming us, instead of at their connect timeout.
 */
export async function abortEarly(options: SortOptions, error: unknown): Promise<never> {
  const mesh = new Mesh(options, { onRecords: () => {} }, 0);
  let listening = true;
  try {
    mesh.listen();
  } catch {
    listening = false; // could not listen either: the original error is the one to report
  }
  mesh.fail(error);
  await tellAndClose(mesh, options, listening ? earlyAbortLingerMs : 0);
  throw error;
}

/**
 * The one failure path of a started run. Our output goes away unless we already
 * CONFIRMED it: from then on other peers may exit 0 counting on it, so it must
 * stay. Spilled runs are freed.
 */
export async function fail(run: Run, error: unknown): Promise<never> {
  const { mesh, writer, options } = run;
  mesh.fail(error);
  if (mesh.confirmedSent) {
    log.warn(`output ${options.outputFile} stays: it was confirmed to the other peers before the failure`);
  } else {
    writer.removeCommitted();
    writer.discard();
  }
  run.store?.close();
  await tellAndClose(mesh, options, mesh.connectedAtMs > 0 ? 0 : abortLingerMs);
  throw mesh.error ?? error;
}
