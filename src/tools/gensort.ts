/**
 * Records byte-identical to Sort Benchmark gensort 1.5 (binary, -a ascii, -s
 * skewed, -a -s), from any start record. The facts used here are written down in
 * docs/gensort-format.md; in short, record n is built from the LCG
 * values X(n+1) .. X(n+10) (binary) or X(n+1) alone (ascii).
 *
 * Binary records: X(m) supplies the key of record m-1 and, xor-ed with constant
 * K_j, bytes 10+10j .. 19+10j of record m-2-j. So the generator walks X(m) once
 * and scatters its 10 bytes into the 10 records it belongs to; the 9 records that
 * are still missing parts at the end of a batch stay in the buffer and move to
 * its front before the next batch. One 128-bit step per record, no allocation.
 */
import { assert } from "../errors.ts";
import { RECORD_BYTES } from "../record.ts";
import { Lcg128, lcgAt, MASK_128 } from "./rand128.ts";

/** Parts of a binary record: its key plus nine 10-byte value parts. */
const PARTS = 10;
/** Records of a batch that are still missing parts when the batch is returned. */
const CARRY_RECORDS = PARTS - 1;
const RECORD_U16 = RECORD_BYTES / 2;
/** Key bytes that a skewed record may take from the skew table. */
const SKEW_BYTES = 6;
/** Skew indexes run 0..128 (about log2 of the record number). */
const SKEW_ROWS = 129;

/** The 80-bit xor constants of value parts 1..9 (gensort.c gen_rec), as bytes. */
const PART_XOR_HEX = [
  "F0E8E4E2E1D8D4D2D1CC",
  "CAC9C6C5C3B8B4B2B1AC",
  "AAA9A6A5A39C9A999695",
  "938E8D8B87787472716C",
  "6A696665635C5A595655",
  "534E4D4B473C3A393635",
  "332E2D2B271E1D1B170F",
  "C8C4C2C1989492918CE0",
  "170F332E2D2B271E1D1B",
];

/** XOR[j * 5 + q]: the little-endian u16 xor-ed into u16 q of part j (part 0, the key, is 0). */
const PART_XOR_U16 = (() => {
  const bytes = new Uint8Array(PARTS * 10);
  PART_XOR_HEX.forEach((hex, i) => {
    bytes.set(Uint8Array.fromHex(hex), (i + 1) * 10);
  });
  return new Uint16Array(bytes.buffer);
})();

export interface GensortOptions {
  /** -a: printable ASCII records ending in CR LF. */
  ascii?: boolean;
  /** -s: skewed keys. */
  skew?: boolean;
  /** -b: number of the first record (0 .. 2^128-1). */
  start?: bigint;
  /** Most records one call of next() may ask for. */
  batchRecords?: number;
}

/** Default batch: 40,000 records = 4 MB, large writes without a large buffer. */
const defaultGensortBatchRecords = 40_000;

/** Generates gensort 1.5 records in batches into one buffer allocated up front. */
export class GensortGenerator {
  readonly ascii: boolean;
  readonly skew: boolean;
  readonly batchRecords: number;
  /** Slots: CARRY_RECORDS scratch slots (used only while priming), then batch + carry slots. */
  private readonly bytes: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly lcg = new Lcg128();
  /** Number of the record whose key the next LCG step finalises, as four u32 words (w3 most significant). */
  private readonly recWords = new Uint32Array(4);
  /** ASCII: the next record's number as 32 uppercase hex digits, read as 16 u16. */
  private readonly recHex = new Uint8Array(32);
  private readonly recHexU16 = new Uint16Array(this.recHex.buffer);
  private readonly skewTable: Uint8Array;
  /** Records returned by the last next(): their carried tail moves to the front first. */
  private returned = 0;
  private nextRecord: bigint;

