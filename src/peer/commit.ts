/**
 * The last phase of a peer's run: the commit rounds (docs/protocol.md, "Commit").
 *   READY      our output is durable under its temporary name
 *   COMMITTED  after every READY: linked into place under its final name
 *   CONFIRMED  after every COMMITTED: still ours and in place (no peer wrote over it)
 * Exit 0 only after every CONFIRMED: then every output is in place, for good.
 */
import { NetsortError } from "../errors.ts";
import type { Mesh } from "../exchange/mesh.ts";
import { log } from "../log.ts";
import { decodePart, globalVerdict, type PeerPart, type PeerValidation } from "../validate/validation.ts";
import { type Run, span, timedValidation } from "./run.ts";

/**
 * Every peer combines the same N summaries, so every peer reaches the same
 * verdict; peer 0 prints it. A wrong verdict fails the sort before any commit.
 */
function checkVerdict(mesh: Mesh, serverId: number, own: PeerValidation): void {
  const parts: PeerPart[] = mesh.in.map((stream, id) => {
    if (id === serverId) return own.part();
    const payload = stream?.validation ?? null;
    if (payload === null) {
      throw new NetsortError(`--validate: peer ${id} sent no summary (start every peer with --validate)`);
    }
    return decodePart(payload);
  });
  const verdict = globalVerdict(parts);
  if (serverId === 0) for (const line of verdict.lines) log.info(`validate: ${line}`);
  if (!verdict.ok) throw new NetsortError(`validation failed: ${verdict.problem}`);
  if (serverId !== 0) log.info(`validate: ${verdict.lines[verdict.lines.length - 1]}`);
}

export async function commit(run: Run): Promise<void> {
  const { mesh, writer, validation, options } = run;
  const fromMs = performance.now();
  mesh.sendReady(validation === null ? null : validation.encode());
  await mesh.whenAllReady();
  if (validation !== null) timedValidation(run, () => checkVerdict(mesh, options.serverId, validation));
  await writer.commit();
  mesh.sendCommitted();
  await mesh.whenAllCommitted();
  // Every peer has linked its output by now: a peer given our path (NFS, another host) shows here.
  if (!writer.isInPlace()) {
    throw new NetsortError(
      `output ${options.outputFile}: another process replaced it during the commit (two peers given the same output file?)`,
    );
  }
  mesh.sendConfirmed();
  await mesh.whenAllConfirmed();
  run.t.commitMs = span(run, "commit", fromMs);
}
