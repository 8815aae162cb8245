/**
 * `gen`: random 100-byte records, deterministic per (seed, size, kind), fast.
 *
 * Two independent xoshiro128** streams drive it: `values` fills every byte of
 * every record, `choices` makes the per-record decisions of the skewed kinds
 * (which records share the prefix, which key a duplicate takes). Keeping them
 * apart makes the bytes independent of how the output is cut into chunks.
 */
import fs from "node:fs";
import path from "node:path";
import { assert, NetsortError, UsageError } from "../errors.ts";
import { KEY_BYTES, RECORD_BYTES, RECORD_WORDS } from "../record.ts";

export const GEN_KINDS = ["uniform", "skew", "dups"] as const;
export type GenKind = (typeof GEN_KINDS)[number];

export const defaultGenSeed = 1;
export const maxGenSeed = 0xffff_ffff;
/** Seeds the skew prefix and the dups key set: the same for every file. */
const sharedKeysSeed = 0x5eed;
/** `skew`: this share of records starts with the same prefix. */
export const skewShare = 0.9;
/** `skew`: length of the shared key prefix, in bytes (the 48 bits ownership reads). */
export const skewPrefixBytes = 6;
/** `dups`: keys are drawn from this many distinct keys. */
export const dupsKeyCount = 1000;
/** Records are produced and written in pieces of this many bytes: one reused buffer. */
const genChunkBytes = 8 * 1024 * 1024 - ((8 * 1024 * 1024) % RECORD_BYTES);

const TWO_POW_32 = 2 ** 32;
const skewThreshold = Math.floor(skewShare * TWO_POW_32);

export interface GenerateOptions {
  file: string;
  /** Requested size; rounded up to a whole number of records. */
  bytes: number;
  seed?: number;
  kind?: GenKind;
}

export interface GenerateResult {
  records: number;
  bytes: number;
  ms: number;
}

/** The byte count `gen` writes for a requested size: rounded up to whole records. */
export function roundUpToRecords(bytes: number): number {
  return Math.ceil(bytes / RECORD_BYTES) * RECORD_BYTES;
}

/** xoshiro128** (Blackman and Vigna): 4 bytes per step, no allocation. */
class Xoshiro128 {
  private readonly s = new Uint32Array(4);

