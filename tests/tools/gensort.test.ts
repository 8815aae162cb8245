import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { RecordChecksum } from "../../src/tools/checksum.ts";
import { GensortGenerator, type GensortOptions } from "../../src/tools/gensort.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/gensort-1.5");
const MASK_128 = (1n << 128n) - 1n;
const MASK_64 = (1n << 64n) - 1n;

async function fixture(name: string): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(join(FIXTURES, name)).arrayBuffer());
}

type Mode = { ascii: boolean; skew: boolean };
const MODES: Mode[] = [
  { ascii: false, skew: false },
  { ascii: true, skew: false },
  { ascii: false, skew: true },
  { ascii: true, skew: true },
];
const modeName = (m: Mode) => `${m.ascii ? "-a" : "binary"}${m.skew ? " -s" : ""}`;

/** Generate `count` records from `start` with next() calls of random sizes. */
function generate(options: GensortOptions, start: bigint, count: number, batchRecords = 257): Uint8Array {
  const generator = new GensortGenerator({ ...options, start, batchRecords });
  const out = new Uint8Array(count * 100);
  for (let done = 0; done < count; ) {
    const n = Math.min(count - done, 1 + Math.floor(Math.random() * batchRecords));
    out.set(generator.next(n), done * 100);
    done += n;
  }
  return out;
}

// ---------------------------------------------------------------------------
// A slow reference written from docs/gensort-format.md alone, in BigInt.
// ---------------------------------------------------------------------------
const A = 0x2360ed051fc65da44385df649fccf645n;
const C = 0x4a696d47726179524950202020202001n;
const step = (x: bigint) => (A * x + C) & MASK_128;
/** X(n) by squaring the affine map, independent of the code under test. */
function xAt(n: bigint): bigint {
  let [ra, rc, pa, pc] = [1n, 0n, A, C];
  for (let k = n & MASK_128; k > 0n; k >>= 1n) {
    if (k & 1n) [ra, rc] = [(pa * ra) & MASK_128, (pa * rc + pc) & MASK_128];
    [pa, pc] = [(pa * pa) & MASK_128, (pa * pc + pc) & MASK_128];
  }
  return rc;
}
const K = [
  "F0E8E4E2E1D8D4D2D1CC",
  "CAC9C6C5C3B8B4B2B1AC",
  "AAA9A6A5A39C9A999695",
  "938E8D8B87787472716C",
  "6A696665635C5A595655",
  "534E4D4B473C3A393635",
  "332E2D2B271E1D1B170F",
  "C8C4C2C1989492918CE0",
  "170F332E2D2B271E1D1B",
].map((h) => BigInt(`0x${h}`));

function put80(out: Uint8Array, at: number, v: bigint): void {
  for (let i = 0; i < 10; i++) out[at + i] = Number((v >> BigInt(8 * (9 - i))) & 0xffn);
}

const bitLength = (v: bigint) => v.toString(2).length;
function skewIndexRef(n: bigint): number {
  if (n === 0n) return 0;
  if (n <= MASK_64) return n >> 60n !== 0n ? 64 : bitLength(n);
  const hi = n >> 64n;
  return hi >> 60n !== 0n ? 128 : 64 + bitLength(hi);
}

const skewRowCache = new Map<string, Uint8Array>();
function skewRowRef(ascii: boolean, s: number): Uint8Array {
  const key = `${ascii}:${s}`;
  let row = skewRowCache.get(key);
  if (!row) {
    row = referenceRecords({ ascii, skew: false }, BigInt(s), 1).slice(0, 6);
    skewRowCache.set(key, row);
  }
  return row;
}

function referenceRecords(mode: Mode, start: bigint, count: number): Uint8Array {
  const out = new Uint8Array(count * 100);
  const xs: bigint[] = [xAt(start + 1n)];
  for (let i = 1; i < count + 9; i++) xs.push(step(xs[i - 1]));
  for (let r = 0; r < count; r++) {
    const n = (start + BigInt(r)) & MASK_128;
    const x = xs[r];
    const at = r * 100;
    const lo = x & MASK_64;
    if (!mode.ascii) {
      put80(out, at, x >> 48n);
      for (let j = 0; j < 9; j++) put80(out, at + 10 + 10 * j, (xs[r + 1 + j] >> 48n) ^ K[j]);
    } else {
      const hi = x >> 64n;
      for (let i = 0; i < 8; i++) out[at + i] = 32 + Number((hi / 95n ** BigInt(i)) % 95n);
      out[at + 8] = 32 + Number(lo % 95n);
      out[at + 9] = 32 + Number((lo / 95n) % 95n);
      const text = `  ${n.toString(16).toUpperCase().padStart(32, "0")}  `;
      for (let i = 0; i < 36; i++) out[at + 10 + i] = text.charCodeAt(i);
      for (let d = 0; d < 13; d++) {
        const nibble = Number((lo >> BigInt(48 - 4 * d)) & 0xfn)
          .toString(16)
          .toUpperCase();
        for (let c = 0; c < 4; c++) out[at + 46 + 4 * d + c] = nibble.charCodeAt(0);
      }
      out[at + 98] = 13;
      out[at + 99] = 10;
    }
    if (mode.skew) {
      const row = skewRowRef(mode.ascii, skewIndexRef(n));
      if (mode.ascii) {
        let k = Number((lo >> 32n) & 7n);
        if (k > 6) k = 0;
        for (let i = 0; i < k; i++) out[at + i] = row[i];
      } else {
        let b = Number((lo >> 32n) & 63n);
        if (b > 48) b = 0;
        for (let i = 0; i < 6 && b > 0; i++, b -= 8) {
          const mask = b >= 8 ? 0xff : (0xff << (8 - b)) & 0xff; // bits taken from the row
          out[at + i] = (row[i] & mask) | (out[at + i] & ~mask & 0xff);
        }
      }
    }
  }
  return out;
}

