/**
 * Durable output. On Linux the records go into an unnamed file in the output's
 * directory (O_TMPFILE): until commit no name exists, so a peer killed with
 * SIGKILL leaves nothing behind. It is fsynced, and at commit linked into place.
 * Where O_TMPFILE or linkat is missing, a named temp file beside the output
 * takes its place (removed on failure, and by the next run when we were killed).
 * The output path never holds a partial file.
 *
 * Writes and fsyncs run on Bun's file-system thread pool, never on the event
 * loop: on a slow disk a peer that is busy writing still answers pings, so it is
 * not taken for a dead one (issue 9, point 4).
 */
import {
  closeSync,
  fdatasync,
  fstatSync,
  fsync,
  fsyncSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  write,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { AT_FDCWD, AT_SYMLINK_FOLLOW, libc } from "../libc.ts";
import { writebackBytes, writeChunkBytes } from "../limits.ts";
import { fileErrorReason, O_TMPFILE, removeStaleFiles } from "./files.ts";

const O_WRONLY = 1;

/** A Node-style error with a code, for fileErrorReason. */
function codeError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

/** fs.write on the thread pool; resolves with the bytes the kernel took. */
function writeAsync(fd: number, buf: Uint8Array, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) =>
    write(fd, buf, offset, length, null, (error, n) => (error ? reject(error) : resolve(n))),
  );
}

function syncAsync(fd: number, dataOnly: boolean): Promise<void> {
  return new Promise((resolve, reject) =>
    (dataOnly ? fdatasync : fsync)(fd, (error) => (error ? reject(error) : resolve())),
  );
}

/** Temp files of live writers (named mode only), removed on a signal. */
const liveTempFiles = new Set<string>();

export function removeLiveTempFiles(): void {
  for (const path of liveTempFiles) {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  }
  liveTempFiles.clear();
}

/**
 * A peer killed with SIGKILL cannot remove a named temp file (fallback mode, or
 * killed between the two syscalls of an unnamed commit). The next run for the
 * same output removes temp files of that output whose process is gone (on this
 * machine: the pid is in the name, and the file sits beside the output).
 */
