/**
 * `netsort valsort [-i] [-q] [-o SUMMARY_FILE] [-s] FILE`: a drop-in for Sort
 * Benchmark valsort 1.5. Same messages on stderr, same exit codes (0 in order,
 * 1 unordered or an error), same 280-byte -o summaries, -s over concatenated
 * summaries.
 *
 * Arguments are parsed here the way valsort.c does, not by the argument tables:
 * options come before the one operand. Where valsort is lax we are strict and
 * exit 2 with a usage message (valsort prints its usage text and exits 1):
 * valsort reads only the letter after '-' (`-qx` means -q), and opens the -o file
 * while still parsing, so a later usage error leaves it created; we open it only
 * after the arguments are known to be good (still before reading the input, so
 * a failed validation leaves it empty, as valsort does).
 * Like valsort.c, -q silences the verdict and "First unordered" line but not the
 * error messages (missing file, empty input, partial record).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { UsageError } from "../errors.ts";
import {
  encodeSummary,
  firstUnorderedText,
  isOrdered,
  perrorText,
  type Summary,
  summarizeFile,
  summarizeSummaryFile,
  ValsortError,
  verdictText,
} from "../tools/valsort.ts";
import { defineRawCommand } from "./command.ts";

const USAGE = "usage: valsort [-i] [-q] [-o SUMMARY_FILE] [-s] FILE_NAME";

/**
 * For --help. Parsing is done by parseValsortArgs, which also takes these long
 * names so the help text is true.
 */
const args = {
  positionals: [
    { name: "FILE_NAME", description: "Sorted records to validate, or with -s concatenated summaries" },
  ],
  flags: {
    "ignore-case": {
      type: "boolean",
      short: "i",
      description: "Compare keys case-insensitively (strcasecmp)",
    },
    quiet: { type: "boolean", short: "q", description: "No diagnostic text; the exit status still tells" },
    output: {
      type: "string",
      short: "o",
      valueHint: "SUMMARY_FILE",
      description: "Write the 280-byte summary of the validated records",
    },
    summaries: {
      type: "boolean",
      short: "s",
      description: "FILE_NAME holds partition summaries, in key order",
    },
  },
} as const;

export interface ValsortArgs {
  caseInsensitive: boolean;
  quiet: boolean;
  summaries: boolean;
  summaryFile: string | null;
  input: string;
}

function usage(problem: string): UsageError {
  return new UsageError(`valsort: ${problem}\n${USAGE}`);
}

/** valsort.c's argument rules, strictly (see the file comment). */
export function parseValsortArgs(rawArgs: string[]): ValsortArgs {
  const parsed: Omit<ValsortArgs, "input"> = {
    caseInsensitive: false,
    quiet: false,
    summaries: false,
    summaryFile: null,
  };
  let i = 0;
  for (; i < rawArgs.length && rawArgs[i].startsWith("-"); i++) {
    const arg = rawArgs[i];
    if (arg === "-i" || arg === "--ignore-case") parsed.caseInsensitive = true;
    else if (arg === "-q" || arg === "--quiet") parsed.quiet = true;
    else if (arg === "-s" || arg === "--summaries") parsed.summaries = true;
    else if (arg === "-o" || arg === "--output") {
      // valsort: "-o" needs a file name not starting with '-' and an operand after it.
      const file = rawArgs[i + 1];
      if (file === undefined || file === "" || file.startsWith("-") || i + 2 >= rawArgs.length) {
        throw usage("-o needs SUMMARY_FILE followed by FILE_NAME");
      }
      parsed.summaryFile = file;
      i++;
    } else throw usage(`unknown option "${arg}"`);
  }
  const operands = rawArgs.slice(i);
  if (operands.length !== 1) throw usage(`expected one FILE_NAME after the options, got ${operands.length}`);
  if (operands[0] === "") throw usage("FILE_NAME is empty");
  return { ...parsed, input: operands[0] };
}

function say(text: string): void {
  writeSync(2, text);
}

/** Run valsort; returns the exit code. All text goes to stderr, as valsort's does. */
function runValsort(options: ValsortArgs): number {
  let summaryFd: number | null = null;
  if (options.summaryFile !== null) {
    try {
      summaryFd = openSync(options.summaryFile, "w");
    } catch (error) {
      say(`${perrorText(options.summaryFile, error)}\n`);
      return 1;
    }
  }
  try {
    const onFirstUnordered = options.quiet ? undefined : (index: bigint) => say(firstUnorderedText(index));
    const validate = { caseInsensitive: options.caseInsensitive, onFirstUnordered };
    let summary: Summary;
    try {
      summary = options.summaries
        ? summarizeSummaryFile(options.input, validate)
        : summarizeFile(options.input, validate);
    } catch (error) {
      if (!(error instanceof ValsortError)) throw error;
      say(`${error.message}\n`);
      return 1;
    }
    if (summaryFd !== null) {
      const bytes = encodeSummary(summary);
      for (let done = 0; done < bytes.length; )
        done += writeSync(summaryFd, bytes, done, bytes.length - done);
    }
    if (!options.quiet) say(verdictText(summary));
    return isOrdered(summary) ? 0 : 1;
  } finally {
    if (summaryFd !== null) closeSync(summaryFd);
  }
}

export default defineRawCommand({
  name: "valsort",
  summary: "Sort Benchmark valsort 1.5, same messages and exit codes",
  alsoUsage: [`netsort ${USAGE.slice("usage: ".length)}`],
  notes: ["Options come before the operand, as valsort.c reads them."],
  args,
  parseArgs: parseValsortArgs,
  run: runValsort,
});
