import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { UsageError } from "../../src/errors.ts";
import { formatRecord, showFile } from "../../src/tools/show.ts";

const RECORD = 100;
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-show-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function randomFile(name: string, bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let o = 0; o < bytes; o += 65_536)
    crypto.getRandomValues(data.subarray(o, Math.min(bytes, o + 65_536)));
  fs.writeFileSync(path.join(dir, name), data);
  return data;
}

/** The expected line, written independently with Buffer's own hex encoding. */
function expectedLine(data: Buffer, r: number, full: boolean): string {
  const o = r * RECORD;
  const key = data.toString("hex", o, o + 10);
  if (full) return `${key}\t${data.toString("hex", o + 10, o + 100)}`;
  return `${key}\t${data.toString("hex", o + 10, o + 20)}...${data.toString("hex", o + 90, o + 100)}`;
}

async function collect(file: string, options: { full?: boolean; limit?: number } = {}) {
  const parts: string[] = [];
  const result = await showFile(path.join(dir, file), { ...options, write: (t) => void parts.push(t) });
  return { text: parts.join(""), result, writes: parts.length };
}

describe("formatRecord", () => {
  test("known bytes", () => {
    const rec = new Uint8Array(RECORD).map((_, i) => i);
    const key = "00010203040506070809";
    expect(formatRecord(rec, 0)).toBe(`${key}\t0a0b0c0d0e0f10111213...5a5b5c5d5e5f60616263`);
    expect(formatRecord(rec, 0, true).split("\t")[1]).toHaveLength(180);
    const shifted = new Uint8Array(2 * RECORD);
    shifted.set(rec, RECORD);
    expect(formatRecord(shifted, RECORD)).toBe(formatRecord(rec, 0));
  });
});

describe("showFile", () => {
  test("every record, in order, in the showsort layout (several read chunks)", async () => {
    const records = 2000;
    const data = randomFile("many", records * RECORD);
    const { text, result, writes } = await collect("many");
    const expected = Array.from({ length: records }, (_, r) => `${expectedLine(data, r, false)}\n`).join("");
    expect(text).toBe(expected);
    expect(result).toEqual({ records, closed: false });
    expect(writes).toBeGreaterThan(1); // streamed, not one big read
  });

  test("--full prints the whole value", async () => {
    const data = randomFile("full", 5 * RECORD);
    const { text } = await collect("full", { full: true });
    const lines = text.trimEnd().split("\n");
    expect(lines).toEqual([0, 1, 2, 3, 4].map((r) => expectedLine(data, r, true)));
  });

  test("--limit stops early", async () => {
    const data = randomFile("limit", 1500 * RECORD);
    const three = await collect("limit", { limit: 3 });
    expect(three.text).toBe([0, 1, 2].map((r) => `${expectedLine(data, r, false)}\n`).join(""));
    expect(three.result.records).toBe(3);
    expect((await collect("limit", { limit: 0 })).text).toBe("");
    const across = await collect("limit", { limit: 1000 });
    expect(across.text.split("\n")[999]).toBe(expectedLine(data, 999, false));
    expect(across.result.records).toBe(1000);
  });

  test("an empty file prints nothing", async () => {
    randomFile("empty", 0);
    const { text, result } = await collect("empty");
    expect(text).toBe("");
    expect(result.records).toBe(0);
  });

  test("a size that is not a multiple of 100: whole records printed, then a usage error", async () => {
    const data = randomFile("ragged", 250);
    const parts: string[] = [];
    const file = path.join(dir, "ragged");
    const run = showFile(file, { write: (t) => void parts.push(t) });
    await expect(run).rejects.toBeInstanceOf(UsageError);
    await expect(showFile(file, { write: () => {} })).rejects.toThrow(`${file} is 250 bytes`);
    expect(parts.join("")).toBe(`${expectedLine(data, 0, false)}\n${expectedLine(data, 1, false)}\n`);
  });

  test("a missing file is a usage error", async () => {
    await expect(showFile(path.join(dir, "nope"), { write: () => {} })).rejects.toBeInstanceOf(UsageError);
  });

  test("a closed reader (EPIPE) ends quietly", async () => {
    randomFile("pipe", 3000 * RECORD);
    let calls = 0;
    const result = await showFile(path.join(dir, "pipe"), {
      write: () => {
        calls++;
        if (calls === 2) throw Object.assign(new Error("write EPIPE"), { code: "EPIPE" });
      },
    });
    expect(result.closed).toBe(true);
    expect(calls).toBe(2);
  });

  test("other write errors are not swallowed", async () => {
    randomFile("err", 10 * RECORD);
    const run = showFile(path.join(dir, "err"), {
      write: () => {
        throw Object.assign(new Error("no space"), { code: "ENOSPC" });
      },
    });
    await expect(run).rejects.toThrow("no space");
  });
});