function removeStaleTempFiles(dir: string, base: string): void {
  removeStaleFiles(dir, `.${base}.netsort-`);
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * An unnamed file in `dir`, or null where the file system or kernel has no
 * O_TMPFILE (or linkat cannot reach it through /proc): the caller falls back to
 * a named temp file. Other errors (missing directory, read-only) are thrown.
 */
function openUnnamed(dir: string): number | null {
  if (process.platform !== "linux" || libc() === null) return null;
  let fd: number;
  try {
    fd = openSync(dir, O_TMPFILE | O_WRONLY, 0o644);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // EOPNOTSUPP: this file system has no O_TMPFILE; EISDIR/EINVAL: a kernel without it.
    if (code === "EOPNOTSUPP" || code === "EISDIR" || code === "EINVAL") return null;
    throw error;
  }
  try {
    // commit links /proc/self/fd/<fd>: without /proc it could not, so find that out now.
    statSync(`/proc/self/fd/${fd}`);
    return fd;
  } catch {
    closeSync(fd);
    return null;
  }
}

export interface DurableWriterOptions {
  /** Use an unnamed O_TMPFILE file where possible (default); false forces the named fallback. */
  unnamed?: boolean;
}

/** A file's identity: what `isInPlace` compares. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
}

export class DurableWriter {
  /**
   * The named file the data goes to before commit (fallback mode), or, in unnamed
   * mode, the name used for a moment at commit (link, then rename over the output).
   */
  readonly tempPath: string;
  /** True when the data is in an unnamed file: no name exists until commit. */
  readonly unnamed: boolean;
  /** The device and inode of the file we write: after commit, the output path's. */
  readonly identity: FileIdentity;
  private fd: number;
  private state: "open" | "prepared" | "committed" | "discarded" = "open";
  /** Bytes handed to write(). */
  bytes = 0;
  /** Bytes the kernel has taken (file size so far): what a write error reports. */
  private fileBytes = 0;
  /** Output bytes whose writeback was started early, before prepare() (0 where none was). */
  writebackBytes = 0;
  /** Where the next writeback request starts. */
  private writebackFromBytes = 0;
  /** The one early writeback in flight on the thread pool, if any. */
  private writeback: Promise<void> | null = null;
  /** A write or fsync on the thread pool (each is awaited, so at most one; discard waits for it). */
  private writing: Promise<void> | null = null;
  /** Set by discard: a write still running stops after its current piece. */
  private failure: NetsortError | null = null;

  /** Opens the file now, so a missing or read-only directory is found before data moves (exit 2). */
  constructor(
    readonly path: string,
    options: DurableWriterOptions = {},
  ) {
    const dir = dirname(path);
    this.tempPath = join(dir, `.${basename(path)}.netsort-${process.pid}.tmp`);
    let fd: number | null = null;
    try {
      if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) {
        throw new UsageError(`output ${path}: is a directory`);
      }
      if (options.unnamed !== false) fd = openUnnamed(dir);
      this.unnamed = fd !== null;
      if (fd === null) fd = openSync(this.tempPath, "w", 0o644);
      removeStaleTempFiles(dir, basename(path));
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`output ${path}: cannot write in ${dir} (${fileErrorReason(error)})`);
    }
    this.fd = fd;
    const st = fstatSync(fd, { bigint: true });
    this.identity = { dev: st.dev, ino: st.ino };
    if (!this.unnamed) liveTempFiles.add(this.tempPath);
  }

  /**
   * Append bytes, in pieces of at most writeChunkBytes, on the thread pool.
   * Resolves when `buf` may be reused (it is written). Measured, 256 MiB in
   * 2 MiB runs: as fast as writeSync or faster (numbers in docs/reliability.md);
   * copying into a staging buffer to overlap sorting and writing was slower on
   * this 2-core machine. A full disk is a run-time failure (exit 1).
   */
  async write(buf: Uint8Array): Promise<void> {
    assert(this.state === "open", "write before prepare");
    assert(this.writing === null, "one write at a time");
    this.throwIfFailed();
    const writing = this.writeAll(buf);
    this.writing = writing;
    try {
      await writing;
    } finally {
      this.writing = null;
    }
    this.throwIfFailed();
    this.bytes += buf.length;
    if (this.bytes - this.writebackFromBytes >= writebackBytes) this.startWriteback();
  }

  /** Write buf whole (writes may be short); on failure set `failure` naming the bytes the file holds. */
  private async writeAll(buf: Uint8Array): Promise<void> {
    try {
      for (let offset = 0; offset < buf.length && this.failure === null; ) {
        const piece = Math.min(writeChunkBytes, buf.length - offset);
        offset += await writeAsync(this.fd, buf, offset, piece);
        this.fileBytes = this.bytes + offset;
      }
    } catch (error) {
      this.failure ??= new NetsortError(
        `output ${this.path}: write failed after ${this.fileBytes} bytes (${fileErrorReason(error)})`,
      );
    }
  }

  /**
   * Measured, 4 peers x 256 MiB on the project VM: without early writeback,
   * every peer's fsync waited 0.4-0.5 s at the end with both cores idle. It used
   * to be sync_file_range on the event loop, but on a slow disk that call blocks
   * for as long as ext4 waits for the journal (0.9 s per 8 MiB at 8 MB/s,
   * measured), so no ping goes out. fdatasync on the thread pool does the same
   * work without blocking the loop; one at a time, the next starts after it.
   * Failure is harmless: fsync in prepare() writes everything and reports errors.
   */
  private startWriteback(): void {
    if (this.writeback !== null || this.state !== "open") return;
    const upTo = this.bytes;
    this.writeback = syncAsync(this.fd, true).then(
      () => {
        this.writebackBytes += upTo - this.writebackFromBytes;
        this.writebackFromBytes = upTo;
        this.writeback = null;
      },
      () => {
        this.writeback = null;
      },
    );
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Flush everything to disk (still without its final name). */
  async prepare(): Promise<void> {
    assert(this.state === "open", "prepare once");
    assert(this.writing === null, "prepare after the last write");
    this.throwIfFailed();
    if (this.writeback !== null) await this.writeback;
    this.state = "prepared";
    const syncing = syncAsync(this.fd, false);
    this.writing = syncing.catch(() => {}); // discard waits for it before closing
    try {
      await syncing;
    } catch (error) {
      throw new NetsortError(`output ${this.path}: fsync failed (${fileErrorReason(error)})`);
    } finally {
      this.writing = null;
    }
  }

  /**
   * Put the file in place under the output's name and make that durable.
   * Unnamed mode: linkat cannot replace an existing file (an earlier run's
   * output), and rename cannot take an unnamed file; so link it to the temp name,
   * then rename that over the output (atomic: readers see the old file or the
   * new one). The temp name exists only between those two syscalls; if we are
   * killed right there, the next run for this output removes it.
   */
  async commit(): Promise<void> {
    assert(this.state === "prepared", "commit after prepare");
    if (this.unnamed) {
      const c = libc();
      assert(c !== null, "unnamed mode has libc");
      unlinkQuietly(this.tempPath); // ours by its pid: left by an earlier failed commit
      if (c.linkat(AT_FDCWD, `/proc/self/fd/${this.fd}`, AT_FDCWD, this.tempPath, AT_SYMLINK_FOLLOW) !== 0) {
        const code = c.lastErrorCode();
        throw new NetsortError(`output ${this.path}: link failed (${fileErrorReason(codeError(code))})`);
      }
    }
    try {
      renameSync(this.tempPath, this.path);
    } catch (error) {
      unlinkQuietly(this.tempPath);
      throw new NetsortError(`output ${this.path}: rename failed (${fileErrorReason(error)})`);
    }
    liveTempFiles.delete(this.tempPath);
    this.state = "committed";
    closeSync(this.fd);
    await this.syncDirectory();
  }

  private async syncDirectory(): Promise<void> {
    try {
      const dirFd = openSync(dirname(this.path), "r");
      try {
        await syncAsync(dirFd, false);
      } finally {
        closeSync(dirFd);
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename itself is done.
    }
  }

  /** True when the output path now holds the file this writer wrote. */
  isInPlace(): boolean {
    try {
      const st = statSync(this.path, { bigint: true, throwIfNoEntry: false });
      return st !== undefined && st.dev === this.identity.dev && st.ino === this.identity.ino;
    } catch {
      return false;
    }
  }

  /**
   * After commit, when the run failed elsewhere: remove the output, but only if
   * the path still holds our file (never another run's or another peer's).
   */
  removeCommitted(): void {
    if (this.state !== "committed" || !this.isInPlace()) return;
    unlinkQuietly(this.path);
    try {
      const dirFd = openSync(dirname(this.path), "r");
      fsyncSync(dirFd);
      closeSync(dirFd);
    } catch {
      // as in syncDirectory
    }
  }

  /**
   * Forget the data: close the file (an unnamed one is gone with it), remove the
   * named temp file. Safe in any state, any number of times; keeps a committed output.
   */
  discard(): void {
    if (this.state === "committed" || this.state === "discarded") return;
    if (!this.unnamed) unlinkQuietly(this.tempPath);
    liveTempFiles.delete(this.tempPath);
    this.state = "discarded";
    this.failure ??= new NetsortError(`output ${this.path}: discarded`);
    // A write may still run on the thread pool with this descriptor: close only
    // after it ends, or the number could be reused by another open meanwhile.
    const fd = this.fd;
    const pending = [this.writing, this.writeback].filter((p) => p !== null);
    const close = () => {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    };
    if (pending.length === 0) close();
    else void Promise.allSettled(pending).then(close);
  }
}
