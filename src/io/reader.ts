/**
 * Chunked reading of record files. The sort's input is checked before anything
 * moves (exists, is a regular readable file, holds whole records) and then read
 * into one buffer that is allocated once and reused for every chunk; `readUnits`
 * is the read loop under it, shared with `check` and `valsort`.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { readChunkBytes } from "../limits.ts";
import { hugeBuffer } from "../mem.ts";
import { RECORD_BYTES } from "../record.ts";

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return code ?? String(error);
}

/** Check an input file and return its size in bytes. Throws UsageError (exit 2) naming the file. */
export function checkInputFile(path: string): number {
  let size: number;
  try {
    const stat = statSync(path);
    if (stat.isDirectory()) throw new UsageError(`input ${path}: is a directory`);
    if (!stat.isFile()) throw new UsageError(`input ${path}: is not a regular file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`input ${path}: ${reasonOf(error)}`);
  }
  if (size % RECORD_BYTES !== 0) {
    throw new UsageError(
      `input ${path}: size ${size} bytes is not a multiple of ${RECORD_BYTES} (${Math.floor(size / RECORD_BYTES)} records and ${size % RECORD_BYTES} stray bytes)`,
    );
  }
  try {
    closeSync(openSync(path, "r"));
  } catch (error) {
    throw new UsageError(`input ${path}: ${reasonOf(error)}`);
  }
  return size;
}

/**
 * The one chunked read loop for record files (the sort's input, `check`,
 * `valsort`): fill `buffer` from `fd` at its current position and yield the byte
 * length of each run of whole `unitBytes` units at buffer[0, length). Every run
 * but the last fills the buffer; a unit split between two reads moves to the
 * front and is completed by the next read. The bytes are valid until the
 * generator resumes. Returns the bytes of a trailing partial unit (0 when the
 * file ends on a unit boundary). Read errors are thrown as they come, for the
 * caller to word.
 */
export function* readUnits(
  fd: number,
  buffer: Uint8Array,
  unitBytes: number,
): Generator<number, number, void> {
  assert(buffer.length % unitBytes === 0 && buffer.length >= unitBytes, "the read buffer holds whole units");
  let filled = 0;
  for (;;) {
    const got = readSync(fd, buffer, filled, buffer.length - filled, null);
    filled += got;
    if (got > 0 && filled < buffer.length) continue;
    const whole = filled - (filled % unitBytes);
    if (whole > 0) yield whole;
    if (got === 0) return filled - whole;
    buffer.copyWithin(0, whole, filled);
    filled -= whole;
  }
}

/**
 * What identifies one version of a file: device, inode, size, and the
 * modification and change times in nanoseconds. A reader that goes over a file
 * several times (key-range rounds) compares it after each pass, so a file
 * rewritten in place between passes (same size) is an error, not records sent
 * twice or never.
 */
export function fileVersion(path: string): string {
  const st = statSync(path, { bigint: true });
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** The buffer readChunks reads a file of `expectedBytes` into: pass it to every pass over the same file. */
export function chunkBuffer(expectedBytes: number, chunkBytes = readChunkBytes): Uint8Array {
  assert(chunkBytes % RECORD_BYTES === 0 && chunkBytes > 0, "chunks hold whole records");
  return hugeBuffer(Math.min(chunkBytes, Math.max(expectedBytes, RECORD_BYTES)));
}

/**
 * Yield the file's records in chunks of whole records: views into one reused
 * buffer (`buf`, from chunkBuffer; a new one when not given), valid until the
 * next iteration. `expectedBytes` is the size checked at start; a file that
 * changes size while read is an error, not a silent short sort.
 */
export async function* readChunks(
  path: string,
  expectedBytes: number,
  buf: Uint8Array = chunkBuffer(expectedBytes),
): AsyncGenerator<Uint8Array> {
  assert(buf.length % RECORD_BYTES === 0 && buf.length > 0, "chunks hold whole records");
  const fd = openSync(path, "r");
  try {
    const chunks = readUnits(fd, buf, RECORD_BYTES);
    let total = 0;
    for (;;) {
      const next = chunks.next();
      if (next.done) {
        total += next.value;
        break;
      }
      total += next.value;
      // Checked before the chunk is handed out, so no record past the checked size moves.
      if (total > expectedBytes) {
        throw new NetsortError(`input ${path}: grew while being read (more than ${expectedBytes} bytes)`);
      }
      yield buf.subarray(0, next.value);
    }
    if (total !== expectedBytes) {
      throw new NetsortError(
        `input ${path}: changed while being read (${total} bytes, expected ${expectedBytes})`,
      );
    }
  } finally {
    closeSync(fd);
  }
}
