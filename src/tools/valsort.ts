/**
 * Sort Benchmark valsort 1.5 as a library: summarise a file of 100-byte records
 * (order, duplicate keys, checksum, first and last record), encode and decode
 * the 280-byte summary that `valsort -o` writes, combine summaries of partitions
 * in key order (`valsort -s`), and render valsort's verdict text.
 * Semantics follow valsort.c (docs/gensort-format.md); the record tally itself is
 * src/validate/tally.ts, shared with `check` and --validate; the CLI in
 * src/cli/valsort.ts only parses arguments and prints.
 */
import { closeSync, openSync } from "node:fs";
import { assert, EXIT_RUNTIME, NetsortError } from "../errors.ts";
import { readUnits } from "../io/reader.ts";
import { readChunkBytes } from "../limits.ts";
import { RECORD_BYTES } from "../record.ts";
import { type KeyCompare, keyCompare, RecordTally, type Summary } from "../validate/tally.ts";

/** Bytes of one encoded summary: five 128-bit counters, then the first and last record. */
export const SUMMARY_BYTES = 5 * 16 + 2 * RECORD_BYTES;
const MASK_128 = (1n << 128n) - 1n;
const MASK_64 = (1n << 64n) - 1n;
/** Summaries are read from a -s file this many at a time. */
const summariesPerRead = 1024;

export type { Summary } from "../validate/tally.ts";

export interface ValsortOptions {
  /** -i: compare keys like strcasecmp instead of memcmp. */
  caseInsensitive?: boolean;
  /** Called where valsort prints "First unordered record is record N", with N. */
  onFirstUnordered?: (index: bigint) => void;
}

/** A failure valsort reports in its own words (exit status 1). */
export class ValsortError extends NetsortError {
  constructor(message: string) {
    super(message, EXIT_RUNTIME);
    this.name = "ValsortError";
  }
}

export const MSG_NO_RECORDS = "there must be at least one record to be validated";
export const MSG_PARTIAL_RECORD = "partial record found at end";
export const MSG_PARTIAL_SUMMARY = "partial partition summary found at end";

/**
 * valsort's summarize_records: the shared RecordTally (src/validate/tally.ts),
 * with valsort's error for a summary of no records.
 */
export class RecordSummarizer extends RecordTally {
  /** The summary so far; throws ValsortError when no record was added. */
  override summary(): Summary {
    const summary = super.summary();
    if (summary === null) throw new ValsortError(MSG_NO_RECORDS);
    return summary;
  }
}

/** C's perror wording for the errors people meet, so messages read like valsort's. */
const STRERROR: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  EMFILE: "Too many open files",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EIO: "Input/output error",
};

/** `path: reason` like perror(path). */
export function perrorText(path: string, error: unknown): string {
  const code = (error as { code?: string } | null)?.code;
  const reason =
    code && STRERROR[code] ? STRERROR[code] : error instanceof Error ? error.message : String(error);
  return `${path}: ${reason}`;
}

/**
 * Read `path` in chunks into `buffer` (a whole number of `unitBytes` units) and
 * hand each run of whole units to `consume`. Returns the bytes of a trailing
 * partial unit (0 when the file ends on a unit boundary).
 */
