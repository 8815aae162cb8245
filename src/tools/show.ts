/**
 * `show`: the course showsort's layout, one line per record: the key as 20 hex
 * characters, a tab, then the value as its first 10 and last 10 bytes in hex
 * joined by "..." (or, with `full`, the whole value in hex).
 */
import fs from "node:fs";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { KEY_BYTES, RECORD_BYTES } from "../record.ts";

/** The file is read in pieces of this many bytes (whole records), one reused buffer. */
const showChunkBytes = 655 * RECORD_BYTES;
/** Bytes of the value shown at each end when abbreviated. */
const showEndBytes = 10;

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

function hex(buf: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let i = start; i < end; i++) text += HEX[buf[i]];
  return text;
}

/** One record as show prints it, without the newline. */
export function formatRecord(buf: Uint8Array, offset: number, full = false): string {
  const valueStart = offset + KEY_BYTES;
  const end = offset + RECORD_BYTES;
  const key = hex(buf, offset, valueStart);
  if (full) return `${key}\t${hex(buf, valueStart, end)}`;
  return `${key}\t${hex(buf, valueStart, valueStart + showEndBytes)}...${hex(buf, end - showEndBytes, end)}`;
}

export interface ShowOptions {
  full?: boolean;
  /** Print at most this many records. */
  limit?: number;
  /** Where the text goes; the default writes to stdout. */
  write?: (text: string) => void | Promise<void>;
}

export interface ShowResult {
  /** Records printed. */
  records: number;
  /** True when the reader went away (EPIPE, as with `| head`): not an error. */
  closed: boolean;
}

/**
 * Write to stdout and wait until the text is handed over, so memory stays
 * bounded by one chunk's text and nothing is lost when the CLI exits. Not
 * fs.writeSync(1): stdout may be a non-blocking pipe (EAGAIN, partial writes);
 * not Bun.write(Bun.stdout): it repeated data on a slow pipe in Bun 1.4.5.
 */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

/** The write callback reports EPIPE; this listener keeps the stream's 'error' event from throwing. */
let stdoutErrorsHandled = false;
function handleStdoutErrors(): void {
  if (stdoutErrorsHandled) return;
  stdoutErrorsHandled = true;
  process.stdout.on("error", () => {});
}

function isEpipe(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === "EPIPE";
}

function openForShow(file: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (error) {
    throw new UsageError(`show: cannot read ${file}: ${String((error as Error).message).split(", ")[0]}`);
  }
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) {
    fs.closeSync(fd);
    throw new UsageError(`show: ${file} is not a regular file`);
  }
  return { fd, size: stat.size };
}

/** Read into buf until it is full or the file ends; returns the bytes read. */
function readFull(fd: number, buf: Uint8Array): number {
  let filled = 0;
  while (filled < buf.length) {
    const n = fs.readSync(fd, buf, filled, buf.length - filled, null);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

/**
 * Print the records of `file`, streaming it. A size that is not a multiple of
 * 100 is bad input: the whole records are printed, then a UsageError names the
 * file and its size.
 */
export async function showFile(file: string, options: ShowOptions = {}): Promise<ShowResult> {
  const full = options.full ?? false;
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const write = options.write ?? writeStdout;
  if (options.write === undefined) handleStdoutErrors();
  assert(limit >= 0, "limit is not negative");
  const { fd, size } = openForShow(file);
  const buf = new Uint8Array(showChunkBytes);
  let records = 0;
  try {
    while (records < limit) {
      const got = readFull(fd, buf);
      const whole = Math.min(Math.floor(got / RECORD_BYTES), limit - records);
      if (whole === 0) break;
      let text = "";
      for (let r = 0; r < whole; r++) text += `${formatRecord(buf, r * RECORD_BYTES, full)}\n`;
      await write(text);
      records += whole;
      if (got < buf.length) break;
    }
  } catch (error) {
    if (isEpipe(error)) return { records, closed: true };
    if (error instanceof NetsortError) throw error;
    throw new NetsortError(`show: ${file}: ${(error as Error).message}`, undefined, { cause: error });
  } finally {
    fs.closeSync(fd);
  }
  if (size % RECORD_BYTES !== 0) {
    throw new UsageError(
      `show: ${file} is ${size} bytes, not a multiple of ${RECORD_BYTES} ` +
        `(${Math.floor(size / RECORD_BYTES)} whole records and ${size % RECORD_BYTES} bytes over)`,
    );
  }
  return { records, closed: false };
}
