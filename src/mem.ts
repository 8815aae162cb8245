/**
 * Advice to the kernel about big buffers, shared by the sort, the reader and the
 * writer. Linux only, through bun:ffi and libc's madvise; everywhere else (or when
 * libc cannot be loaded, or a call fails) each helper is a silent no-op, because
 * both only change how fast memory is, never what it holds for the caller's
 * purposes (giveBack's zeroing is the documented exception below).
 *
 * Why it matters here (docs/performance.md, "The machine"): first-touching fresh
 * memory in this VM costs about 2.6 ms per MB with 4 KiB pages and 0.15-0.75 ms
 * per MB with 2 MiB pages, and the page cache the output is written into needs
 * fresh frames too unless memory the process is done with is handed back first.
 * Measured here (tests/mem.test.ts has none of these numbers; they are the VM's):
 * touching 256 MiB of fresh memory costs ~0.45 s of system time even with huge
 * pages; the same memory given back and touched again within ~1 s costs ~0.02 s,
 * and after ~4 s it costs 0.45 s again (the host takes free guest frames back).
 * So memory handed back pays off only when something reuses it soon.
 */
import { ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { libc } from "./libc.ts";

/** Transparent huge pages are 2 MiB on x86-64 and on arm64 with 4 KiB base pages. */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

const MADV_DONTNEED = 4;
const MADV_HUGEPAGE = 14;
/** A buffer smaller than this gets no huge-page advice: the aligned interior would be empty or tiny. */
const minHugeAdviceBytes = 2 * HUGE_PAGE_BYTES;

/** The base page size the helpers align to (4096 when it cannot be asked). */
export function pageBytes(): number {
  return libc()?.pageBytes ?? 4096;
}

/** The start address of buf's bytes, or null when it cannot be known (no bun:ffi, empty view). */
export function addressOf(buf: Uint8Array): number | null {
  if (buf.length === 0) return null;
  try {
    return ptr(buf);
  } catch {
    return null;
  }
}

/**
 * madvise(advice) over the part of buf that starts and ends on multiples
 * of `align`; returns the bytes advised (0 when none, or on any failure).
 */
function adviseAligned(buf: Uint8Array, align: number, advice: number): number {
  const c = libc();
  if (c === null) return 0;
  const address = addressOf(buf);
  if (address === null) return 0;
  const start = Math.ceil(address / align) * align;
  const end = Math.floor((address + buf.length) / align) * align;
  if (end <= start) return 0;
  try {
    return c.madvise(start, end - start, advice) === 0 ? end - start : 0;
  } catch {
    return 0;
  }
}

/**
 * Ask for transparent huge pages on the 2 MiB-aligned interior of buf (THP is in
 * "madvise" mode on the project machine). Call before first touching it. Returns
 * the bytes advised (0: not done; the buffer then just uses normal pages).
 */
export function adviseHugePages(buf: Uint8Array): number {
  if (buf.length < minHugeAdviceBytes) return 0;
  return adviseAligned(buf, HUGE_PAGE_BYTES, MADV_HUGEPAGE);
}

/**
 * A zeroed buffer of `bytes` whose first byte sits on a huge-page boundary, with
 * huge pages asked for over all of it (Linux): first touching it then costs one
 * fault per 2 MiB instead of 512, about 2-3x less kernel time here. For a buffer
 * allocated once and filled soon (the sort's run buffers, read and batch pools).
 * Its last huge page is resident whole once touched, so below 2 MiB (and where
 * the advice cannot be given) this is a plain buffer. Reserves up to 4 MiB more
 * address space, never touched.
 */
export function hugeBuffer(bytes: number): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`hugeBuffer: ${bytes} bytes`);
  if (bytes < HUGE_PAGE_BYTES || libc() === null) return new Uint8Array(bytes);
  const spanBytes = Math.ceil(bytes / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
  const raw = new Uint8Array(spanBytes + HUGE_PAGE_BYTES);
  const address = addressOf(raw);
  const skip = address === null ? 0 : (HUGE_PAGE_BYTES - (address % HUGE_PAGE_BYTES)) % HUGE_PAGE_BYTES;
  adviseAligned(raw.subarray(skip, skip + spanBytes), HUGE_PAGE_BYTES, MADV_HUGEPAGE);
  return raw.subarray(skip, skip + bytes);
}

/**
 * Hand the page-aligned interior of buf back to the kernel (MADV_DONTNEED) when
 * its contents are no longer needed, so its frames can serve the page cache or the
 * next buffer instead of fresh ones. The buffer stays valid and usable: on Linux
 * the interior pages of anonymous memory (every ArrayBuffer Bun allocates) read as
 * zero afterwards and fault back in when touched; the bytes before the first and
 * after the last whole page keep their contents. Do not use on views of mapped
 * files. Returns the bytes given back (0 when nothing was done).
 *
 * With huge pages, only whole 2 MiB pages are freed at once: a span that cuts one
 * leaves it to the kernel's deferred split, so give back 2 MiB-aligned spans.
 */
export function giveBack(buf: Uint8Array): number {
  const c = libc();
  if (c === null) return 0;
  return adviseAligned(buf, c.pageBytes, MADV_DONTNEED);
}

/**
 * This process's peak resident memory. On Linux, VmHWM from /proc/self/status:
 * getrusage's maxrss (process.resourceUsage) carries over the peak of the
 * process that started this one (a large test runner or bench made a small peer
 * look 2x its size); VmHWM starts afresh with each program. Elsewhere, maxrss.
 */
export function peakRssBytes(): number {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    if (hwm !== null) return Number(hwm[1]) * 1024;
  } catch {
    // no /proc here
  }
  return process.resourceUsage().maxRSS * 1024;
}
