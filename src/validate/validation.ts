/**
 * Distributed validation (`sort --validate`): every peer summarises its output
 * the way valsort does (while writing it: no second read) and checksums its
 * input (while reading it). The summaries travel in READY frames, so every peer
 * combines the same N summaries in partition order and reaches the same global
 * verdict: order within and between outputs, duplicate keys, and the outputs'
 * record count and checksum equal to the inputs'. A wrong verdict fails the sort
 * on every peer before any output is renamed into place.
 */
import { assert } from "../errors.ts";
import { READY_VALIDATION_BYTES, VALSORT_SUMMARY_BYTES } from "../exchange/protocol.ts";
import { RecordChecksum } from "../tools/checksum.ts";
import { decodeSummary, encodeSummary, SummaryCombiner, verdictText } from "../tools/valsort.ts";
import { RecordTally, type Summary } from "./tally.ts";

assert(VALSORT_SUMMARY_BYTES === 280, "valsort summaries are 280 bytes");

/** One peer's part: its output's valsort summary (null when empty) and its input's checksum. */
export interface PeerPart {
  summary: Summary | null;
  inputChecksum: bigint;
  inputRecords: bigint;
}

export interface Verdict {
  ok: boolean;
  /** Combined summary of every output in partition order (null when all are empty). */
  summary: Summary | null;
  inputChecksum: bigint;
  inputRecords: bigint;
  /** valsort-style lines plus the input comparison, for peer 0 to print. */
  lines: string[];
  /** Why the verdict is wrong, or null. */
  problem: string | null;
}

function putU128(buf: Uint8Array, offset: number, value: bigint): void {
  const view = new DataView(buf.buffer, buf.byteOffset + offset, 16);
  view.setBigUint64(0, value >> 64n);
  view.setBigUint64(8, value & ((1n << 64n) - 1n));
}

function getU128(buf: Uint8Array, offset: number): bigint {
  const view = new DataView(buf.buffer, buf.byteOffset + offset, 16);
  return (view.getBigUint64(0) << 64n) | view.getBigUint64(8);
}

/** Accumulates one peer's part while it reads and writes. */
export class PeerValidation {
  private readonly input = new RecordChecksum();
  private readonly output = new RecordTally();

  addInput(buf: Uint8Array): void {
    this.input.add(buf, 0, buf.length);
  }

  addOutput(buf: Uint8Array): void {
    this.output.add(buf, 0, buf.length);
  }

  part(): PeerPart {
    return {
      summary: this.output.summary(),
      inputChecksum: this.input.value,
      inputRecords: BigInt(this.input.records),
    };
  }

  /** The READY payload: summary (all zeros when empty), input checksum, input record count. */
  encode(): Uint8Array {
    return encodePart(this.part());
  }
}

export function encodePart(part: PeerPart): Uint8Array {
  const out = new Uint8Array(READY_VALIDATION_BYTES);
  if (part.summary !== null) out.set(encodeSummary(part.summary), 0);
  putU128(out, VALSORT_SUMMARY_BYTES, part.inputChecksum);
  new DataView(out.buffer).setBigUint64(VALSORT_SUMMARY_BYTES + 16, part.inputRecords);
  return out;
}

export function decodePart(bytes: Uint8Array): PeerPart {
  assert(bytes.length === READY_VALIDATION_BYTES, "validation payload size");
  const summary = decodeSummary(bytes, 0);
  return {
    summary: summary.records === 0n ? null : summary,
    inputChecksum: getU128(bytes, VALSORT_SUMMARY_BYTES),
    inputRecords: new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(VALSORT_SUMMARY_BYTES + 16),
  };
}

const MASK_128 = (1n << 128n) - 1n;

/** Combine every peer's part, in partition order (peer 0 first). */
export function globalVerdict(parts: PeerPart[]): Verdict {
  const combiner = new SummaryCombiner();
  let inputChecksum = 0n;
  let inputRecords = 0n;
  let any = false;
  for (const part of parts) {
    inputChecksum = (inputChecksum + part.inputChecksum) & MASK_128;
    inputRecords += part.inputRecords;
    if (part.summary !== null) {
      combiner.add(part.summary);
      any = true;
    }
  }
  const summary = any ? combiner.summary() : null;
  const records = summary?.records ?? 0n;
  const checksum = summary?.checksum ?? 0n;
  const lines = (
    summary === null
      ? "Records: 0\nChecksum: 0\nDuplicate keys: 0\nSUCCESS - all records are in order\n"
      : verdictText(summary)
  )
    .trimEnd()
    .split("\n");
  lines.push(`Input records: ${inputRecords}, input checksum: ${inputChecksum.toString(16)}`);
  let problem: string | null = null;
  if (summary !== null && summary.unordered !== 0n) {
    problem = `outputs are not in order: ${summary.unordered} unordered records, the first at record ${summary.firstUnordered}`;
  } else if (records !== inputRecords) {
    problem = `outputs hold ${records} records, inputs ${inputRecords}`;
  } else if (checksum !== inputChecksum) {
    problem = `output checksum ${checksum.toString(16)} differs from input checksum ${inputChecksum.toString(16)}`;
  }
  lines.push(
    problem === null
      ? "VALID: outputs sorted, in order across peers, exactly the input records"
      : `INVALID: ${problem}`,
  );
  return { ok: problem === null, summary, inputChecksum, inputRecords, lines, problem };
}
