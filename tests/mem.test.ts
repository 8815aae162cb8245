import { describe, expect, test } from "bun:test";
import {
  addressOf,
  adviseHugePages,
  giveBack,
  HUGE_PAGE_BYTES,
  hugeBuffer,
  pageBytes,
  peakRssBytes,
} from "../src/mem.ts";

/** Whether this machine takes the advice at all (Linux with libc); elsewhere every helper is a no-op. */
const linux = process.platform === "linux";

describe("giveBack", () => {
  test("zeroes exactly the page-aligned interior and keeps the buffer usable", () => {
    const page = pageBytes();
    const buf = new Uint8Array(16 * page + 123).subarray(77); // an unaligned view
    buf.fill(0xab);
    const given = giveBack(buf);
    const address = addressOf(buf);
    expect(address).not.toBeNull();
    const start = Math.ceil(address! / page) * page - address!;
    const end = Math.floor((address! + buf.length) / page) * page - address!;
    if (linux) expect(given).toBe(end - start);
    else expect(given).toBe(0);
    expect(given % page).toBe(0);
    // Independent check of every byte: zero inside the given span, untouched outside.
    for (let i = 0; i < buf.length; i++) {
      const inside = given > 0 && i >= start && i < end;
      if (buf[i] !== (inside ? 0 : 0xab)) throw new Error(`byte ${i}: ${buf[i]}`);
    }
    // Usable afterwards: writes stick, and it can be given back again.
    buf.fill(7);
    expect(buf.every((b) => b === 7)).toBe(true);
    giveBack(buf);
    buf[start + 5] = 9;
    expect(buf[start + 5]).toBe(9);
  });

  test("buffers with no whole page, empty views and odd offsets are a silent no-op", () => {
    expect(giveBack(new Uint8Array(0))).toBe(0);
    expect(giveBack(new Uint8Array(100))).toBe(0);
    const buf = new Uint8Array(3 * pageBytes()).fill(1);
    const sliver = buf.subarray(pageBytes() - 10, pageBytes() + 10);
    expect(giveBack(sliver)).toBe(0);
    expect(sliver.every((b) => b === 1)).toBe(true);
    expect(giveBack(new Uint8Array(new ArrayBuffer(0)))).toBe(0);
  });

  test("whole huge pages given back read as zero and fault in again when written", () => {
    const buf = new Uint8Array(4 * HUGE_PAGE_BYTES);
    adviseHugePages(buf);
    buf.fill(3);
    const given = giveBack(buf);
    if (linux) expect(given).toBeGreaterThanOrEqual(3 * HUGE_PAGE_BYTES);
    let nonZeroPages = 0;
    for (let i = 0; i < buf.length; i += 4096) if (buf[i] !== 0) nonZeroPages++;
    // Only the unaligned head and tail (less than a page each) may keep the 3s.
    if (given > 0) expect(nonZeroPages).toBeLessThanOrEqual(2);
    const before = process.resourceUsage().minorPageFault;
    buf.fill(5);
    expect(process.resourceUsage().minorPageFault).toBeGreaterThanOrEqual(before);
    expect(buf[0] + buf[buf.length >>> 1] + buf[buf.length - 1]).toBe(15);
  });
});

describe("adviseHugePages", () => {
  test("advises only a buffer big enough to hold whole huge pages, never throws", () => {
    expect(adviseHugePages(new Uint8Array(0))).toBe(0);
    expect(adviseHugePages(new Uint8Array(HUGE_PAGE_BYTES))).toBe(0);
    const big = new Uint8Array(3 * HUGE_PAGE_BYTES);
    const advised = adviseHugePages(big);
    expect(advised % HUGE_PAGE_BYTES).toBe(0);
    if (linux) expect(advised).toBeGreaterThanOrEqual(HUGE_PAGE_BYTES);
    big.fill(1); // still ordinary memory
    expect(big[big.length - 1]).toBe(1);
  });
});

describe("hugeBuffer", () => {
  test("gives exactly the bytes asked for, zeroed, writable, huge-page aligned when large", () => {
    for (const bytes of [0, 1, 4096, HUGE_PAGE_BYTES - 1, HUGE_PAGE_BYTES, 3 * HUGE_PAGE_BYTES + 12_345]) {
      const buf = hugeBuffer(bytes);
      expect(buf.length).toBe(bytes);
      expect(buf.every((b) => b === 0)).toBe(true);
      buf.fill(0x5c);
      expect(buf.every((b) => b === 0x5c)).toBe(true);
      if (linux && bytes >= HUGE_PAGE_BYTES) expect(addressOf(buf)! % HUGE_PAGE_BYTES).toBe(0);
    }
  });

  test("large buffers are backed by huge pages (Linux with THP)", () => {
    const thpMode = (() => {
      try {
        return require("node:fs").readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8");
      } catch {
        return "";
      }
    })();
    if (!linux || thpMode.includes("[never]")) return;
    const buf = hugeBuffer(8 * HUGE_PAGE_BYTES);
    const before = process.resourceUsage().minorPageFault;
    for (let i = 0; i < buf.length; i += 4096) buf[i] = 1;
    // 4 KiB pages would fault 4096 times; huge pages about 8 (a few more if the
    // kernel falls back for some).
    expect(process.resourceUsage().minorPageFault - before).toBeLessThan(1024);
  });

  test("rejects negative and fractional sizes", () => {
    expect(() => hugeBuffer(-1)).toThrow(RangeError);
    expect(() => hugeBuffer(1.5)).toThrow(RangeError);
  });
});

describe("peakRssBytes", () => {
  test("counts this process's own peak: touching 64 MiB more raises it by about that much", () => {
    const before = peakRssBytes();
    const touched = new Uint8Array(64 * 1024 * 1024);
    for (let i = 0; i < touched.length; i += 4096) touched[i] = 1;
    const after = peakRssBytes();
    expect(before).toBeGreaterThan(0);
    expect(after - before).toBeGreaterThan(32 * 1024 * 1024);
    expect(touched[4096]).toBe(1);
  });
});