function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length).toBe(expected.length);
  const at = actual.findIndex((v, i) => v !== expected[i]);
  if (at >= 0) throw new Error(`${what}: first difference at byte ${at} (record ${Math.floor(at / 100)})`);
}

describe("byte-identical to gensort 1.5's files", () => {
  const files: [Mode, string][] = [
    [MODES[0], "f1000.bin"],
    [MODES[1], "a1000.txt"],
    [MODES[2], "s1000.bin"],
    [MODES[3], "as1000.txt"],
  ];
  for (const [mode, file] of files) {
    test(`${modeName(mode)} -b0 1000 = ${file}, also as -b0 500 + -b500 500`, async () => {
      const expected = await fixture(file);
      expectSameBytes(generate(mode, 0n, 1000), expected, file);
      expectSameBytes(generate(mode, 0n, 1000, 1000), expected, `${file} in one batch`);
      expectSameBytes(generate(mode, 0n, 500), expected.subarray(0, 50_000), `${file} first half`);
      expectSameBytes(generate(mode, 500n, 500), expected.subarray(50_000), `${file} -b500`);
      for (const start of [1, 9, 10, 11, 123, 990]) {
        const n = 1000 - start;
        expectSameBytes(
          generate(mode, BigInt(start), n),
          expected.subarray(start * 100),
          `${file} -b${start}`,
        );
      }
    });
  }

  test("the reference in this test agrees with the files too", async () => {
    expectSameBytes(referenceRecords(MODES[0], 0n, 1000), await fixture("f1000.bin"), "reference f1000");
    expectSameBytes(referenceRecords(MODES[1], 0n, 1000), await fixture("a1000.txt"), "reference a1000");
    expectSameBytes(referenceRecords(MODES[2], 0n, 1000), await fixture("s1000.bin"), "reference s1000");
    expectSameBytes(referenceRecords(MODES[3], 0n, 1000), await fixture("as1000.txt"), "reference as1000");
  });
});

describe("any start record", () => {
  const starts = [
    2n ** 32n - 1n,
    2n ** 60n - 3n,
    2n ** 60n,
    2n ** 64n - 3n,
    2n ** 64n,
    2n ** 64n + 2n ** 60n,
    2n ** 124n - 2n,
    2n ** 124n,
    2n ** 127n + 12345n,
    MASK_128 - 5n, // wraps to record 0 after 6 records, as gensort's counter does
  ];
  for (const mode of MODES) {
    test(`${modeName(mode)}: matches the docs/gensort-format.md reference at large start records`, () => {
      for (const start of starts) {
        expectSameBytes(generate(mode, start, 25, 7), referenceRecords(mode, start, 25), `-b${start}`);
      }
      const random = crypto.getRandomValues(new Uint32Array(4)).reduce((a, w) => (a << 32n) | BigInt(w), 0n);
      expectSameBytes(generate(mode, random, 25, 7), referenceRecords(mode, random, 25), `-b${random}`);
    });
  }

  test("skew table rows are the ones printed in gensort.c", () => {
    // Skew_binary[23], [64], [128] and Skew_ascii[23], [64], [128] from gensort.c.
    expect([...skewRowRef(false, 23)]).toEqual([0x46, 0x4f, 0xb8, 0x4a, 0xb8, 0x48]);
    expect([...skewRowRef(false, 64)]).toEqual([0x33, 0xd5, 0xb5, 0xb1, 0x5c, 0x70]);
    expect([...skewRowRef(false, 128)]).toEqual([0xe1, 0xdc, 0x46, 0xb6, 0x45, 0xc4]);
    expect(new TextDecoder().decode(skewRowRef(true, 23))).toBe("vi@>8j");
    expect(new TextDecoder().decode(skewRowRef(true, 64))).toBe("ix^T<S");
    expect(new TextDecoder().decode(skewRowRef(true, 128))).toBe("12NSK|");
  });

  test("independently generated ranges concatenate to one run (random -b ranges)", () => {
    for (const mode of MODES) {
      for (let trial = 0; trial < 4; trial++) {
        const start = trial === 0 ? 0n : BigInt(Math.floor(Math.random() * 1e9)) << BigInt(trial * 30);
        const total = 300 + Math.floor(Math.random() * 300);
        const whole = generate(mode, start, total, 64);
        const parts: Uint8Array[] = [];
        for (let done = 0; done < total; ) {
          const n = Math.min(total - done, 1 + Math.floor(Math.random() * 80));
          parts.push(generate(mode, start + BigInt(done), n, 1 + Math.floor(Math.random() * 40)));
          done += n;
        }
        expectSameBytes(Buffer.concat(parts), whole, `${modeName(mode)} from ${start}`);
      }
    }
  });

  test("position counts records and wraps at 2^128", () => {
    const g = new GensortGenerator({ start: MASK_128 - 1n, batchRecords: 10 });
    g.next(5);
    expect(g.position).toBe(3n);
  });

  test("rejects bad options", () => {
    expect(() => new GensortGenerator({ start: 1n << 128n })).toThrow();
    expect(() => new GensortGenerator({ start: -1n })).toThrow();
    expect(() => new GensortGenerator({ batchRecords: 10 }).next(11)).toThrow();
    expect(() => new GensortGenerator({ batchRecords: 10 }).next(0)).toThrow();
  });
});

