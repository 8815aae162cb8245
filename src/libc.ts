/**
 * The few libc calls netsort makes through bun:ffi, loaded once. Linux only:
 * everywhere else (or when libc cannot be loaded) `libc()` is null and every
 * caller falls back: madvise only changes how fast memory is, and without
 * linkat the writer uses a named temp file instead of an unnamed one
 * (src/io/writer.ts).
 */
import { dlopen, read } from "bun:ffi";
import { constants } from "node:os";

const SC_PAGESIZE = 30; // Linux value of _SC_PAGESIZE
/** linkat: "the current directory" as a directory descriptor (Linux value). */
export const AT_FDCWD = -100;
/** linkat: follow a symlink given as the source (/proc/self/fd/N is one). */
export const AT_SYMLINK_FOLLOW = 0x400;

/** errno numbers to names ("EEXIST"), for messages. */
const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name]),
);

/** A NUL-terminated copy of a path, as C expects it. */
function cPath(path: string): Buffer {
  return Buffer.from(`${path}\0`);
}

export interface Libc {
  madvise(address: number, length: number, advice: number): number;
  /**
   * sync_file_range(2): start writeback of a range. It can block when the
   * device's queue is full, so only spill scratch files use it (their writes
   * block the event loop anyway); the output writer uses fdatasync off the loop.
   */
  syncFileRange(fd: number, offset: number, length: number, flags: number): number;
  /** linkat(2): 0, or -1 with the reason in lastErrorCode(). */
  linkat(oldDirFd: number, oldPath: string, newDirFd: number, newPath: string, flags: number): number;
  /** The name of errno ("EEXIST") right after a call that returned -1 (read on the same thread). */
  lastErrorCode(): string;
  /** The base page size, checked to be a power of two >= 4096. */
  pageBytes: number;
}

let loaded: Libc | null | undefined;

function load(): Libc | null {
  if (process.platform !== "linux") return null;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      const lib = dlopen(name, {
        madvise: { args: ["usize", "usize", "i32"], returns: "i32" },
        sysconf: { args: ["i32"], returns: "i64" },
        linkat: { args: ["i32", "ptr", "i32", "ptr", "i32"], returns: "i32" },
        sync_file_range: { args: ["i32", "i64", "i64", "u32"], returns: "i32" },
        __errno_location: { args: [], returns: "ptr" },
      });
      const page = Number(lib.symbols.sysconf(SC_PAGESIZE));
      // A page size we cannot trust makes every aligned span wrong: stay a no-op.
      if (!Number.isInteger(page) || page < 4096 || (page & (page - 1)) !== 0) return null;
      return {
        madvise: (address, length, advice) => lib.symbols.madvise(address, length, advice),
        syncFileRange: (fd, offset, length, flags) => lib.symbols.sync_file_range(fd, offset, length, flags),
        linkat: (oldDirFd, oldPath, newDirFd, newPath, flags) =>
          lib.symbols.linkat(oldDirFd, cPath(oldPath), newDirFd, cPath(newPath), flags),
        lastErrorCode: () => {
          const at = lib.symbols.__errno_location();
          const code = at === null ? -1 : read.i32(at, 0);
          return errnoNames.get(code) ?? `errno ${code}`;
        },
        pageBytes: page,
      };
    } catch {
      // try the next name
    }
  }
  return null;
}

/** libc's calls, or null where they are not available. */
export function libc(): Libc | null {
  if (loaded === undefined) loaded = load();
  return loaded;
}
