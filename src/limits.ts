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
/**
 * Key-range rounds: a peer reads its input this many times, each pass sending
 * one slice of every owner's key range and then a MARK, so receivers sort and
 * write their output while later slices arrive (src/peer/drain.ts). Only for
 * inputs of at least roundsMinInputBytes (below that there is little disk time
 * to overlap) whose share is expected to fit in memory (a spilling peer's input
 * may not fit in the page cache either: each pass would read the disk).
 */
export const defaultRounds = 2;
/**
 * The output is written with O_DIRECT (src/io/writer.ts) only when the input is
 * at least this big (the share is about the input): at 4 x 256 MiB it saved
 * ~0.8 s of system CPU of all peers, at 16 x 64 MiB it cost ~1 s of wall against
 * the page cache (many small direct writers on one disk).
 */
export const directMinInputBytes = 128 * 1024 * 1024;
export const maxRounds = 64;
/**
 * Measured: at 4 x 256 MiB two rounds took the wall below one round's; at
 * 16 x 64 MiB they cost ~10% of wall and CPU (the extra pass, and little disk
 * time per peer to overlap), as at 4 x 64 MiB (+12% CPU).
 */
export const roundsMinInputBytes = 128 * 1024 * 1024;
/** The output is written in pieces of this many bytes. */
export const writeChunkBytes = 8 * 1024 * 1024;
/**
 * After this many more output bytes, the kernel is asked to start writing them
 * to disk (fdatasync on the thread pool), so the disk works while the sort goes
 * on and the final fsync waits only for the tail instead of the whole file.
 * Page-cache mode only: a direct write is on the device when it returns.
 */
export const writebackBytes = 8 * 1024 * 1024;
/**
 * Direct I/O (O_DIRECT) output: each of the writer's two staging buffers holds
 * this many bytes (a multiple of 4096); one is written while the sort fills the
 * other, so the writer holds 2x this in memory.
 */
export const directBufferBytes = 4 * 1024 * 1024;

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

// ---- the peer's run (src/job.ts) ----
/** The sort loop gives the event loop a turn at least this often, so pings and ABORTs flow. */
export const maxBusyMs = 50;
/**
 * Inside a long synchronous step (a spill in the receive callback), the mesh's
 * connections are kept alive (queued frames flushed, PING when quiet) at most
 * this often.
 */
export const busyKeepAliveMs = 10;
/**
 * A quick garbage collection after every this many received bytes: Bun hands
 * each socket read over in a fresh buffer, and without it received data keeps
 * landing in fresh pages. Measured, 4 peers x 256 MiB, A/B in one session:
 * every 16 MiB 31-34k page faults and 3.5-4.6 s system CPU for all peers; every
 * 4 MiB 18-19k faults and 2.7-3.1 s; every 2 MiB worse again.
 */
export const gcEveryReceivedBytes = 4 * 1024 * 1024;
/** A progress line is logged this often during long phases. */
export const progressIntervalMs = 5_000;
/** After a failure before the mesh was up, answer late peers' dials with our reason for at most this long. */
export const earlyAbortLingerMs = 10_000;
/** A peer that could not listen dials the others to tell them why, for at most this long. */
export const abortDialMs = 3_000;
/** After a failure on a connected mesh, the same for peers whose streams were not up. */
export const abortLingerMs = 2_000;

// ---- the mesh (src/exchange/) ----
/** The first few dial retries wait only fastRetryMs, so a mesh started together is up fast. */
export const fastRetries = 4;
export const fastRetryMs = 50;
/** A dialer waits this many hello timeouts for an answer: the listener may be a busy peer, not a stranger. */
export const answerWaitHelloTimeouts = 5;
/** A gap between clock ticks this many tick periods long means this process stalled. */
export const stallTicks = 3;
/** Clock tick period bounds: a quarter of the idle timeout, within these. */
export const minTickMs = 10;
export const maxTickMs = 250;
/** Lingering ends once no peer has dialed for this many retry intervals (and at least lingerQuietMinMs). */
export const lingerQuietRetries = 4;
export const lingerQuietMinMs = 1_000;
export const lingerPollMs = 50;
/** Strangers are logged at most this often (plus a count of the ones not logged). */
export const strangerLogIntervalMs = 5_000;
/** Most frames waiting in one connection's queue: a bug guard, far above what the pools allow. */
export const maxPendingFrames = 4096;
/**
 * A hello that shows a misconfiguration but could come from a stranger (no
 * secret: anyone can send one) fails this peer only if the mesh is still not up
 * this long after it; well under the 10 s in which every peer must stop.
 */
export const mismatchGraceMs = 4_000;
/**
 * After a failure, incoming bytes are read and dropped for at most this long
 * (until every peer closed), so closing does not reset connections whose peer
 * has not read our ABORT yet.
 */
export const abortDrainMs = 1_000;
export const drainPollMs = 10;
