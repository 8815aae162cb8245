/**
 * Durable output: records go to a temporary file beside the output, which is
 * fsynced, and renamed into place only when the whole mesh agrees (commit). The
 * output path never holds a partial file; a failed run removes the temp file.
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { libc } from "../libc.ts";
import { writebackBytes } from "../limits.ts";

/** sync_file_range flag: start writing the dirty pages of the range, do not wait. */
const SYNC_FILE_RANGE_WRITE = 2;

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOSPC") return "no space left on device";
  if (code === "EDQUOT") return "disk quota exceeded";
  if (code === "EFBIG") return "file too large";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOENT") return "directory does not exist";
  if (code === "EROFS") return "read-only file system";
  return code ?? String(error);
}

/** Temp files of live writers, removed on a signal (see job.ts). */
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

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A peer killed with SIGKILL cannot remove its temp file. The next run for the
 * same output removes temp files of that output whose process is gone (on this
 * machine: the pid is in the name, and the file sits beside the output).
 */
function removeStaleTempFiles(dir: string, base: string): void {
  const prefix = `.${base}.netsort-`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    const pid = Number(name.slice(prefix.length, -".tmp".length));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // someone else removed it
    }
  }
}

export class DurableWriter {
  readonly tempPath: string;
  private fd: number;
  private state: "open" | "prepared" | "committed" | "discarded" = "open";
  bytes = 0;
  /** Output bytes the kernel was asked to start writing to disk (0 where that cannot be asked). */
  writebackBytes = 0;
  /** Where the next writeback request starts. */
  private writebackFromBytes = 0;
  /** The written file's identity (device, inode), known once it is prepared. */
  private identity: { dev: number; ino: number } | null = null;

  /** Opens the temp file now, so a missing or read-only directory is found before data moves (exit 2). */
  constructor(readonly path: string) {
    const dir = dirname(path);
    this.tempPath = join(dir, `.${basename(path)}.netsort-${process.pid}.tmp`);
    try {
      if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) {
        throw new UsageError(`output ${path}: is a directory`);
      }
      this.fd = openSync(this.tempPath, "w", 0o644);
      removeStaleTempFiles(dir, basename(path));
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`output ${path}: cannot write in ${dir} (${reasonOf(error)})`);
    }
    liveTempFiles.add(this.tempPath);
  }

  /** Append bytes; a full disk is a run-time failure (exit 1). */
  write(buf: Uint8Array): void {
    assert(this.state === "open", "write before prepare");
    let offset = 0;
    try {
      while (offset < buf.length) offset += writeSync(this.fd, buf, offset, buf.length - offset);
    } catch (error) {
      throw new NetsortError(
        `output ${this.path}: write failed after ${this.bytes + offset} bytes (${reasonOf(error)})`,
      );
    }
    this.bytes += buf.length;
    if (this.bytes - this.writebackFromBytes >= writebackBytes) this.startWriteback();
  }

  /**
   * Measured, 4 peers x 256 MiB on the project VM: without this, every peer's
   * fsync waited 0.4-0.5 s at the end with both cores idle (iowait 2.0).
   * Failure is harmless: fsync in prepare() still writes everything.
   */
  private startWriteback(): void {
    const c = libc();
    const from = this.writebackFromBytes;
    this.writebackFromBytes = this.bytes;
    if (c === null) return;
    try {
      if (c.syncFileRange(this.fd, from, this.bytes - from, SYNC_FILE_RANGE_WRITE) === 0) {
        this.writebackBytes += this.bytes - from;
      }
    } catch {
      // no sync_file_range here: prepare()'s fsync does all the work
    }
  }

  /** Flush to disk under the temporary name. */
  prepare(): void {
    assert(this.state === "open", "prepare once");
    try {
      fsyncSync(this.fd);
      const stat = fstatSync(this.fd);
      this.identity = { dev: stat.dev, ino: stat.ino };
      closeSync(this.fd);
    } catch (error) {
      throw new NetsortError(`output ${this.path}: fsync failed (${reasonOf(error)})`);
    }
    this.state = "prepared";
  }

  /** Rename into place and make the rename durable. */
  commit(): void {
    assert(this.state === "prepared", "commit after prepare");
    try {
      renameSync(this.tempPath, this.path);
    } catch (error) {
      throw new NetsortError(`output ${this.path}: rename failed (${reasonOf(error)})`);
    }
    liveTempFiles.delete(this.tempPath);
    this.state = "committed";
    try {
      const dirFd = openSync(dirname(this.path), "r");
      fsyncSync(dirFd);
      closeSync(dirFd);
    } catch {
      // Some filesystems refuse fsync on a directory; the rename itself is done.
    }
  }

  /** After commit: the output path still holds the file this writer wrote (nobody replaced it). */
  isInPlace(): boolean {
    assert(this.state === "committed" && this.identity !== null, "in place is asked after commit");
    const stat = statSync(this.path, { throwIfNoEntry: false });
    return stat !== undefined && stat.dev === this.identity.dev && stat.ino === this.identity.ino;
  }

  /**
   * Remove what this run wrote: the temp file, or, after commit, the output if
   * it is still ours (a failed run leaves no output of its own behind). Safe to
   * call in any state, any number of times.
   */
  discard(): void {
    if (this.state === "discarded") return;
    if (this.state === "committed") {
      if (this.isInPlace()) {
        try {
          unlinkSync(this.path);
        } catch {
          // gone already
        }
      }
      this.state = "discarded";
      return;
    }
    if (this.state === "open") {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
    try {
      unlinkSync(this.tempPath);
    } catch {
      // already gone
    }
    liveTempFiles.delete(this.tempPath);
    this.state = "discarded";
  }
}
