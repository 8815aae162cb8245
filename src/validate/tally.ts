/**
 * The record tally every checker shares: valsort's summarize_records (order,
 * duplicate keys, checksum, first and last record) over records fed in pieces
 * of whole records. `netsort check`, `netsort valsort` and `sort --validate`
 * all count with this one class, fed by the one chunked read loop
 * (src/io/reader.ts `readUnits`) or, for --validate, by the output writer.
 *
 * It lives in validate/ because it is the validation rule itself; the tools
 * (check, valsort) and the distributed verdict (validation.ts) build on it.
 * Semantics follow valsort.c (docs/gensort-format.md).
 */
import { assert } from "../errors.ts";
import { KEY_BYTES, RECORD_BYTES } from "../record.ts";
import { RecordChecksum } from "../tools/checksum.ts";

/** What valsort knows about a run of records (valsort.c `struct summary`). */
export interface Summary {
  /** Index of the first record whose key is below its predecessor's; 0 means none. */
  firstUnordered: bigint;
  /** Records whose key is below their predecessor's. */
  unordered: bigint;
  records: bigint;
  /** Records whose key equals their predecessor's. */
  dups: bigint;
  /** Sum of the records' CRC-32s, mod 2^128 (order-independent). */
  checksum: bigint;
  /** 100 bytes each. */
  firstRecord: Uint8Array;
  lastRecord: Uint8Array;
}

export interface TallyOptions {
  /** valsort -i: compare keys like strcasecmp instead of memcmp. */
  caseInsensitive?: boolean;
  /** Called once, when the first unordered record is met, with its 0-based index. */
  onFirstUnordered?: (index: bigint) => void;
}

export type KeyCompare = (a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number) => number;

/** memcmp over the 10-byte key. */
function compareBytes(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): number {
  for (let i = 0; i < KEY_BYTES; i++) {
    const d = a[aOffset + i] - b[bOffset + i];
    if (d !== 0) return d;
  }
  return 0;
}

function lower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/**
 * valsort -i calls strcasecmp(prev, rec), which ignores the 10-byte key length:
 * it compares case-folded bytes until they differ or both end (NUL). Records
 * are 100 bytes and valsort reads past them when all 100 match with no NUL
 * (undefined behaviour in C); here such records count as equal.
 */
function compareCaseInsensitive(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): number {
  for (let i = 0; i < RECORD_BYTES; i++) {
    const ca = lower(a[aOffset + i]);
    const d = ca - lower(b[bOffset + i]);
    if (d !== 0) return d;
    if (ca === 0) return 0;
  }
  return 0;
}

/** The key order valsort uses with these options. */
export function keyCompare(options: TallyOptions): KeyCompare {
  return options.caseInsensitive ? compareCaseInsensitive : compareBytes;
}

/**
 * Tallies records fed in order, in pieces of whole records. Holds no reference
 * to the caller's buffers.
 */
export class RecordTally {
  private readonly compare: KeyCompare;
  private readonly onFirstUnordered: ((index: bigint) => void) | undefined;
  private readonly checksum = new RecordChecksum();
  private readonly first = new Uint8Array(RECORD_BYTES);
  /** The last record seen so far: the predecessor of the next piece's first record. */
  private readonly last = new Uint8Array(RECORD_BYTES);
  private count = 0;
  private unordered = 0;
  private dups = 0;
  private firstUnordered = 0;

  constructor(options: TallyOptions = {}) {
    this.compare = keyCompare(options);
    this.onFirstUnordered = options.onFirstUnordered;
  }

  /** Add the records in buf[offset, offset + length); length is a multiple of 100. */
  add(buf: Uint8Array, offset = 0, length = buf.length - offset): void {
    assert(length % RECORD_BYTES === 0, `tally: ${length} bytes is not a whole number of records`);
    if (length === 0) return;
    this.checksum.add(buf, offset, length);
    const end = offset + length;
    let at = offset;
    if (this.count === 0) {
      this.first.set(buf.subarray(offset, offset + RECORD_BYTES));
      this.count = 1;
      at += RECORD_BYTES;
    } else {
      this.step(this.last, 0, buf, at);
      at += RECORD_BYTES;
    }
    // Most neighbours in key order differ in the first byte: decide those without a call.
    const memcmpOrder = this.compare === compareBytes;
    for (; at < end; at += RECORD_BYTES) {
      if (memcmpOrder && buf[at - RECORD_BYTES] < buf[at]) {
        this.count++;
        continue;
      }
      this.step(buf, at - RECORD_BYTES, buf, at);
    }
    this.last.set(buf.subarray(end - RECORD_BYTES, end));
  }

  /** Records added so far. */
  get records(): number {
    return this.count;
  }

  /** The summary so far, or null when no record was added (valsort has no summary for none). */
  summary(): Summary | null {
    if (this.count === 0) return null;
    return {
      firstUnordered: BigInt(this.firstUnordered),
      unordered: BigInt(this.unordered),
      records: BigInt(this.count),
      dups: BigInt(this.dups),
      checksum: this.checksum.value,
      firstRecord: this.first.slice(),
      lastRecord: this.last.slice(),
    };
  }

  private step(prev: Uint8Array, prevOffset: number, buf: Uint8Array, at: number): void {
    const diff = this.compare(prev, prevOffset, buf, at);
    if (diff === 0) {
      this.dups++;
    } else if (diff > 0) {
      if (this.firstUnordered === 0) {
        this.firstUnordered = this.count; // the 0-based index of the record at `at`
        this.onFirstUnordered?.(BigInt(this.firstUnordered));
      }
      this.unordered++;
    }
    this.count++;
  }
}
