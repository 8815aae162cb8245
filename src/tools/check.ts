/**
 * `check`: are these files, in this order, one sorted sequence of records (key
 * order, memcmp), and do they hold exactly the input records? Streams every
 * file through one reused buffer, so any size can be checked in little memory,
 * and counts with the same tally as valsort (src/validate/tally.ts).
 */
import fs, { closeSync, openSync } from "node:fs";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { readUnits } from "../io/reader.ts";
import { readChunkBytes } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";
import { RecordTally } from "../validate/tally.ts";
import { RecordChecksum } from "./checksum.ts";

/** Where the order first breaks: record `record` of `file` has a smaller key than the record before it. */
export interface Disorder {
  file: string;
  /** Index of the file in the outputs list. */
  fileIndex: number;
  /** Index of the record within its file. */
  record: number;
  /** Index of the record across all the outputs. */
  overallRecord: number;
}

export interface CheckResult {
  files: string[];
  /** Records in each output file, in order. */
  fileRecords: number[];
  records: number;
  /** A key appearing k times in a row adds k - 1 (across file boundaries too). */
  duplicates: number;
  sorted: boolean;
  firstDisorder: Disorder | null;
  /** Order-independent checksums (RecordChecksum, hex); `inputs` is null without inputs. */
  checksums: { outputs: string; inputs: string | null };
  /** Records in the inputs, or null without inputs. */
  inputRecords: number | null;
  /** Same record count and checksum as the inputs; null without inputs. */
  inputsMatch: boolean | null;
  /** Sorted, and matching the inputs when they were given. */
  valid: boolean;
}

/** Size every file first, so bad input is reported before any long read. */
function statRecordFile(file: string): number {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    throw new UsageError(`check: cannot read ${file}: ${String((error as Error).message).split(", ")[0]}`);
  }
  if (!stat.isFile()) throw new UsageError(`check: ${file} is not a regular file`);
  if (stat.size % RECORD_BYTES !== 0) {
    throw new UsageError(`check: ${file} is ${stat.size} bytes, not a multiple of ${RECORD_BYTES}`);
  }
  return stat.size;
}

/**
 * Call `onChunk` with consecutive pieces of `file`, each a whole number of
 * records, all at buf[0, length). Returns the number of bytes read.
 */
function streamFile(
  file: string,
  expectedBytes: number,
  buf: Uint8Array,
  onChunk: (length: number) => void,
): number {
  const fd = openSync(file, "r");
  let total = 0;
  let partial: number;
  try {
    const chunks = readUnits(fd, buf, RECORD_BYTES);
    for (;;) {
      const next = chunks.next();
      if (next.done) {
        partial = next.value;
        break;
      }
      onChunk(next.value);
      total += next.value;
    }
  } finally {
    closeSync(fd);
  }
  if (partial !== 0) {
    throw new NetsortError(`check: ${file} changed while being read (${total + partial} bytes so far)`);
  }
  if (total !== expectedBytes) {
    throw new NetsortError(`check: ${file} changed while being read (${expectedBytes} then ${total} bytes)`);
  }
  return total;
}

/** Where record `overallRecord` of the outputs is: its file and index within it. */
function locate(files: string[], fileRecords: number[], overallRecord: number): Disorder {
  let start = 0;
  for (let f = 0; f < files.length; f++) {
    if (overallRecord < start + fileRecords[f]) {
      return { file: files[f], fileIndex: f, record: overallRecord - start, overallRecord };
    }
    start += fileRecords[f];
  }
  throw new NetsortError(`check: record ${overallRecord} is past the end of the outputs`);
}

/**
 * Check that `outputs`, in order, are sorted within and across files; with
 * `inputs`, also that they hold exactly the input records (count and the
 * order-independent checksum). Throws UsageError (exit 2) for a missing file or
 * one whose size is not a whole number of records.
 */
export async function checkFiles(outputs: string[], inputs?: string[]): Promise<CheckResult> {
  if (outputs.length === 0) throw new UsageError("check: give at least one file to check");
  const outputBytes = outputs.map(statRecordFile);
  const inputBytes = inputs?.map(statRecordFile) ?? [];
  const buf = new Uint8Array(readChunkBytes);
  // One tally across every output: a file's first record is compared with the previous file's last.
  const tally = new RecordTally();
  const fileRecords: number[] = [];
  for (let f = 0; f < outputs.length; f++) {
    const bytes = streamFile(outputs[f], outputBytes[f], buf, (length) => tally.add(buf, 0, length));
    fileRecords.push(bytes / RECORD_BYTES);
  }
  let inputSum: RecordChecksum | null = null;
  if (inputs !== undefined) {
    const sum = new RecordChecksum();
    for (let f = 0; f < inputs.length; f++) {
      streamFile(inputs[f], inputBytes[f], buf, (length) => sum.add(buf, 0, length));
    }
    inputSum = sum;
  }
  const summary = tally.summary();
  const records = tally.records;
  assert(records === fileRecords.reduce((a, b) => a + b, 0), "every output record was tallied");
  const outputChecksum = summary?.checksum ?? 0n;
  const firstDisorder =
    summary === null || summary.unordered === 0n
      ? null
      : locate(outputs, fileRecords, Number(summary.firstUnordered));
  const sorted = firstDisorder === null;
  const inputsMatch =
    inputSum === null ? null : inputSum.records === records && inputSum.value === outputChecksum;
  return {
    files: outputs,
    fileRecords,
    records,
    duplicates: Number(summary?.dups ?? 0n),
    sorted,
    firstDisorder,
    checksums: { outputs: outputChecksum.toString(16), inputs: inputSum?.toHex() ?? null },
    inputRecords: inputSum?.records ?? null,
    inputsMatch,
    valid: sorted && inputsMatch !== false,
  };
}
