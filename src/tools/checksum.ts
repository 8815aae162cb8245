/**
 * The Sort Benchmark checksum (gensort -c, valsort "Checksum:"): the sum of the
 * zlib CRC-32 of every 100-byte record, as an unsigned 128-bit number. It does not
 * depend on record order, so the inputs' checksum must equal the outputs'.
 */
import { assert } from "../errors.ts";
import { RECORD_BYTES } from "../record.ts";
import { maxRecordsPerCrcSum, sumRecordCrcs } from "./crc32.ts";

/** Flush the running double-precision sum into the BigInt before it can lose bits. */
const flushAboveSum = 2 ** 52;
const MASK_128 = (1n << 128n) - 1n;

export class RecordChecksum {
  private big = 0n;
  private small = 0;
  private count = 0;

  /** Add every whole record in buf[offset, offset + length); length is a multiple of 100. */
  add(buf: Uint8Array, offset = 0, length = buf.length - offset): void {
    assert(length % RECORD_BYTES === 0, `checksum: ${length} bytes is not a whole number of records`);
    let records = length / RECORD_BYTES;
    let at = offset;
    while (records > 0) {
      // small < 2^52 and a batch sums to < 2^52, so the double stays exact.
      const batch = Math.min(records, maxRecordsPerCrcSum);
      this.small += sumRecordCrcs(buf, at, batch);
      if (this.small >= flushAboveSum) this.flush();
      at += batch * RECORD_BYTES;
      records -= batch;
    }
    this.count += length / RECORD_BYTES;
  }

  /** Add another checksum (for instance one partition's) to this one. */
  merge(other: RecordChecksum): void {
    this.big = (this.big + other.value) & MASK_128;
    this.count += other.records;
  }

  get records(): number {
    return this.count;
  }

  get value(): bigint {
    this.flush();
    return this.big;
  }

  /** Lowercase hex without leading zeros, as gensort -c and valsort print it. */
  toHex(): string {
    return this.value.toString(16);
  }

  private flush(): void {
    this.big = (this.big + BigInt(this.small)) & MASK_128;
    this.small = 0;
  }
}
