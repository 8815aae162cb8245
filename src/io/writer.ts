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
 *
 * Where the file system takes it, the file is opened with O_DIRECT (direct
 * mode): the data goes from two aligned staging buffers to the device without
 * the page cache, which on the project VM costs ~10x less system CPU (dd of
 * 1 GiB: 0.17-0.24 s against 2.2-2.5 s, same wall time; the writer's own
 * figures are in docs/performance.md). write() copies into one buffer while
 * the other is written, so the sort overlaps the disk. Elsewhere (no O_DIRECT
 * on this platform, a file system that refuses it) the page cache is used as
 * before (buffered mode).
 */
import {
  closeSync,
  constants,
  fdatasync,
  fstatSync,
  fsync,
  fsyncSync,
  ftruncate,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  write,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { AT_FDCWD, AT_SYMLINK_FOLLOW, libc } from "../libc.ts";
import { directBufferBytes, writebackBytes, writeChunkBytes } from "../limits.ts";
import { log } from "../log.ts";
import { addressOf, hugeBuffer } from "../mem.ts";
import { fileErrorReason, O_TMPFILE, removeStaleFiles } from "./files.ts";

const O_WRONLY = 1;
/**
 * open(2)'s O_DIRECT where Node knows it for this platform (Linux: 0o40000 on
 * x86-64, 0o200000 on arm64); undefined elsewhere, and direct mode stays off.
 */
const O_DIRECT: number | undefined = (constants as { O_DIRECT?: number }).O_DIRECT;
/**
 * Direct mode: the memory address, file offset and length of every write are
 * multiples of this (the largest logical block size Linux devices use; 512 is
 * enough on most).
 */
const directAlignBytes = 4096;
assert(directBufferBytes % directAlignBytes === 0, "directBufferBytes is a multiple of 4096");

/** A positional write on the thread pool (fs.write): the bytes the kernel took. Replaceable in tests. */
export type PositionalWrite = (
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number | null,
) => Promise<number>;

/** A Node-style error with a code, for fileErrorReason. */
function codeError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

/** fs.write on the thread pool (at `position`, or the file position when null); resolves with the bytes the kernel took. */
const writeAsync: PositionalWrite = (fd, buf, offset, length, position) =>
  new Promise((resolve, reject) =>
    write(fd, buf, offset, length, position, (error, n) => (error ? reject(error) : resolve(n))),
  );

function truncateAsync(fd: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) =>
    ftruncate(fd, bytes, (error) => (error ? reject(error) : resolve())),
  );
}

