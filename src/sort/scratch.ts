/**
 * Scratch files for spilled runs: files without a name, so nothing is left
 * behind whatever happens to the process, SIGKILL included. On Linux the file is
 * made unnamed from the start (O_TMPFILE, with O_EXCL so it can never be linked
 * into the directory); where the file system refuses that, it is created under a
 * unique name and unlinked at once, and a later run removes any file a kill
 * between those two calls left (the pid is in the name). The file lives as long
 * as its descriptor; close() frees its space (on the thread pool, see there).
 */
import { close as closeLater, constants, openSync, readSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { fileErrorReason, removeStaleFiles } from "../io/files.ts";
import { libc } from "../libc.ts";

/** Linux's __O_TMPFILE bit (the same on x86-64 and arm64); O_TMPFILE is this plus O_DIRECTORY. */
const O_TMPFILE_BIT = 0o20000000;
/** sync_file_range flag: start writing the dirty pages of the range, do not wait. */
const SYNC_FILE_RANGE_WRITE = 2;
/**
 * After this many more bytes, the kernel is asked to start writing a run to
 * disk: dirty pages do not pile up (in a memory cgroup they count against the
 * limit until written) and the disk works while the sort goes on.
 */
const scratchWritebackBytes = 8 * 1024 * 1024;
/** Names of the fallback files: `.netsort-spill-<pid>-<n>.tmp`. */
const fallbackPrefix = ".netsort-spill-";
const fallbackSuffix = ".tmp";

let fallbackCount = 0;
/** O_TMPFILE refused once in this process: go straight to the fallback after that. */
let tmpfileRefused = false;

/** Fallback files of processes that are gone (killed between create and unlink). */
function removeStaleFallbacks(dir: string): void {
  removeStaleFiles(dir, fallbackPrefix);
}

/**
 * The temp directory must exist and take a scratch file: checked before any
 * data moves, so a wrong --temp-dir is a usage error (exit 2) naming it.
 */
export function checkTempDir(dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (error) {
    throw new UsageError(`temp dir ${dir}: ${fileErrorReason(error)}`);
  }
  if (!isDir) throw new UsageError(`temp dir ${dir}: not a directory`);
  try {
    new ScratchFile(dir).close();
  } catch (error) {
    throw new UsageError(`temp dir ${dir}: cannot create a scratch file (${fileErrorReason(error)})`);
  }
}

function openUnnamed(dir: string): number {
  if (process.platform === "linux" && !tmpfileRefused) {
    try {
      return openSync(
        dir,
        O_TMPFILE_BIT | constants.O_DIRECTORY | constants.O_RDWR | constants.O_EXCL,
        0o600,
      );
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Only "this file system cannot": anything else (no directory, no space) is the answer.
      if (code !== "EOPNOTSUPP" && code !== "ENOTSUP" && code !== "EISDIR" && code !== "EINVAL") throw error;
      tmpfileRefused = true;
    }
  }
  removeStaleFallbacks(dir);
  const path = join(dir, `${fallbackPrefix}${process.pid}-${fallbackCount++}${fallbackSuffix}`);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
  unlinkSync(path);
  return fd;
}

/** One unnamed file in `dir`, appended to and then read back at any offset. */
export class ScratchFile {
  private fd: number;
  /** Bytes appended so far. */
  bytes = 0;
  private writebackFromBytes = 0;

  constructor(readonly dir: string) {
    try {
      this.fd = openUnnamed(dir);
    } catch (error) {
      throw new NetsortError(`temp dir ${dir}: cannot create a spill file (${fileErrorReason(error)})`);
    }
  }

  /** Append all of buf; a full disk is a run-time failure naming the directory. */
  append(buf: Uint8Array): void {
    assert(this.fd >= 0, "append after close");
    let offset = 0;
    try {
      while (offset < buf.length) offset += writeSync(this.fd, buf, offset, buf.length - offset);
    } catch (error) {
      throw new NetsortError(
        `temp dir ${this.dir}: spill write failed after ${this.bytes + offset} bytes of a run (${fileErrorReason(error)}); give --temp-dir a directory with more space, or more --memory`,
      );
    }
    this.bytes += buf.length;
    if (this.bytes - this.writebackFromBytes >= scratchWritebackBytes) this.startWriteback();
  }

  /** Fill buf[0, length) from file offset `position`; returns the bytes read (short only at the end). */
  readAt(buf: Uint8Array, length: number, position: number): number {
    assert(this.fd >= 0, "read after close");
    let done = 0;
    try {
      while (done < length) {
        const n = readSync(this.fd, buf, done, length - done, position + done);
        if (n === 0) break;
        done += n;
      }
    } catch (error) {
      throw new NetsortError(
        `temp dir ${this.dir}: reading a spilled run failed (${fileErrorReason(error)})`,
      );
    }
    return done;
  }

  /**
   * Close the descriptor, on the thread pool: the kernel then frees the file's
   * space. The last close of an unnamed file drops its page cache and waits
   * for the pages still being written back (startWriteback): measured here,
   * 0.1 s for a 400 MiB run on an idle disk, 0.5 s at the end of a merge while
   * the output was being written. On the event loop that was half a second
   * without PINGs, and peers with a short --idle-timeout-ms failed this one.
   * Safe to call more than once.
   */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    closeLater(fd, () => {}); // an error here (already closed) leaves nothing to do
  }

  /** Failure is harmless: the pages are written back later anyway. */
  private startWriteback(): void {
    const c = libc();
    const from = this.writebackFromBytes;
    this.writebackFromBytes = this.bytes;
    if (c === null) return;
    try {
      c.syncFileRange(this.fd, from, this.bytes - from, SYNC_FILE_RANGE_WRITE);
    } catch {
      // no sync_file_range here
    }
  }
}
