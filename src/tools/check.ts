/**
 * `check`: are these files, in this order, one sorted sequence of records (key
 * order, memcmp), and do they hold exactly the input records? Streams every
 * file through one reused buffer, so any size can be checked in little memory.
 */
import fs from "node:fs";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { readChunkBytes } from "../limits.ts";
import { compareKeys, KEY_BYTES, RECORD_BYTES } from "../record.ts";
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
 * records, all in `buf`. Returns the number of bytes read.
 */
async function streamFile(
  file: string,
  expectedBytes: number,
  buf: Uint8Array,
  onChunk: (length: number) => void,
): Promise<number> {
  assert(buf.length % RECORD_BYTES === 0, "chunk buffer holds whole records");
  const handle = await fs.promises.open(file, "r");
  let total = 0;
  try {
    for (;;) {
      let filled = 0;
      while (filled < buf.length) {
        const { bytesRead } = await handle.read(buf, filled, buf.length - filled, total + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled % RECORD_BYTES !== 0) {
        throw new NetsortError(`check: ${file} changed while being read (${total + filled} bytes so far)`);
      }
      if (filled > 0) onChunk(filled);
      total += filled;
      if (filled < buf.length) break;
    }
  } finally {
    await handle.close();
  }
  if (total !== expectedBytes) {
    throw new NetsortError(`check: ${file} changed while being read (${expectedBytes} then ${total} bytes)`);
  }
  return total;
}

/** The running order check: carries the previous key across chunks and files. */
class OrderCheck {
  records = 0;
  duplicates = 0;
  firstDisorder: Disorder | null = null;
  private readonly previousKey = new Uint8Array(KEY_BYTES);
  private hasPrevious = false;

  /** Check buf[0, length); the records are `fileRecord`.. of file `fileIndex`. */
  add(buf: Uint8Array, length: number, file: string, fileIndex: number, fileRecord: number): void {
    const previousKey = this.previousKey;
    for (let o = 0; o < length; o += RECORD_BYTES) {
      if (o > 0 || this.hasPrevious) {
        const order =
          o > 0 ? compareKeys(buf, o - RECORD_BYTES, buf, o) : compareKeys(previousKey, 0, buf, o);
        if (order === 0) {
          this.duplicates++;
        } else if (order > 0 && this.firstDisorder === null) {
          const record = fileRecord + o / RECORD_BYTES;
          this.firstDisorder = { file, fileIndex, record, overallRecord: this.records + o / RECORD_BYTES };
        }
      }
    }
    if (length > 0) {
      previousKey.set(buf.subarray(length - RECORD_BYTES, length - RECORD_BYTES + KEY_BYTES));
      this.hasPrevious = true;
    }
    this.records += length / RECORD_BYTES;
  }
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
  const order = new OrderCheck();
  const outputSum = new RecordChecksum();
  const fileRecords: number[] = [];
  for (let f = 0; f < outputs.length; f++) {
    let fileRecord = 0;
    await streamFile(outputs[f], outputBytes[f], buf, (length) => {
      order.add(buf, length, outputs[f], f, fileRecord);
      outputSum.add(buf, 0, length);
      fileRecord += length / RECORD_BYTES;
    });
    fileRecords.push(fileRecord);
  }
  let inputSum: RecordChecksum | null = null;
  if (inputs !== undefined) {
    const sum = new RecordChecksum();
    for (let f = 0; f < inputs.length; f++) {
      await streamFile(inputs[f], inputBytes[f], buf, (length) => sum.add(buf, 0, length));
    }
    inputSum = sum;
  }
  assert(order.records === outputSum.records, "every output record was both ordered and summed");
  const sorted = order.firstDisorder === null;
  const inputsMatch =
    inputSum === null ? null : inputSum.records === outputSum.records && inputSum.value === outputSum.value;
  return {
    files: outputs,
    fileRecords,
    records: order.records,
    duplicates: order.duplicates,
    sorted,
    firstDisorder: order.firstDisorder,
    checksums: { outputs: outputSum.toHex(), inputs: inputSum?.toHex() ?? null },
    inputRecords: inputSum?.records ?? null,
    inputsMatch,
    valid: sorted && inputsMatch !== false,
  };
}
