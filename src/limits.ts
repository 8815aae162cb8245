/**
 * Every bound in one place, each with its unit in its name. A limit that a user
 * can change is a CLI flag whose default lives here.
 */
import { RECORD_BYTES } from "./record.ts";

/** Input is read in chunks of this many bytes (a whole number of records). */
export const readChunkBytes = 4 * 1024 * 1024 - ((4 * 1024 * 1024) % RECORD_BYTES);
/** Records for one peer are sent in data frames of at most this many payload bytes. */
export const batchBytes = 2560 * RECORD_BYTES; // 256,000 B: big writes beat small ones
/** Frames queued for one outgoing stream before the partitioner waits for `drain`. */
export const maxQueuedBytesPerPeer = 8 * batchBytes;
/** All outgoing streams of one peer together queue at most this much (but each at least 2 batches). */
export const sendBudgetBytes = 24 * batchBytes;
/** A control frame (hello, done, abort, ...) never exceeds this many payload bytes. */
export const maxControlPayloadBytes = 4096;
/** An abort reason is cut to this many bytes. */
export const maxAbortReasonBytes = 1024;
/** --partition sample: each peer samples at most this many records (400 KB), ~4,096 samples per output range. */
export const sampleMaxRecords = 4096;
/** ...and fewer in big clusters, so every peer receives at most this many sample records in all (6.5 MB). */
export const sampleTotalMaxRecords = 65_536;
/** ...but never fewer than this (a range's size then spreads by about 1/sqrt(256) = 6%). */
export const sampleMinRecords = 256;
/** The output is written in pieces of this many bytes. */
export const writeChunkBytes = 8 * 1024 * 1024;
/**
 * After this many more output bytes, the kernel is asked to start writing them
 * to disk (sync_file_range), so the disk works while the sort goes on and the
 * final fsync waits only for the tail instead of the whole file.
 */
export const writebackBytes = 8 * 1024 * 1024;

/**
 * A peer whose input is smaller than this keeps its hot loops out of JSC's
 * top tier (FTL): compiling them costs ~0.13 s of CPU per process whatever the
 * size, and below this the faster code does not win it back (src/jit.ts).
 */
export const ftlMinInputBytes = 128 * 1024 * 1024;

export const defaultRetryIntervalMs = 250;
export const defaultConnectTimeoutMs = 60_000;
export const defaultIdleTimeoutMs = 5_000;
export const defaultHelloTimeoutMs = 2_000;
/** Bounds on the user-set timing flags. */
export const minRetryIntervalMs = 10;
export const maxTimeoutMs = 24 * 60 * 60 * 1000;
/** After the last READY/ABORT is written, wait at most this long for it to flush. */
export const flushTimeoutMs = 2_000;
/** Largest config file read, in bytes: a cluster list is small. */
export const maxConfigBytes = 1024 * 1024;
