/**
 * Chunked input reader. The input is checked before anything moves (exists, is a
 * regular readable file, holds whole records) and then read into one buffer that
 * is allocated once and reused for every chunk.
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
 * Yield the file's records in chunks of whole records: views into one reused
 * buffer, valid until the next iteration. `expectedBytes` is the size checked at
 * start; a file that changes size while read is an error, not a silent short sort.
 */
export async function* readChunks(
  path: string,
  expectedBytes: number,
  chunkBytes = readChunkBytes,
): AsyncGenerator<Uint8Array> {
  assert(chunkBytes % RECORD_BYTES === 0 && chunkBytes > 0, "chunks hold whole records");
  const fd = openSync(path, "r");
  try {
    const buf = hugeBuffer(Math.min(chunkBytes, Math.max(expectedBytes, RECORD_BYTES)));
    let fill = 0;
    let total = 0;
    while (true) {
      const got = readSync(fd, buf, fill, buf.length - fill, null);
      total += got;
      fill += got;
      if (got === 0 || fill === buf.length) {
        const whole = fill - (fill % RECORD_BYTES);
        if (whole > 0) yield buf.subarray(0, whole);
        if (got === 0) {
          if (fill % RECORD_BYTES !== 0 || total !== expectedBytes) {
            throw new NetsortError(
              `input ${path}: changed while being read (${total} bytes, expected ${expectedBytes})`,
            );
          }
          return;
        }
        // Keep a record that straddles chunks: move its start to the front.
        buf.copyWithin(0, whole, fill);
        fill -= whole;
      }
      if (total > expectedBytes) {
        throw new NetsortError(`input ${path}: grew while being read (more than ${expectedBytes} bytes)`);
      }
    }
  } finally {
    closeSync(fd);
  }
}
