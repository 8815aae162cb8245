/**
 * `netsort check <file...> [--inputs <file...>] [--json]`: exit 0 when the files
 * are sorted (and hold exactly the inputs' records), 1 when not, 2 for bad usage
 * or bad input (missing file, size not a multiple of 100).
 */
import { defineCommand, parseArgs } from "citty";
import { EXIT_OK, EXIT_RUNTIME, UsageError } from "../errors.ts";
import { formatBytes, log } from "../log.ts";
import { RECORD_BYTES } from "../record.ts";
import { type CheckResult, checkFiles } from "../tools/check.ts";
import { checkArgs, commonArgs } from "./args.ts";

const args = {
  // Not required for citty: it would read `--inputs a` as a value plus no file and
  // fail with exit 1 before run(); checkFiles reports a missing file list (exit 2).
  files: {
    type: "positional",
    description: "Files that must be sorted, within and across, in this order",
    required: false,
  },
  inputs: {
    type: "string",
    description: "Input files (several after one flag): outputs must hold exactly their records",
  },
  json: { type: "boolean", description: "Print the result as JSON" },
  ...commonArgs,
} as const;

/** checkArgs allows extra positionals when the definition has `_variadic`. */
const argsForCheck = { ...args, _variadic: { type: "boolean" } } as const;

function isFlag(raw: string): boolean {
  return raw.startsWith("-") && raw.length > 1 && !/^-\d/.test(raw);
}

/**
 * citty gives a string flag one value; `--inputs a b c` takes every argument up
 * to the next flag. Returns the inputs (undefined without the flag) and the rest.
 */
function extractInputs(rawArgs: string[]): { inputs: string[] | undefined; rest: string[] } {
  const rest: string[] = [];
  let inputs: string[] | undefined;
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i];
    if (raw === "--") {
      rest.push(...rawArgs.slice(i));
      break;
    }
    if (raw !== "--inputs" && !raw.startsWith("--inputs=")) {
      rest.push(raw);
      continue;
    }
    if (inputs !== undefined)
      throw new UsageError("check: --inputs given twice (list every input after one --inputs)");
    inputs = raw === "--inputs" ? [] : [raw.slice("--inputs=".length)];
    while (i + 1 < rawArgs.length && !isFlag(rawArgs[i + 1]) && rawArgs[i + 1] !== "--")
      inputs.push(rawArgs[++i]);
    if (inputs.length === 0 || inputs.includes(""))
      throw new UsageError("check: option --inputs needs input files");
  }
  return { inputs, rest };
}

/** The positionals left once --inputs is gone: every other flag is a boolean. */
function positionals(rest: string[]): string[] {
  const dashes = rest.indexOf("--");
  const before = dashes >= 0 ? rest.slice(0, dashes) : rest;
  const after = dashes >= 0 ? rest.slice(dashes + 1) : [];
  return [...before.filter((raw) => !isFlag(raw)), ...after];
}

function verdict(result: CheckResult): string {
  const what = `${result.records} records in ${result.files.length} file${result.files.length === 1 ? "" : "s"}`;
  if (result.valid) {
    return result.inputsMatch === null
      ? `OK: ${what}, sorted`
      : `OK: ${what}, sorted, exactly the records of the inputs`;
  }
  const problems: string[] = [];
  const d = result.firstDisorder;
  if (d !== null) problems.push(`not sorted (${d.file} record ${d.record} is out of order)`);
  if (result.inputsMatch === false) {
    problems.push(
      result.inputRecords === result.records
        ? "records differ from the inputs (same count, different checksum)"
        : `records differ from the inputs (${result.records} records, inputs have ${result.inputRecords})`,
    );
  }
  return `INVALID: ${what}, ${problems.join("; ")}`;
}

function report(result: CheckResult): void {
  const bytes = result.records * RECORD_BYTES;
  log.info(`check: ${result.records} records (${formatBytes(bytes)}) in ${result.files.length} file(s)`);
  if (result.files.length > 1) {
    for (let i = 0; i < result.files.length; i++)
      log.info(`  ${result.files[i]}: ${result.fileRecords[i]} records`);
  }
  log.info(`duplicate keys: ${result.duplicates}`);
  const d = result.firstDisorder;
  if (d !== null) {
    log.info(`first out-of-order record: ${d.file} record ${d.record} (record ${d.overallRecord} overall)`);
  }
  log.info(`checksum of outputs: ${result.checksums.outputs}`);
  if (result.checksums.inputs !== null) {
    log.info(`checksum of inputs:  ${result.checksums.inputs} (${result.inputRecords} records)`);
  }
}

export default defineCommand({
  meta: {
    name: "check",
    description: "Check that files are sorted, in order, and hold exactly the input records",
  },
  args,
  async run({ rawArgs }) {
    const { inputs, rest } = extractInputs(rawArgs);
    checkArgs("check", rest, argsForCheck);
    const json = parseArgs(rest, args).json === true;
    const result = await checkFiles(positionals(rest), inputs);
    if (json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      report(result);
      // The verdict is the answer, so it shows even with --quiet.
      console.log(verdict(result));
    }
    return result.valid ? EXIT_OK : EXIT_RUNTIME;
  },
});