  /** Seed through splitmix32 so that nearby seeds give unrelated streams. */
  constructor(seed: number, stream: number) {
    let x = (seed ^ Math.imul(stream + 1, 0x632b_e5ab)) >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e37_79b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85eb_ca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2_ae35);
      this.s[i] = z ^ (z >>> 16);
    }
    assert((this.s[0] | this.s[1] | this.s[2] | this.s[3]) !== 0, "xoshiro state must not be all zero");
  }

  /** Fill out[start, end) with random words; the state lives in locals for speed. */
  fill(out: Uint32Array, start: number, end: number): void {
    const s = this.s;
    let s0 = s[0];
    let s1 = s[1];
    let s2 = s[2];
    let s3 = s[3];
    for (let i = start; i < end; i++) {
      const m = Math.imul(s1, 5);
      out[i] = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
  }

  /** One random word as an unsigned number. */
  next(): number {
    const s = this.s;
    const m = Math.imul(s[1], 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return result;
  }
}

/** Produces records of one kind into caller-owned buffers. */
class RecordSource {
  private readonly values: Xoshiro128;
  private readonly choices: Xoshiro128;
  private readonly kind: GenKind;
  /** skew: the shared prefix; dups: the key set, KEY_BYTES per key. */
  private readonly keys: Uint8Array;

  constructor(seed: number, kind: GenKind) {
    this.values = new Xoshiro128(seed, 0);
    this.choices = new Xoshiro128(seed, 1);
    this.kind = kind;
    const keyBytes = kind === "dups" ? dupsKeyCount * KEY_BYTES : kind === "skew" ? skewPrefixBytes : 0;
    // The shared prefix and the duplicate key set do not depend on the seed: files
    // made with different seeds (one per peer) skew towards the same owner and
    // share duplicate keys, which is the hard case for a distributed sort.
    const words = new Uint32Array(Math.ceil(keyBytes / 4));
    new Xoshiro128(sharedKeysSeed, 2).fill(words, 0, words.length);
    this.keys = new Uint8Array(words.buffer, 0, keyBytes);
  }

  /** Fill the first `records` records of `words` (and its byte view `bytes`). */
  fill(words: Uint32Array, bytes: Uint8Array, records: number): void {
    assert(bytes.buffer === words.buffer && bytes.byteOffset === words.byteOffset, "views share one buffer");
    assert(records * RECORD_BYTES <= bytes.length, "chunk fits the buffer");
    this.values.fill(words, 0, records * RECORD_WORDS);
    if (this.kind === "skew") this.applySkew(bytes, records);
    else if (this.kind === "dups") this.applyDups(bytes, records);
  }

  private applySkew(bytes: Uint8Array, records: number): void {
    const keys = this.keys;
    for (let r = 0; r < records; r++) {
      if (this.choices.next() >= skewThreshold) continue;
      const o = r * RECORD_BYTES;
      for (let i = 0; i < skewPrefixBytes; i++) bytes[o + i] = keys[i];
    }
  }

  private applyDups(bytes: Uint8Array, records: number): void {
    const keys = this.keys;
    for (let r = 0; r < records; r++) {
      const k = Math.floor((this.choices.next() * dupsKeyCount) / TWO_POW_32) * KEY_BYTES;
      const o = r * RECORD_BYTES;
      for (let i = 0; i < KEY_BYTES; i++) bytes[o + i] = keys[k + i];
    }
  }
}

function checkOptions(options: GenerateOptions): { seed: number; kind: GenKind } {
  const seed = options.seed ?? defaultGenSeed;
  const kind = options.kind ?? "uniform";
  if (!Number.isInteger(seed) || seed < 0 || seed > maxGenSeed) {
    throw new UsageError(`gen: seed must be an integer between 0 and ${maxGenSeed}, got ${seed}`);
  }
  if (!GEN_KINDS.includes(kind)) throw new UsageError(`gen: kind must be one of ${GEN_KINDS.join(", ")}`);
  if (!Number.isSafeInteger(options.bytes) || options.bytes < 0) {
    throw new UsageError(`gen: size must be a whole number of bytes, got ${options.bytes}`);
  }
  return { seed, kind };
}

function openError(file: string, error: unknown): NetsortError {
  const code = (error as NodeJS.ErrnoException).code;
  // Node's message names the temporary path; keep only "ENOENT: no such file or directory".
  const reason = String((error as Error).message).split(", ")[0];
  const message = `gen: cannot write ${file}: ${reason}`;
  // A bad path is the user's to fix (exit 2); anything else is the disk (exit 1).
  if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR" || code === "EACCES") {
    return new UsageError(message, { cause: error });
  }
  return new NetsortError(message, undefined, { cause: error });
}

function writeAll(fd: number, bytes: Uint8Array, length: number): void {
  let written = 0;
  while (written < length) written += fs.writeSync(fd, bytes, written, length - written);
}

/**
 * Write `bytes` (rounded up to whole records) of random records to `file`.
 * The data goes to a temporary file beside the target, renamed into place at
 * the end, so `file` never holds a partial result. No fsync: this is test data,
 * and a crash leaves at worst a stray temporary file, never a short `file`.
 */
export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  const { seed, kind } = checkOptions(options);
  const file = options.file;
  const totalBytes = roundUpToRecords(options.bytes);
  const records = totalBytes / RECORD_BYTES;
  const started = performance.now();
  const temp = path.join(path.dirname(file), `.netsort-gen-${path.basename(file)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = fs.openSync(temp, "w", 0o644);
  } catch (error) {
    throw openError(file, error);
  }
  try {
    const chunkBytes = Math.min(genChunkBytes, totalBytes);
    const words = new Uint32Array(Math.max(chunkBytes, RECORD_BYTES) / 4);
    const bytes = new Uint8Array(words.buffer);
    const source = new RecordSource(seed, kind);
    for (let done = 0; done < records; ) {
      const n = Math.min(records - done, words.length / RECORD_WORDS);
      source.fill(words, bytes, n);
      writeAll(fd, bytes, n * RECORD_BYTES);
      done += n;
    }
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(temp, file);
  } catch (error) {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    if (error instanceof NetsortError) throw error;
    throw openError(file, error);
  }
  return { records, bytes: totalBytes, ms: performance.now() - started };
}
