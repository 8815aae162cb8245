/**
 * The peer flags that `sort` takes and that `demo` and `bench` pass on to every
 * peer they start: one definition, so the three commands cannot drift apart.
 */
import { maxRounds } from "../limits.ts";
import { maxSizeBytes } from "./args.ts";

/**
 * The parser only refuses sizes no peer could use; the real minimum depends on
 * the cluster (send buffers per peer) and is checked by the run, which says the
 * number (src/memory/budget.ts checkMemoryBudget, exit 2).
 */
const minMemoryBytes = 1024 ** 2;

export const peerFlags = {
  partition: {
    type: "string",
    valueHint: "mode",
    description: `How keys map to peers: bits = equal key ranges, sample = ranges from a sample of the inputs (balanced for any keys); every peer needs the same`,
    choices: ["bits", "sample"],
    default: "bits",
  },
  memory: {
    type: "string",
    valueHint: "size",
    description: `Memory budget for records and buffers, binary units (512mb, 2gb); default: the memory available (cgroup limits honoured), shared by this host's peers; larger shares spill to --temp-dir`,
    parse: { kind: "size", min: minMemoryBytes, max: maxSizeBytes },
  },
  rounds: {
    type: "string",
    valueHint: "n",
    description:
      "Key-range rounds: read the input n times, each pass sending one slice of every peer's range, so outputs are sorted and written while later slices arrive (default: from the input size and memory)",
    parse: { kind: "int", min: 1, max: maxRounds },
  },
  "temp-dir": {
    type: "string",
    valueHint: "dir",
    description:
      "Directory for spilled runs, unnamed files removed by the kernel on any exit (default: the output's directory)",
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
  rounds: number | undefined;
  "temp-dir": string | undefined;
  "secret-file": string | undefined;
}

/** The `sort` arguments that hand these options on to a peer (only those given). */
export function peerArgv(a: PeerFlagValues): string[] {
  const argv: string[] = [];
  if (a.partition !== peerFlags.partition.default) argv.push("--partition", a.partition);
  if (a.memory !== undefined) argv.push("--memory", String(a.memory));
  if (a.rounds !== undefined) argv.push("--rounds", String(a.rounds));
  if (a["temp-dir"] !== undefined) argv.push("--temp-dir", a["temp-dir"]);
  if (a["secret-file"] !== undefined) argv.push("--secret-file", a["secret-file"]);
  return argv;
}
