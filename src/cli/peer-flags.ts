/**
 * The peer flags that `sort` takes and that `demo` and `bench` pass on to every
 * peer they start: one definition, so the three commands cannot drift apart.
 */
import { maxSizeBytes } from "./args.ts";

/** A --memory below this could not hold a peer's read and send buffers. */
const minMemoryBytes = 64 * 1024 ** 2;

/**
 * Options parsed, checked and passed into runPeer's SortOptions that the
 * pipeline does not act on yet. Their help says so and `sort` warns when one
 * is set, rather than pretending; drop a name here once the pipeline uses it.
 */
export const notYetInEffect: readonly string[] = ["partition", "memory", "temp-dir"];
const pending = " [accepted, not yet in effect]";

export const peerFlags = {
  partition: {
    type: "string",
    valueHint: "mode",
    description: `How keys map to peers: bits = equal key ranges, sample = ranges from a sample of the inputs; every peer needs the same${pending}`,
    choices: ["bits", "sample"],
    default: "bits",
  },
  memory: {
    type: "string",
    valueHint: "size",
    description: `Memory budget for records and buffers, binary units (512mb, 2gb); default: from the memory available${pending}`,
    parse: { kind: "size", min: minMemoryBytes, max: maxSizeBytes },
  },
  "temp-dir": {
    type: "string",
    valueHint: "dir",
    description: `Directory for spilled runs (default: the output's directory)${pending}`,
  },
  "secret-file": {
    type: "string",
    valueHint: "file",
    description: "File holding a shared secret; peers prove they know it (or set NETSORT_SECRET)",
  },
} as const;

interface PeerFlagValues {
  partition: string;
  memory: number | undefined;
  "temp-dir": string | undefined;
  "secret-file": string | undefined;
}

/** The `sort` arguments that hand these options on to a peer (only those given). */
export function peerArgv(a: PeerFlagValues): string[] {
  const argv: string[] = [];
  if (a.partition !== peerFlags.partition.default) argv.push("--partition", a.partition);
  if (a.memory !== undefined) argv.push("--memory", String(a.memory));
  if (a["temp-dir"] !== undefined) argv.push("--temp-dir", a["temp-dir"]);
  if (a["secret-file"] !== undefined) argv.push("--secret-file", a["secret-file"]);
  return argv;
}
