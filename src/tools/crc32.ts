/**
 * zlib CRC-32 of every 100-byte record in a buffer, in plain JS.
 *
 * Why not Bun.hash.crc32: the checksum needs one CRC per record, and calling it
 * on a 100-byte subarray costs ~220 ns (mostly the view object). A table-driven
 * slicing-by-8 loop over the record's 25 little-endian u32 words allocates
 * nothing and runs several times faster.
 */
import { assert } from "../errors.ts";
import { RECORD_BYTES, RECORD_WORDS } from "../record.ts";

/** zlib's reflected polynomial. */
const POLY = 0xedb88320;
const TABLE_SIZE = 256;
const SLICES = 8;

/** TABLE[k * 256 + b]: CRC of byte b followed by k zero bytes (slicing-by-8). */
const TABLE = buildTable();

function buildTable(): Int32Array {
  const table = new Int32Array(SLICES * TABLE_SIZE);
  for (let b = 0; b < TABLE_SIZE; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    table[b] = c;
  }
  for (let s = 1; s < SLICES; s++) {
    for (let b = 0; b < TABLE_SIZE; b++) {
      const prev = table[(s - 1) * TABLE_SIZE + b];
      table[s * TABLE_SIZE + b] = (prev >>> 8) ^ table[prev & 0xff];
    }
  }
  return table;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
assert(littleEndian, "crc32: the word-wise CRC assumes a little-endian machine");

/**
 * CRC-32 (zlib, initial value 0) of the record whose first word is words[w];
 * the record's 25 words are words[w .. w+24].
 */
export function crc32RecordWords(words: Uint32Array, w: number): number {
  const t = TABLE;
  let crc = -1;
  let i = w;
  // 12 rounds of 8 bytes, then the last 4 bytes: 100 = 12 * 8 + 4.
  for (let round = 0; round < 12; round++) {
    const a = words[i] ^ crc;
    const b = words[i + 1];
    crc =
      t[1792 + (a & 0xff)] ^
      t[1536 + ((a >>> 8) & 0xff)] ^
      t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^
      t[768 + (b & 0xff)] ^
      t[512 + ((b >>> 8) & 0xff)] ^
      t[256 + ((b >>> 16) & 0xff)] ^
      t[b >>> 24];
    i += 2;
  }
  const a = words[i] ^ crc;
  crc = t[768 + (a & 0xff)] ^ t[512 + ((a >>> 8) & 0xff)] ^ t[256 + ((a >>> 16) & 0xff)] ^ t[a >>> 24];
  return ~crc >>> 0;
}

/** CRC-32 (zlib, initial value 0) of `length` bytes at buf[offset], byte by byte (any length, any alignment). */
export function crc32Bytes(buf: Uint8Array, offset = 0, length = buf.length - offset): number {
  const t = TABLE;
  let crc = -1;
  const end = offset + length;
  for (let i = offset; i < end; i++) crc = (crc >>> 8) ^ t[(crc ^ buf[i]) & 0xff];
  return ~crc >>> 0;
}

/** Records per call of sumRecordCrcs: the sum of that many CRCs stays below 2^53. */
export const maxRecordsPerCrcSum = 1 << 20;

/** Unaligned records are copied through this many aligned bytes at a time. */
const scratchRecords = 640;
const scratch = new Uint8Array(scratchRecords * RECORD_BYTES);
const scratchWords = new Uint32Array(scratch.buffer);

/**
 * Sum of the CRC-32 of each of `count` records starting at buf[offset], as an
 * exact double (count <= maxRecordsPerCrcSum). Records at a word-aligned address
 * are read as u32 words in place; others are first copied to an aligned scratch
 * buffer (a native copy is cheaper than reading bytes one by one).
 */
export function sumRecordCrcs(buf: Uint8Array, offset: number, count: number): number {
  assert(count >= 0 && count <= maxRecordsPerCrcSum, `sumRecordCrcs: count ${count} out of range`);
  assert(
    offset >= 0 && offset + count * RECORD_BYTES <= buf.length,
    "sumRecordCrcs: records out of the buffer",
  );
  let sum = 0;
  const byteStart = buf.byteOffset + offset;
  if ((byteStart & 3) === 0) {
    const words = new Uint32Array(buf.buffer, byteStart, count * RECORD_WORDS);
    for (let r = 0, w = 0; r < count; r++, w += RECORD_WORDS) sum += crc32RecordWords(words, w);
    return sum;
  }
  for (let done = 0; done < count; ) {
    const batch = Math.min(scratchRecords, count - done);
    const from = offset + done * RECORD_BYTES;
    scratch.set(buf.subarray(from, from + batch * RECORD_BYTES));
    for (let r = 0, w = 0; r < batch; r++, w += RECORD_WORDS) sum += crc32RecordWords(scratchWords, w);
    done += batch;
  }
  return sum;
}
