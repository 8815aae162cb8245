/**
 * File-system facts the writer and the spill files share: how an errno reads in
 * a message, the open(2) flag for an unnamed file, and whether the process that
 * left a named temp file behind is gone.
 */

/** open(2): an unnamed regular file in the given directory (Linux; O_DIRECTORY included, the same on x86-64 and arm64). */
export const O_TMPFILE = 0o20200000;

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

/** True while `pid` runs (on this machine): its temp files are not stale yet. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