  constructor(options: GensortOptions = {}) {
    this.ascii = options.ascii === true;
    this.skew = options.skew === true;
    this.batchRecords = options.batchRecords ?? defaultGensortBatchRecords;
    const start = options.start ?? 0n;
    assert(start >= 0n && start <= MASK_128, "gensort: start record must be in [0, 2^128)");
    assert(Number.isSafeInteger(this.batchRecords) && this.batchRecords >= 1, "gensort: batchRecords >= 1");
    const slots = CARRY_RECORDS + this.batchRecords + CARRY_RECORDS;
    this.bytes = new Uint8Array(slots * RECORD_BYTES);
    this.u16 = new Uint16Array(this.bytes.buffer);
    this.skewTable = this.skew ? skewTable(this.ascii) : new Uint8Array(0);
    this.nextRecord = start;
    this.lcg.set(lcgAt(start)); // X(start): the next step gives X(start + 1), record start's own number
    for (let i = 0; i < 4; i++) this.recWords[i] = Number((start >> BigInt(32 * i)) & 0xffffffffn);
    const hex = start.toString(16).toUpperCase().padStart(32, "0");
    for (let i = 0; i < 32; i++) this.recHex[i] = hex.charCodeAt(i);
    // Binary: feed X(start+1) .. X(start+9) so the first 9 records hold all the
    // parts that come from before the first batch; parts aimed at records before
    // `start` land in the scratch slots and are never returned.
    if (!this.ascii) this.scatter(-CARRY_RECORDS, 0);
  }

  /** Number of the next record next() returns. */
  get position(): bigint {
    return this.nextRecord;
  }

  /**
   * The next `records` records (1 <= records <= batchRecords) as a view into the
   * generator's buffer, valid until the next call.
   */
  next(records: number): Uint8Array {
    assert(Number.isInteger(records) && records >= 1 && records <= this.batchRecords, "gensort: batch size");
    const first = CARRY_RECORDS * RECORD_BYTES;
    if (this.ascii) {
      this.fillAscii(records);
    } else {
      if (this.returned > 0) {
        const from = first + this.returned * RECORD_BYTES;
        this.bytes.copyWithin(first, from, from + CARRY_RECORDS * RECORD_BYTES);
      }
      this.scatter(0, records);
    }
    this.returned = records;
    this.nextRecord = (this.nextRecord + BigInt(records)) & MASK_128;
    return this.bytes.subarray(first, first + records * RECORD_BYTES);
  }

  /**
   * Binary records: for k in [from, to), step to the next X and place its 10
   * bytes: the key of the record in slot 9+k and part j of the record in slot
   * 9+k-j (slots counted from the first returned record; slot -9 is the buffer's
   * start). After k = to - 1, slots 0 .. to-1 are complete.
   */
  private scatter(from: number, to: number): void {
    const u16 = this.u16;
    const xor = PART_XOR_U16;
    const lcg = this.lcg;
    const skew = this.skew;
    // u16 index of slot s's first part: (s + 9) * 50.
    for (let k = from; k < to; k++) {
      lcg.step();
      const l2 = lcg.l2;
      const l3 = lcg.l3;
      const l4 = lcg.l4;
      // The top 80 bits as bytes b0..b9, paired little-endian into u16 words.
      const v0 = lcg.l5 | ((l4 >>> 16) << 8);
      const v1 = ((l4 >>> 8) & 0xff) | ((l4 & 0xff) << 8);
      const v2 = (l3 >>> 16) | (((l3 >>> 8) & 0xff) << 8);
      const v3 = (l3 & 0xff) | ((l2 >>> 16) << 8);
      const v4 = ((l2 >>> 8) & 0xff) | ((l2 & 0xff) << 8);
      const keyAt = (k + 2 * CARRY_RECORDS) * RECORD_U16;
      for (let j = 0, at = keyAt, x = 0; j < PARTS; j++, at -= 45, x += 5) {
        u16[at] = v0 ^ xor[x];
        u16[at + 1] = v1 ^ xor[x + 1];
        u16[at + 2] = v2 ^ xor[x + 2];
        u16[at + 3] = v3 ^ xor[x + 3];
        u16[at + 4] = v4 ^ xor[x + 4];
      }
      if (skew) this.skewBinaryKey(keyAt * 2, lcg.l1);
      this.bumpRecord();
    }
  }

