/**
 * `netsort check <file...> [--inputs <file...>] [--json]`: exit 0 when the files
 * are sorted (and hold exactly the inputs' records), 1 when not, 2 for bad usage
 * or bad input (missing file, size not a multiple of 100).
 */
import { EXIT_OK, EXIT_RUNTIME } from "../errors.ts";
import { formatBytes, log } from "../log.ts";
import { RECORD_BYTES } from "../record.ts";
import { type CheckResult, checkFiles } from "../tools/check.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";

const args = {
  positionals: [
    {
      name: "files",
      description: "Files that must be sorted, within and across, in this order",
      variadic: true,
    },
  ],
  flags: {
    inputs: {
      type: "string",
      valueHint: "file",
      list: true,
      description: "Input files (several after one flag): outputs must hold exactly their records",
    },
    json: { type: "boolean", description: "Print the result as JSON on stdout, no verdict line" },
    ...logFlags,
  },
} as const;

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

export default defineTableCommand({
  name: "check",
  summary: "Check that files are sorted, in order, and hold exactly the input records",
  notes: [
    "Exit 0 when valid, 1 when not, 2 for bad usage or input (missing file, size not a multiple of 100).",
  ],
  args,
  async run(a) {
    const result = await checkFiles(a.files, a.inputs);
    if (a.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      report(result);
      // The verdict is the answer: stdout, even with --quiet.
      console.log(verdict(result));
    }
    return result.valid ? EXIT_OK : EXIT_RUNTIME;
  },
});
