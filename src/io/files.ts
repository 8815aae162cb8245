/**
 * File-system facts the writer and the spill files share: how an errno reads in
 * a message, the open(2) flag for an unnamed file, and whether the process that
 * left a named temp file behind is gone.
 */
import { constants, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";

/**
 * open(2): an unnamed regular file in the given directory (Linux): the
 * __O_TMPFILE bit (the same everywhere) plus O_DIRECTORY, which is not: 0o200000
 * on x86-64, 0o40000 on arm64 (where 0o200000 is O_DIRECT, so the x86-64 value
 * there asks for a direct, non-directory open and is refused with EINVAL).
 */
export const O_TMPFILE = 0o20000000 | constants.O_DIRECTORY;

/** The words a user reads for a file-system error (its code otherwise). */
export function fileErrorReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOSPC") return "no space left on device";
  if (code === "EDQUOT") return "disk quota exceeded";
  if (code === "EFBIG") return "file too large";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOENT") return "directory does not exist";
  if (code === "ENOTDIR") return "not a directory";
  if (code === "EROFS") return "read-only file system";
  return code ?? String(error);
}

/**
 * Remove the files in `dir` named `<prefix><pid><rest>.tmp` whose process is
 * gone (killed before it could remove them); files of live processes, ours
 * included, stay. A file someone else removed first is no error.
 */
export function removeStaleFiles(dir: string, prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    const pid = Number(/^\d+/.exec(name.slice(prefix.length))?.[0] ?? Number.NaN);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // someone else removed it
    }
  }
}

/** True while `pid` runs (on this machine): its temp files are not stale yet. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
