/**
 * `netsort gen <file> <size> [--seed N] [--kind uniform|skew|dups]`, and the
 * course gensort's form `netsort gen [-randseed N] <file> <size>`.
 */
import { defineCommand, parseArgs } from "citty";
import { UsageError } from "../errors.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import {
  defaultGenSeed,
  GEN_KINDS,
  type GenKind,
  generate,
  maxGenSeed,
  roundUpToRecords,
} from "../tools/gen.ts";
import { checkArgs, commonArgs, parseIntArg, parseSize } from "./args.ts";

const args = {
  file: { type: "positional", description: "Output file", required: true },
  size: {
    type: "positional",
    description: 'Size: bytes or "10 mb", "1gb" (rounded up to 100 B)',
    required: true,
  },
  seed: { type: "string", description: `Random seed, 0..${maxGenSeed} (default ${defaultGenSeed})` },
  kind: { type: "string", description: `Key distribution: ${GEN_KINDS.join(" | ")} (default uniform)` },
  ...commonArgs,
} as const;

const RANDSEED = "-randseed";

/**
 * Take the course's single-dash `-randseed N` (or `-randseed=N`) out of the
 * arguments: citty would read it as the short flags -r -a -n ... and shift the
 * positionals. Returns the seed text, if any, and the other arguments.
 */
function extractRandseed(rawArgs: string[]): { seedText: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let seedText: string | undefined;
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i];
    if (raw === "--") {
      rest.push(...rawArgs.slice(i));
      break;
    }
    if (raw !== RANDSEED && !raw.startsWith(`${RANDSEED}=`)) {
      rest.push(raw);
      continue;
    }
    if (seedText !== undefined) throw new UsageError("gen: -randseed given twice");
    if (raw === RANDSEED) {
      seedText = rawArgs[i + 1];
      i++;
    } else {
      seedText = raw.slice(RANDSEED.length + 1);
    }
    if (seedText === undefined || seedText === "")
      throw new UsageError("gen: option -randseed needs a value");
  }
  return { seedText, rest };
}

/**
 * What citty sees: positionals not required, because citty checks them against
 * the raw arguments, where `-randseed N` shifts them; checkArgs checks them
 * once -randseed is out of the way.
 */
const cittyArgs = {
  ...args,
  file: { ...args.file, required: false },
  size: { ...args.size, required: false },
} as const;

export default defineCommand({
  meta: {
    name: "gen",
    description:
      "Generate random 100-byte records (deterministic per seed); also: gen [-randseed N] <file> <size>",
  },
  args: cittyArgs,
  async run({ rawArgs }) {
    const { seedText, rest } = extractRandseed(rawArgs);
    checkArgs("gen", rest, args);
    const parsed = parseArgs(rest, args);
    if (seedText !== undefined && parsed.seed !== undefined) {
      throw new UsageError("gen: give the seed once, as --seed or -randseed");
    }
    const seedArg = seedText ?? parsed.seed;
    const seed = seedArg === undefined ? defaultGenSeed : parseIntArg("--seed", seedArg, 0, maxGenSeed);
    const kind = (parsed.kind ?? "uniform") as GenKind;
    if (!GEN_KINDS.includes(kind)) {
      throw new UsageError(`gen: --kind must be one of ${GEN_KINDS.join(", ")}, got "${parsed.kind}"`);
    }
    const file = String(parsed.file);
    const bytes = roundUpToRecords(parseSize("size", String(parsed.size)));
    const result = await generate({ file, bytes, seed, kind });
    log.info(
      `gen: ${file}: ${result.records} records, ${result.bytes} bytes (${formatBytes(result.bytes)}), ` +
        `${kind}, seed ${seed}, ${result.ms.toFixed(0)} ms, ${formatRate(result.bytes, result.ms)}`,
    );
    return 0;
  },
});