function roundUpToAlign(bytes: number): number {
  return Math.ceil(bytes / directAlignBytes) * directAlignBytes;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/**
 * The two staging buffers of direct mode, each starting on a multiple of
 * directAlignBytes (on huge pages where possible: 2 faults per buffer instead of
 * 1024), or null where an address cannot be known (no bun:ffi).
 */
function stagingBuffers(): [Uint8Array, Uint8Array] | null {
  const bytes = 2 * directBufferBytes;
  let area = hugeBuffer(bytes);
  const address = addressOf(area);
  if (address === null) return null;
  if (address % directAlignBytes !== 0) {
    const raw = new Uint8Array(bytes + directAlignBytes);
    const rawAddress = addressOf(raw);
    if (rawAddress === null) return null;
    const skip = (directAlignBytes - (rawAddress % directAlignBytes)) % directAlignBytes;
    area = raw.subarray(skip, skip + bytes);
  }
  return [area.subarray(0, directBufferBytes), area.subarray(directBufferBytes)];
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

/** A descriptor, and whether it was opened with O_DIRECT. */
interface Opened {
  fd: number;
  direct: boolean;
}

/**
 * open(2) with O_DIRECT added when `direct`; where that fails with EINVAL (a
 * file system without direct I/O, such as ramfs), open again without it.
 */
function openMaybeDirect(path: string, flags: number, direct: boolean): Opened {
  if (direct && O_DIRECT !== undefined) {
    try {
      return { fd: openSync(path, flags | O_DIRECT, 0o644), direct: true };
    } catch (error) {
      if (errorCode(error) !== "EINVAL") throw error;
    }
  }
  return { fd: openSync(path, flags, 0o644), direct: false };
}

/**
 * An unnamed file in `dir`, or null where the file system or kernel has no
 * O_TMPFILE (or linkat cannot reach it through /proc): the caller falls back to
 * a named temp file. Other errors (missing directory, read-only) are thrown.
 */
function openUnnamed(dir: string, direct: boolean): Opened | null {
  if (process.platform !== "linux" || libc() === null) return null;
  let opened: Opened;
  try {
    opened = openMaybeDirect(dir, O_TMPFILE | O_WRONLY, direct);
  } catch (error) {
    const code = errorCode(error);
    // EOPNOTSUPP: this file system has no O_TMPFILE; EISDIR/EINVAL: a kernel without it.
    if (code === "EOPNOTSUPP" || code === "EISDIR" || code === "EINVAL") return null;
    throw error;
  }
  try {
    // commit links /proc/self/fd/<fd>: without /proc it could not, so find that out now.
    statSync(`/proc/self/fd/${opened.fd}`);
    return opened;
  } catch {
    closeSync(opened.fd);
    return null;
  }
}

export interface DurableWriterOptions {
  /** Use an unnamed O_TMPFILE file where possible (default); false forces the named fallback. */
  unnamed?: boolean;
  /** Write with O_DIRECT where the platform and file system take it (default); false forces the page cache. */
  direct?: boolean;
  /** Tests only: what writes the file instead of fs.write on the thread pool. */
  pwrite?: PositionalWrite;
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
  /** Bytes handed to write(): at the end, the file's size exactly. */
  bytes = 0;
  /** Bytes the kernel has taken (file size so far): what a write error reports. */
  private fileBytes = 0;
  private readonly pwrite: PositionalWrite;
  /** A write() call is running (the caller's side: one at a time). */
  private calling = false;
  /** Direct mode's two staging buffers; null in buffered mode. */
  private readonly staging: [Uint8Array, Uint8Array] | null = null;
  /** False once a file system that took O_DIRECT at open refused a direct write: the staging buffers then go through the page cache. */
  private directIO = false;
  /** Direct mode: the staging buffer being filled, the bytes in it, and the file offset it starts at. */
  private filling = 0;
  private fill = 0;
  private stagedBytes = 0;
  /** Direct mode: each staging buffer's write until it ends (then null): the caller waits for it before filling that buffer again. */
  private readonly queued: [Promise<void> | null, Promise<void> | null] = [null, null];
  /** Direct mode: the last staging write queued, until it ends; they run one after the other, never together. */
  private flushing: Promise<void> | null = null;
  /** Bytes written with O_DIRECT: while 0, a refused direct write (EINVAL) switches to the page cache. */
  private directBytes = 0;
  /** Output bytes whose writeback was started early, before prepare() (0 where none was). */
  writebackBytes = 0;
  /** Where the next writeback request starts. */
  private writebackFromBytes = 0;
  /** The one early writeback in flight on the thread pool, if any. */
  private writeback: Promise<void> | null = null;
  /** A buffered write, or prepare's work, on the thread pool (each is awaited, so at most one; discard waits for it). */
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
    this.pwrite = options.pwrite ?? writeAsync;
    const staging = options.direct !== false && O_DIRECT !== undefined ? stagingBuffers() : null;
    let opened: Opened | null = null;
    try {
      if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) {
        throw new UsageError(`output ${path}: is a directory`);
      }
      if (options.unnamed !== false) opened = openUnnamed(dir, staging !== null);
      this.unnamed = opened !== null;
      opened ??= openMaybeDirect(
        this.tempPath,
        constants.O_CREAT | constants.O_TRUNC | O_WRONLY,
        staging !== null,
      );
      removeStaleTempFiles(dir, basename(path));
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`output ${path}: cannot write in ${dir} (${fileErrorReason(error)})`);
    }
    this.fd = opened.fd;
    if (opened.direct) {
      this.staging = staging;
      this.directIO = true;
    } else if (staging !== null) {
      log.debug(`output ${path}: ${dir} takes no O_DIRECT; writing through the page cache`);
    }
    const st = fstatSync(this.fd, { bigint: true });
    this.identity = { dev: st.dev, ino: st.ino };
    if (!this.unnamed) liveTempFiles.add(this.tempPath);
  }

  /** True while the output goes to the device with O_DIRECT (direct mode), false through the page cache. */
  get direct(): boolean {
    return this.directIO;
  }

  /**
   * Append bytes. Resolves when `buf` may be reused. A full disk is a run-time
   * failure (exit 1), reported by this call or a later one, or by prepare().
   *
   * Direct mode: `buf` is copied into a staging buffer; a full one is written
   * on the thread pool while the next call fills the other, so this waits only
   * when both are busy. Buffered mode: `buf` itself is written, in pieces of at
   * most writeChunkBytes, on the thread pool, and this resolves once it is
   * written (measured, 256 MiB in 2 MiB runs: as fast as writeSync or faster;
   * copying to overlap sorting and writing was slower through the page cache on
   * this 2-core machine).
   */
  async write(buf: Uint8Array): Promise<void> {
    assert(this.state === "open", "write before prepare");
    assert(!this.calling, "one write at a time");
    this.throwIfFailed();
    this.calling = true;
    try {
      if (this.staging !== null) await this.stage(this.staging, buf);
      else await this.writeBuffered(buf);
    } finally {
      this.calling = false;
    }
  }

  private async writeBuffered(buf: Uint8Array): Promise<void> {
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
        const n = await this.pwrite(this.fd, buf, offset, piece, null);
        if (n <= 0) throw codeError("the kernel took no bytes");
        offset += n;
        this.fileBytes = this.bytes + offset;
      }
    } catch (error) {
      this.failWrite(error);
    }
  }

  private failWrite(error: unknown): void {
    this.failure ??= new NetsortError(
      `output ${this.path}: write failed after ${this.fileBytes} bytes (${fileErrorReason(error)})`,
    );
  }

  /** Direct mode: copy buf into the staging buffers, queueing each one that fills. */
  private async stage(staging: [Uint8Array, Uint8Array], buf: Uint8Array): Promise<void> {
    for (let offset = 0; offset < buf.length; ) {
      const busy = this.queued[this.filling];
      if (busy !== null) await busy; // both buffers busy: wait for this one's write
      this.throwIfFailed();
      const n = Math.min(directBufferBytes - this.fill, buf.length - offset);
      staging[this.filling].set(buf.subarray(offset, offset + n), this.fill);
      this.fill += n;
      offset += n;
      if (this.fill === directBufferBytes) this.queueWrite(staging, directBufferBytes);
    }
    this.bytes += buf.length;
  }

  /**
   * Queue the buffer being filled (its first `length` bytes) for writing after
   * the one in flight, if any, and fill the other one next.
   */
  private queueWrite(staging: [Uint8Array, Uint8Array], length: number): void {
    const index = this.filling;
    const position = this.stagedBytes;
    const before = this.flushing ?? Promise.resolve();
    const done = before.then(() => this.writeStaged(staging[index], length, position));
    this.queued[index] = done;
    this.flushing = done;
    void done.then(() => {
      if (this.queued[index] === done) this.queued[index] = null;
      if (this.flushing === done) this.flushing = null;
    });
    this.filling = 1 - index;
    this.fill = 0;
    this.stagedBytes += length;
  }

  /**
   * Write a staging buffer's `length` bytes at `position` (padded with what
   * follows in the buffer up to a multiple of directAlignBytes: zeros, which
   * prepare() cuts off). Never rejects: a failure goes to `failure`. A short
   * write continues only from a multiple of directAlignBytes, where O_DIRECT
   * can; on Linux's local file systems a short write is one before ENOSPC or
   * EFBIG, which the next write reports.
   */
  private async writeStaged(buf: Uint8Array, length: number, position: number): Promise<void> {
    for (let done = 0; done < length && this.failure === null; ) {
      const direct = this.directIO;
      const size = (direct ? roundUpToAlign(length) : length) - done;
      let n: number;
      try {
        n = await this.pwrite(this.fd, buf, done, size, position + done);
        if (n <= 0) throw codeError("the kernel took no bytes");
      } catch (error) {
        if (direct && errorCode(error) === "EINVAL" && this.directBytes === 0 && this.reopenBuffered())
          continue;
        this.failWrite(error);
        return;
      }
      done += n;
      this.fileBytes = position + Math.min(done, length);
      if (!direct) continue;
      this.directBytes += n;
      if (n < size && done < length && done % directAlignBytes !== 0) {
        this.failure ??= new NetsortError(
          `output ${this.path}: write failed after ${this.fileBytes} bytes (short direct write: the kernel took ${n} of ${size} bytes at offset ${position + done - n})`,
        );
        return;
      }
    }
  }

  /**
   * A file system that took O_DIRECT at open but refuses direct writes
   * (EINVAL, before any was written): open the same file again without it and
   * go on through the page cache. False when it cannot be opened again.
   */
  private reopenBuffered(): boolean {
    if (this.failure !== null) return false;
    let fd: number;
    try {
      fd = openSync(this.unnamed ? `/proc/self/fd/${this.fd}` : this.tempPath, O_WRONLY);
    } catch {
      return false;
    }
    closeSync(this.fd); // nothing else runs on it: staging writes go one at a time
    this.fd = fd;
    this.directIO = false;
    log.debug(`output ${this.path}: direct writes refused (EINVAL); writing through the page cache`);
    return true;
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

  /**
   * Flush everything to disk (still without its final name). Direct mode: the
   * last staging buffer is written padded with zeros to a multiple of
   * directAlignBytes, then the file is cut to `bytes` exactly.
   */
  async prepare(): Promise<void> {
    assert(this.state === "open", "prepare once");
    assert(!this.calling, "prepare after the last write");
    this.throwIfFailed();
    this.state = "prepared";
    const finishing = this.staging === null ? this.finishBuffered() : this.finishStaged(this.staging);
    this.writing = finishing.catch(() => {}); // discard waits for it before closing
    try {
      await finishing;
    } finally {
      this.writing = null;
    }
  }

  private async finishBuffered(): Promise<void> {
    if (this.writeback !== null) await this.writeback;
    await this.sync();
  }

  private async finishStaged(staging: [Uint8Array, Uint8Array]): Promise<void> {
    if (this.fill > 0) {
      staging[this.filling].fill(0, this.fill, roundUpToAlign(this.fill));
      this.queueWrite(staging, this.fill);
    }
    if (this.flushing !== null) await this.flushing;
    this.throwIfFailed();
    if (this.directBytes > this.bytes) {
      try {
        await truncateAsync(this.fd, this.bytes);
      } catch (error) {
        throw new NetsortError(`output ${this.path}: truncate failed (${fileErrorReason(error)})`);
      }
    }
    await this.sync();
  }

  private async sync(): Promise<void> {
    try {
      await syncAsync(this.fd, false);
    } catch (error) {
      throw new NetsortError(`output ${this.path}: fsync failed (${fileErrorReason(error)})`);
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
    // (Read at close time: a refused direct write may have opened it again.)
    const pending = [this.writing, this.writeback, this.flushing].filter((p) => p !== null);
    const close = () => {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    };
    if (pending.length === 0) close();
    else void Promise.allSettled(pending).then(close);
  }
}
