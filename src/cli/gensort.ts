/**
 * `netsort gensort [-a] [-s] [-bN] [-c] NUM_RECORDS OUTPUT_FILE`: a drop-in for
 * Sort Benchmark gensort 1.5, byte-identical output, -c checksum on stderr.
 *
 * Arguments are parsed here the way gensort.c does, not by the argument tables:
 * options come before the operands and the start record is glued (`-b500`).
 * Where gensort is lax we are strict and exit 2 with a usage message:
 *   gensort reads only the letter after '-' (so `-ax` means -a), takes `-b` with
 *   no digits as 0 and `-b12x` as 12, wraps start records above 2^128-1, reads a
 *   non-numeric NUM_RECS as 0, and prints its usage text with exit 1.
 *   gensort also ignores write errors; we report them (exit 1).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { writeChunkBytes } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";
import { RecordChecksum } from "../tools/checksum.ts";
import { GensortGenerator } from "../tools/gensort.ts";
import { MASK_128 } from "../tools/rand128.ts";
import { perrorText } from "../tools/valsort.ts";
import { defineRawCommand } from "./command.ts";

const USAGE = "usage: gensort [-a] [-c] [-bSTARTING_REC_NUM] [-s] NUM_RECS FILE_NAME";
/** gensort skips writing for exactly this output name (still computing -c). */
const DEV_NULL = "/dev/null";
/** Records per write: the output goes out in pieces of writeChunkBytes. */
const batchRecords = Math.floor(writeChunkBytes / RECORD_BYTES);

/**
 * For --help. Parsing is done by parseGensortArgs, which also takes these long
 * names (--ascii, --checksum, --start N, --skew) so the help text is true.
 */
const args = {
  positionals: [
    { name: "NUM_RECS", description: "Number of records to generate" },
    { name: "FILE_NAME", description: `Output file (${DEV_NULL}: write nothing)` },
  ],
  flags: {
    ascii: { type: "boolean", short: "a", description: "ASCII records (PennySort/JouleSort)" },
    checksum: { type: "boolean", short: "c", description: "Print the sum of the records' CRC-32s on stderr" },
    start: {
      type: "string",
      short: "b",
      valueHint: "N",
      description: "First record number, 0 .. 2^128-1 (default 0); short form glued: -b2000",
    },
    skew: { type: "boolean", short: "s", description: "Skewed keys (with -a: skewed ASCII keys)" },
  },
} as const;

export interface GensortArgs {
  ascii: boolean;
  skew: boolean;
  checksum: boolean;
  start: bigint;
  records: number;
  output: string;
}

function usage(problem: string): UsageError {
  return new UsageError(`gensort: ${problem}\n${USAGE}`);
}

/** gensort.c's argument rules, strictly (see the file comment). */
export function parseGensortArgs(rawArgs: string[]): GensortArgs {
  const parsed = { ascii: false, skew: false, checksum: false, start: 0n };
  let i = 0;
  for (; i < rawArgs.length && rawArgs[i].startsWith("-"); i++) {
    const arg = rawArgs[i];
    if (arg === "-a" || arg === "--ascii") parsed.ascii = true;
    else if (arg === "-s" || arg === "--skew") parsed.skew = true;
    else if (arg === "-c" || arg === "--checksum") parsed.checksum = true;
    else if (arg.startsWith("-b") || arg === "--start" || arg.startsWith("--start=")) {
      let digits = arg.startsWith("-b") ? arg.slice(2) : arg.slice("--start=".length);
      if (arg === "--start") digits = rawArgs[++i] ?? "";
      if (!/^\d+$/.test(digits))
        throw usage(`the start record must be decimal digits glued to -b (-b2000), got "${arg}"`);
      const start = BigInt(digits);
      if (start > MASK_128) throw usage(`starting record ${digits} is above 2^128-1`);
      parsed.start = start;
    } else throw usage(`unknown option "${arg}"`);
  }
  const operands = rawArgs.slice(i);
  if (operands.length !== 2)
    throw usage(`expected NUM_RECS and FILE_NAME after the options, got ${operands.length} argument(s)`);
  const [countText, output] = operands;
  if (!/^\d+$/.test(countText)) throw usage(`NUM_RECS must be a decimal number, got "${countText}"`);
  const records = Number(countText);
  if (!Number.isSafeInteger(records))
    throw usage(`NUM_RECS ${countText} is too large (at most ${Number.MAX_SAFE_INTEGER})`);
  if (output === "") throw usage("FILE_NAME is empty");
  return { ...parsed, records, output };
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Run gensort; returns the exit code. Diagnostics go to stderr verbatim. */
function runGensort(options: GensortArgs): number {
  let fd: number | null = null;
  if (options.output !== DEV_NULL) {
    try {
      fd = openSync(options.output, "w");
    } catch (error) {
      writeSync(2, `${perrorText(options.output, error)}\n`);
      return 1;
    }
  }
  const generator = new GensortGenerator({
    ascii: options.ascii,
    skew: options.skew,
    start: options.start,
    batchRecords: Math.max(1, Math.min(batchRecords, options.records)),
  });
  const checksum = options.checksum ? new RecordChecksum() : null;
  try {
    for (let left = options.records; left > 0; ) {
      const count = Math.min(left, generator.batchRecords);
      const records = generator.next(count);
      checksum?.add(records);
      if (fd !== null) writeAll(fd, records);
      left -= count;
    }
  } catch (error) {
    writeSync(2, `${perrorText(options.output, error)}\n`);
    return 1;
  } finally {
    if (fd !== null) closeSync(fd);
  }
  if (checksum !== null) writeSync(2, `${checksum.toHex()}\n`);
  return 0;
}

export default defineRawCommand({
  name: "gensort",
  summary: "Sort Benchmark gensort 1.5, byte-identical output",
  alsoUsage: [`netsort ${USAGE.slice("usage: ".length)}`],
  notes: ["Options come before the operands, as gensort.c reads them."],
  args,
  parseArgs: parseGensortArgs,
  run: runGensort,
});