  /** -s binary: replace the key's top b bits by the skew row's, b from bits 32..37 of X. */
  private skewBinaryKey(keyByte: number, l1: number): void {
    let bits = (l1 >>> 8) & 0x3f;
    if (bits > 8 * SKEW_BYTES) bits = 0;
    const row = this.skewIndex() * SKEW_BYTES;
    const bytes = this.bytes;
    const table = this.skewTable;
    let i = 0;
    for (; bits >= 8; bits -= 8, i++) bytes[keyByte + i] = table[row + i];
    if (bits > 0) {
      const keep = 0xff >>> bits;
      bytes[keyByte + i] = (table[row + i] & ~keep) | (bytes[keyByte + i] & keep);
    }
  }

  /** ASCII records: each from X(n+1) alone, written as 50 u16. */
  private fillAscii(records: number): void {
    const u16 = this.u16;
    const hex16 = this.recHexU16;
    const lcg = this.lcg;
    const skew = this.skew;
    for (let k = 0; k < records; k++) {
      lcg.step();
      const at = (k + CARRY_RECORDS) * RECORD_U16;
      // Key bytes 0..7 are the 8 low base-95 digits of the upper 64 bits, i.e. of
      // (upper mod 95^8); bytes 8..9 the 2 low digits of the lower 64 bits.
      const upper = mod95pow8(lcg.hiHigh, lcg.hiLow);
      let q4 = Math.floor(upper / P95_4);
      let r4 = upper - q4 * P95_4;
      if (r4 < 0) {
        q4--;
        r4 += P95_4;
      } else if (r4 >= P95_4) {
        q4++;
        r4 -= P95_4;
      }
      writeDigitPairs(u16, at, r4);
      writeDigitPairs(u16, at + 2, q4);
      const loHigh = lcg.loHigh;
      const loLow = lcg.loLow;
      const lower = modSmall(modSmall(loHigh, P95_2) * TWO32_MOD_P95_2 + loLow, P95_2);
      const d9 = Math.floor(lower / 95);
      u16[at + 4] = (32 + lower - d9 * 95) | ((32 + d9) << 8);
      u16[at + 5] = 0x2020; // bytes 10, 11: two spaces
      for (let i = 0; i < 16; i++) u16[at + 6 + i] = hex16[i]; // bytes 12..43: record number
      u16[at + 22] = 0x2020; // bytes 44, 45
      // Bytes 46..97: the 13 nibbles of bits 51..0 of the lower half, each 4 times.
      let f = at + 23;
      for (let shift = 16; shift >= 0; shift -= 4, f += 2) {
        const c = HEX_PAIR[(loHigh >>> shift) & 0xf];
        u16[f] = c;
        u16[f + 1] = c;
      }
      for (let shift = 28; shift >= 0; shift -= 4, f += 2) {
        const c = HEX_PAIR[(loLow >>> shift) & 0xf];
        u16[f] = c;
        u16[f + 1] = c;
      }
      u16[at + 49] = 0x0a0d; // CR LF
      if (skew) this.skewAsciiKey(at * 2, lcg.l1);
      this.bumpRecord();
      this.bumpRecordHex();
    }
  }

  /** -a -s: replace the first k key bytes by the skew row's, k from bits 32..34 of X. */
  private skewAsciiKey(keyByte: number, l1: number): void {
    let count = (l1 >>> 8) & 0x7;
    if (count > SKEW_BYTES) count = 0;
    const row = this.skewIndex() * SKEW_BYTES;
    for (let i = 0; i < count; i++) this.bytes[keyByte + i] = this.skewTable[row + i];
  }

  /**
   * gensort's skew index of the current record number: its bit length, except
   * that a non-zero top nibble of the lower (upper) 64-bit half gives 64 (128).
   */
  private skewIndex(): number {
    const w = this.recWords;
    if (w[3] === 0 && w[2] === 0) {
      if (w[1] >= 0x10000000) return 64;
      if (w[1] !== 0) return 64 - Math.clz32(w[1]);
      return 32 - Math.clz32(w[0]);
    }
    if (w[3] >= 0x10000000) return 128;
    return w[3] !== 0 ? 128 - Math.clz32(w[3]) : 96 - Math.clz32(w[2]);
  }