function streamUnits(
  path: string,
  buffer: Uint8Array,
  unitBytes: number,
  consume: (filled: number) => void,
): number {
  assert(buffer.length % unitBytes === 0 && buffer.length >= unitBytes, "stream buffer holds whole units");
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new ValsortError(perrorText(path, error));
  }
  try {
    const chunks = readUnits(fd, buffer, unitBytes);
    for (;;) {
      let next: IteratorResult<number, number>;
      try {
        next = chunks.next();
      } catch (error) {
        // valsort's fread would take a read error for the end of input; naming it helps more.
        if ((error as { code?: string } | null)?.code === undefined) throw error;
        throw new ValsortError(perrorText(path, error));
      }
      if (next.done) return next.value;
      consume(next.value);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * valsort FILE: summarise a file of records, reading it in chunks of
 * `chunkBytes` (never the whole file). Throws ValsortError with valsort's message
 * for a missing file, an empty file or a trailing partial record (after the
 * whole records before it were seen, as valsort does).
 */
export function summarizeFile(path: string, options: ValsortOptions & { chunkBytes?: number } = {}): Summary {
  const chunkBytes = options.chunkBytes ?? readChunkBytes;
  assert(chunkBytes % RECORD_BYTES === 0 && chunkBytes > 0, "valsort: chunk is a whole number of records");
  const summarizer = new RecordSummarizer(options);
  const buffer = new Uint8Array(chunkBytes);
  const partial = streamUnits(path, buffer, RECORD_BYTES, (filled) => summarizer.add(buffer, 0, filled));
  if (partial > 0) throw new ValsortError(MSG_PARTIAL_RECORD);
  return summarizer.summary();
}

/** The summary as valsort -o writes it (x86-64 layout: each u64 little-endian, upper half first). */
export function encodeSummary(summary: Summary): Uint8Array {
  const bytes = new Uint8Array(SUMMARY_BYTES);
  const view = new DataView(bytes.buffer);
  const counters = [
    summary.firstUnordered,
    summary.unordered,
    summary.records,
    summary.dups,
    summary.checksum,
  ];
  counters.forEach((value, i) => {
    assert(value >= 0n && value <= MASK_128, "summary counters are unsigned 128-bit");
    view.setBigUint64(i * 16, value >> 64n, true);
    view.setBigUint64(i * 16 + 8, value & MASK_64, true);
  });
  assert(
    summary.firstRecord.length === RECORD_BYTES && summary.lastRecord.length === RECORD_BYTES,
    "records",
  );
  bytes.set(summary.firstRecord, 80);
  bytes.set(summary.lastRecord, 80 + RECORD_BYTES);
  return bytes;
}

/** Read one 280-byte summary at bytes[offset]. */
export function decodeSummary(bytes: Uint8Array, offset = 0): Summary {
  assert(offset >= 0 && offset + SUMMARY_BYTES <= bytes.length, "decodeSummary: 280 bytes needed");
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, SUMMARY_BYTES);
  const counter = (i: number) =>
    (view.getBigUint64(i * 16, true) << 64n) | view.getBigUint64(i * 16 + 8, true);
  return {
    firstUnordered: counter(0),
    unordered: counter(1),
    records: counter(2),
    dups: counter(3),
    checksum: counter(4),
    firstRecord: bytes.slice(offset + 80, offset + 80 + RECORD_BYTES),
    lastRecord: bytes.slice(offset + 80 + RECORD_BYTES, offset + SUMMARY_BYTES),
  };
}

/**
 * Combines partition summaries given in key order (valsort's sum_summaries):
 * counters add up; a partition whose first key is below the previous one's last
 * key adds one unordered record, an equal key one duplicate.
 */
export class SummaryCombiner {
  private readonly compare: KeyCompare;
  private readonly onFirstUnordered: ((index: bigint) => void) | undefined;
  private total: Summary | null = null;

  constructor(options: ValsortOptions = {}) {
    this.compare = keyCompare(options);
    this.onFirstUnordered = options.onFirstUnordered;
  }

  add(part: Summary): void {
    const total = this.total;
    if (total === null) {
      this.total = { ...part, firstRecord: part.firstRecord.slice(), lastRecord: part.lastRecord.slice() };
      if (part.firstUnordered !== 0n) this.onFirstUnordered?.(part.firstUnordered);
      return;
    }
    const diff = this.compare(total.lastRecord, 0, part.firstRecord, 0);
    if (diff === 0) {
      total.dups = (total.dups + 1n) & MASK_128;
    } else if (diff > 0) {
      if (total.firstUnordered === 0n) {
        total.firstUnordered = total.records;
        this.onFirstUnordered?.(total.firstUnordered);
      }
      total.unordered = (total.unordered + 1n) & MASK_128;
    }
    if (total.firstUnordered === 0n && part.firstUnordered !== 0n) {
      total.firstUnordered = (total.records + part.firstUnordered) & MASK_128;
      this.onFirstUnordered?.(total.firstUnordered);
    }
    total.unordered = (total.unordered + part.unordered) & MASK_128;
    total.records = (total.records + part.records) & MASK_128;
    total.dups = (total.dups + part.dups) & MASK_128;
    total.checksum = (total.checksum + part.checksum) & MASK_128;
    total.lastRecord = part.lastRecord.slice();
  }

  /** The combined summary; throws ValsortError when no summary was added. */
  summary(): Summary {
    if (this.total === null) throw new ValsortError(MSG_NO_RECORDS);
    const t = this.total;
    return { ...t, firstRecord: t.firstRecord.slice(), lastRecord: t.lastRecord.slice() };
  }
}

/** Combine summaries of partitions listed in key order. */
export function combineSummaries(parts: Iterable<Summary>, options: ValsortOptions = {}): Summary {
  const combiner = new SummaryCombiner(options);
  for (const part of parts) combiner.add(part);
  return combiner.summary();
}

/** valsort -s FILE: combine the concatenated 280-byte summaries in a file. */
export function summarizeSummaryFile(path: string, options: ValsortOptions = {}): Summary {
  const combiner = new SummaryCombiner(options);
  const buffer = new Uint8Array(SUMMARY_BYTES * summariesPerRead);
  const partial = streamUnits(path, buffer, SUMMARY_BYTES, (filled) => {
    for (let at = 0; at < filled; at += SUMMARY_BYTES) combiner.add(decodeSummary(buffer, at));
  });
  if (partial > 0) throw new ValsortError(MSG_PARTIAL_SUMMARY);
  return combiner.summary();
}

/** True when valsort would print SUCCESS (and exit 0). */
export function isOrdered(summary: Summary): boolean {
  return summary.unordered === 0n;
}

/** The line valsort prints as soon as it meets the first unordered record. */
export function firstUnorderedText(index: bigint): string {
  return `First unordered record is record ${index}\n`;
}

/** valsort's closing lines, each ending in a newline. */
export function verdictText(summary: Summary): string {
  const head = `Records: ${summary.records}\nChecksum: ${summary.checksum.toString(16)}\n`;
  if (!isOrdered(summary)) return `${head}ERROR - there are ${summary.unordered} unordered records\n`;
  return `${head}Duplicate keys: ${summary.dups}\nSUCCESS - all records are in order\n`;
}
