/**
 * `netsort gen <file> <size> [--seed N] [--kind uniform|skew|dups]`, and the
 * course gensort's form `netsort gen [-randseed N] <file> <size>`.
 */
import { UsageError } from "../errors.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import { defaultGenSeed, GEN_KINDS, generate, maxGenSeed, roundUpToRecords } from "../tools/gen.ts";
import { logFlags, parseSize } from "./args.ts";
import { defineTableCommand } from "./command.ts";

const args = {
  positionals: [
    { name: "file", description: "Output file (not -: the records are binary, written to a file)" },
    {
      name: "size",
      description: 'Size: bytes or binary units, "10 mb" = 10 MiB, "1gb"; rounded up to 100 B',
    },
  ],
  flags: {
    seed: {
      type: "string",
      valueHint: "n",
      description: `Random seed, 0..${maxGenSeed}`,
      default: String(defaultGenSeed),
      parse: { kind: "int", min: 0, max: maxGenSeed },
      singleDash: "-randseed",
    },
    kind: {
      type: "string",
      valueHint: "kind",
      description: "Key distribution",
      choices: GEN_KINDS,
      default: "uniform",
    },
    ...logFlags,
  },
} as const;

export default defineTableCommand({
  name: "gen",
  summary: "Generate random 100-byte records (deterministic per seed)",
  alsoUsage: ["netsort gen [-randseed <n>] <file> <size>"],
  args,
  async run(a) {
    if (a.file === "-") {
      // Refused rather than creating a file named "-": records are binary and
      // generate() writes atomically (temp file + rename), which a pipe cannot do.
      throw new UsageError("gen: -: records are not written to stdout; give a file name");
    }
    const bytes = roundUpToRecords(parseSize("gen: size", a.size));
    const result = await generate({ file: a.file, bytes, seed: a.seed, kind: a.kind });
    log.info(
      `gen: ${a.file}: ${result.records} records, ${result.bytes} bytes (${formatBytes(result.bytes)}), ` +
        `${a.kind}, seed ${a.seed}, ${result.ms.toFixed(0)} ms, ${formatRate(result.bytes, result.ms)}`,
    );
    return 0;
  },
});
