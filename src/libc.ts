/**
 * The few libc calls netsort makes through bun:ffi, loaded once. Linux only:
 * everywhere else (or when libc cannot be loaded) `libc()` is null and every
 * caller falls back to doing nothing, because each call only changes how fast
 * memory or the disk is, never what a buffer or file holds.
 */
import { dlopen } from "bun:ffi";

const SC_PAGESIZE = 30; // Linux value of _SC_PAGESIZE

export interface Libc {
  madvise(address: number, length: number, advice: number): number;
  syncFileRange(fd: number, offset: number, length: number, flags: number): number;
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
        sync_file_range: { args: ["i32", "i64", "i64", "u32"], returns: "i32" },
      });
      const page = Number(lib.symbols.sysconf(SC_PAGESIZE));
      // A page size we cannot trust makes every aligned span wrong: stay a no-op.
      if (!Number.isInteger(page) || page < 4096 || (page & (page - 1)) !== 0) return null;
      return {
        madvise: (address, length, advice) => lib.symbols.madvise(address, length, advice),
        syncFileRange: (fd, offset, length, flags) => lib.symbols.sync_file_range(fd, offset, length, flags),
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