  /** Record number + 1, mod 2^128. */
  private bumpRecord(): void {
    const w = this.recWords;
    for (let i = 0; i < 4; i++) {
      w[i] = w[i] + 1; // Uint32Array wraps 2^32 to 0
      if (w[i] !== 0) return;
    }
  }

  /** The ASCII hex image of the record number + 1, mod 2^128. */
  private bumpRecordHex(): void {
    const hex = this.recHex;
    for (let i = 31; i >= 0; i--) {
      const c = hex[i];
      if (c === 0x46) {
        hex[i] = 0x30; // 'F' -> '0', carry on
        continue;
      }
      hex[i] = c === 0x39 ? 0x41 : c + 1; // '9' -> 'A'
      return;
    }
  }
}

/** HEX_PAIR[n]: the uppercase hex digit of n twice, as a little-endian u16. */
const HEX_PAIR = Uint16Array.from("0123456789ABCDEF", (c) => c.charCodeAt(0) * 0x101);

// Powers of 95 as literals (see rand128.ts on folding), checked below.
const P95_2 = 9025;
const P95_4 = 81450625;
const P95_8 = 6634204312890625;
/** 95^8 = P95_8_HIGH * 2^32 + P95_8_LOW. */
const P95_8_HIGH = 1544646;
const P95_8_LOW = 258993409;
const TWO32_MOD_P95_2 = 5896;
assert(TWO32_MOD_P95_2 === 4294967296 % P95_2, "2^32 mod 95^2");
assert(P95_2 === 95 ** 2 && P95_4 === 95 ** 4 && P95_8 === 95 ** 8, "powers of 95");
assert(P95_8_HIGH * 4294967296 + P95_8_LOW === P95_8, "95^8 split into 32-bit halves");

/** x mod m for 0 <= x < 2^53 and m < 2^32, exact (the quotient estimate is corrected). */
function modSmall(x: number, m: number): number {
  const r = x - Math.floor(x / m) * m;
  return r < 0 ? r + m : r >= m ? r - m : r;
}

/**
 * (high * 2^32 + low) mod 95^8 for 32-bit halves, exactly in doubles: the
 * quotient (< 2^12) is estimated in floating point and the remainder is formed
 * from products small enough to be exact, then corrected by one step.
 */
function mod95pow8(high: number, low: number): number {
  const q = Math.floor((high * 4294967296 + low) / P95_8);
  let r = (high - q * P95_8_HIGH) * 4294967296 + (low - q * P95_8_LOW);
  if (r < 0) r += P95_8;
  else if (r >= P95_8) r -= P95_8;
  return r;
}

/** The 4 low base-95 digits of x (< 95^4) as key characters, least significant first, into 2 u16. */
function writeDigitPairs(u16: Uint16Array, at: number, x: number): void {
  const q1 = Math.floor(x / 95);
  const q2 = Math.floor(q1 / 95);
  const q3 = Math.floor(q2 / 95);
  u16[at] = (32 + x - q1 * 95) | ((32 + q1 - q2 * 95) << 8);
  u16[at + 1] = (32 + q2 - q3 * 95) | ((32 + q3) << 8);
}

const skewTables: { binary?: Uint8Array; ascii?: Uint8Array } = {};

/**
 * gensort's 129 x 6 skew table. Row s is the first 6 key bytes of unskewed record
 * s (docs/gensort-format.md; tests check rows against the table printed in gensort.c), so it is
 * computed here rather than copied.
 */
function skewTable(ascii: boolean): Uint8Array {
  const cached = ascii ? skewTables.ascii : skewTables.binary;
  if (cached) return cached;
  const generator = new GensortGenerator({ ascii, start: 0n, batchRecords: SKEW_ROWS });
  const records = generator.next(SKEW_ROWS);
  const table = new Uint8Array(SKEW_ROWS * SKEW_BYTES);
  for (let s = 0; s < SKEW_ROWS; s++) {
    table.set(records.subarray(s * RECORD_BYTES, s * RECORD_BYTES + SKEW_BYTES), s * SKEW_BYTES);
  }
  if (ascii) skewTables.ascii = table;
  else skewTables.binary = table;
  return table;
}