function checksumOf(records: Uint8Array): string {
  const sum = new RecordChecksum();
  sum.add(records);
  return sum.toHex();
}

describe("-c checksums (outputs.txt)", () => {
  test("every 'gensort -c' line with up to 100,000 records", async () => {
    const outputs = await Bun.file(join(FIXTURES, "outputs.txt")).text();
    const lines = [...outputs.matchAll(/^gensort -c ((?:-[a-z]\S* )*)(\d+) -> ([0-9a-f]+)$/gm)];
    expect(lines.length).toBeGreaterThanOrEqual(7);
    let checked = 0;
    for (const [, flags, count, hex] of lines) {
      if (Number(count) > 100_000) continue; // the 10M-record lines take seconds: checked by hand, see report
      const mode = { ascii: flags.includes("-a "), skew: flags.includes("-s ") };
      const start = BigInt(/-b(\d+)/.exec(flags)?.[1] ?? "0");
      expect(checksumOf(generate(mode, start, Number(count), 40_000))).toBe(hex);
      checked++;
    }
    expect(checked).toBe(7);
  });

  test("checksums add up across any partition of a range", () => {
    for (const mode of MODES) {
      const start = BigInt(Math.floor(Math.random() * 1e12)) << 40n;
      const total = 2000;
      const whole = new RecordChecksum();
      whole.add(generate(mode, start, total, 500));
      const merged = new RecordChecksum();
      for (let done = 0; done < total; ) {
        const n = Math.min(total - done, 1 + Math.floor(Math.random() * 400));
        const part = new RecordChecksum();
        part.add(generate(mode, start + BigInt(done), n, 500));
        merged.merge(part);
        done += n;
      }
      expect(merged.records).toBe(total);
      expect(merged.toHex()).toBe(whole.toHex());
    }
  });
});

/** Records in an `xxd -c 20` dump: 5 lines per record. */
function parseXxd(lines: string[]): Uint8Array {
  const hex = lines.map((l) => l.slice(10, 59).replaceAll(" ", "")).join("");
  return Uint8Array.fromHex(hex);
}

describe("gensort -c -b0 100000 (c100k)", () => {
  test("checksum, md5, first and last records, sorted copy", async () => {
    const records = generate(MODES[0], 0n, 100_000, 40_000);
    expect(checksumOf(records)).toBe("c3068574c6ff");
    expect(new Bun.CryptoHasher("md5").update(records).digest("hex")).toBe(
      "9bb3b075ca0f36103c8155fb1686ec41",
    );

    const text = await Bun.file(join(FIXTURES, "c100k.records.txt")).text();
    const sections = text.split(/^c100k.*:$/m).map((s) =>
      s
        .trim()
        .split("\n")
        .filter((l) => /^[0-9a-f]{8}:/.test(l)),
    );
    const [, first3, last, sortedFirst, sortedLast] = sections;
    expectSameBytes(records.subarray(0, 300), parseXxd(first3), "first 3 records");
    expectSameBytes(records.subarray(99_999 * 100), parseXxd(last), "last record");

    const order = Array.from({ length: 100_000 }, (_, i) => i);
    const buf = Buffer.from(records.buffer, records.byteOffset, records.length);
    order.sort((a, b) => buf.compare(buf, b * 100, b * 100 + 10, a * 100, a * 100 + 10) || a - b);
    const sorted = new Uint8Array(records.length);
    order.forEach((from, to) => {
      sorted.set(records.subarray(from * 100, from * 100 + 100), to * 100);
    });
    expect(new Bun.CryptoHasher("md5").update(sorted).digest("hex")).toBe("9b2ad0e20cd8737ee13e54c426c0d83b");
    expectSameBytes(sorted.subarray(0, 100), parseXxd(sortedFirst), "sorted first record");
    expectSameBytes(sorted.subarray(99_999 * 100), parseXxd(sortedLast), "sorted last record");
  }, 20_000);
});
