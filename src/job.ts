/**
 * One peer's whole run, as phase functions over one shared context:
 *
 *   readAndSend -> awaitExchange -> sortAndWrite -> commit
 *
 * Reading, sending and receiving overlap: every chunk is partitioned and its
 * batches go out while the next is read, and records from other peers land in
 * their buckets (the first radix pass) as they arrive. The commit rounds make
 * exit 0 mean "every peer's output is in place" (docs/protocol.md, "Commit").
 * Each phase returns or records its own figures; `fail` is the one failure path.
 */
import { NetsortError, UsageError } from "./errors.ts";
import { Mesh } from "./exchange/mesh.ts";
import { tellMisfit } from "./exchange/misfit.ts";
import { checkOutputPath } from "./io/paths.ts";
import { checkInputFile, readChunks } from "./io/reader.ts";
import { DurableWriter } from "./io/writer.ts";
import { tuneJit } from "./jit.ts";
import {
  abortDialMs,
  abortLingerMs,
  earlyAbortLingerMs,
  gcEveryReceivedBytes,
  maxBusyMs,
  progressIntervalMs,
} from "./limits.ts";
import { formatBytes, formatRate, log } from "./log.ts";
import { Partitioner } from "./partition/partitioner.ts";
import { RECORD_BYTES, rangeEnd, rangeStart } from "./record.ts";
import { noSecretWarning } from "./secret.ts";
import { BucketStore } from "./sort/buckets.ts";
import type { PhaseName, PhaseTimings, SortOptions } from "./types.ts";
import { decodePart, globalVerdict, type PeerPart, PeerValidation } from "./validate/validation.ts";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What every phase of one run shares. */
interface Run {
  options: SortOptions;
  mesh: Mesh;
  store: BucketStore;
  writer: DurableWriter;
  partitioner: Partitioner;
  validation: PeerValidation | null;
  t: PhaseTimings;
  /** performance.now() at the start: spans are ms since then. */
  startMs: number;
  inputBytes: number;
  readBytes: number;
}

function span(run: Run, phase: PhaseName, fromMs: number, toMs = performance.now()): number {
  run.t.spans.push({ phase, startMs: fromMs - run.startMs, endMs: toMs - run.startMs });
  return toMs - fromMs;
}

/** Time --validate adds, summed where it happens (read, write, verdict). */
function timedValidation(run: Run, fn: () => void): void {
  const fromMs = performance.now();
  fn();
  run.t.validateMs += performance.now() - fromMs;
}

function emptyTimings(inputBytes: number): PhaseTimings {
  return {
    startedAtEpochMs: Date.now(),
    spans: [],
    connectMs: 0,
    readMs: 0,
    exchangeMs: 0,
    sortMs: 0,
    writeMs: 0,
    commitMs: 0,
    validateMs: 0,
    totalMs: 0,
    inputRecords: inputBytes / RECORD_BYTES,
    outputRecords: 0,
    sentBytes: 0,
    receivedBytes: 0,
    peakRssBytes: 0,
  };
}

/** Phase 1: read the input, keep our own records, send the rest as it is read. */
async function readAndSend(run: Run): Promise<void> {
  const { mesh, partitioner, validation, options } = run;
  const fromMs = performance.now();
  for await (const chunk of readChunks(options.inputFile, run.inputBytes)) {
    if (validation !== null) timedValidation(run, () => validation.addInput(chunk));
    await partitioner.push(chunk);
    run.readBytes += chunk.length;
    await turn(); // let sockets drain and receive between chunks
  }
  partitioner.finish();
  run.t.readMs = span(run, "read", fromMs);
  const kept = partitioner.routed[options.serverId];
  log.info(
    `read ${formatBytes(run.inputBytes)} (${run.t.inputRecords} records) in ${Math.round(run.t.readMs)} ms, ${formatRate(run.inputBytes, run.t.readMs)}; kept ${kept}, sent ${run.t.inputRecords - kept} records`,
  );
  await mesh.whenConnected();
  mesh.finishStreams();
}

/** Phase 2: wait until every other peer's stream has arrived whole. */
async function awaitExchange(run: Run): Promise<void> {
  const { mesh, store } = run;
  const fromMs = performance.now();
  await mesh.whenAllReceived();
  run.t.exchangeMs = span(run, "exchange", fromMs);
  run.t.sentBytes = mesh.out.reduce((sum, o) => sum + (o === null ? 0 : o.records * RECORD_BYTES), 0);
  run.t.receivedBytes = mesh.in.reduce((sum, s) => sum + (s === null ? 0 : s.records * RECORD_BYTES), 0);
  const peers = mesh.peers;
  log.info(
    `exchange: waited ${Math.round(run.t.exchangeMs)} ms after reading; received ${run.t.receivedBytes / RECORD_BYTES} records from ${peers - 1} ${peers === 2 ? "peer" : "peers"}, holding ${store.records}`,
  );
}

/**
 * Phase 3: sort bucket by bucket and write each sorted run as soon as it exists
 * (the store gives a bucket's memory back once its run is written, so the page
 * cache reuses it). Yields to the event loop every maxBusyMs so pings keep
 * flowing. Ends with the output fsynced under its temporary name.
 */
async function sortAndWrite(run: Run): Promise<void> {
  const { store, writer, validation } = run;
  const fromMs = performance.now();
  let sortMs = 0;
  let writeMs = 0;
  let lastTurnMs = fromMs;
  const runs = store.sortedRuns();
  while (true) {
    const a = performance.now();
    const next = runs.next();
    const sortedAtMs = performance.now();
    sortMs += sortedAtMs - a;
    if (next.done) break;
    await writer.write(next.value);
    const writtenAtMs = performance.now();
    writeMs += writtenAtMs - sortedAtMs;
    if (validation !== null) timedValidation(run, () => validation.addOutput(next.value));
    if (writtenAtMs - lastTurnMs > maxBusyMs) {
      await turn();
      lastTurnMs = performance.now();
    }
  }
  const prepareFromMs = performance.now();
  await writer.prepare();
  writeMs += performance.now() - prepareFromMs;
  run.t.sortMs = sortMs;
  run.t.writeMs = writeMs;
  run.t.outputRecords = writer.bytes / RECORD_BYTES;
  // Sorting and writing interleave: one span each, laid end to end, with the measured durations.
  span(run, "sort", fromMs, fromMs + sortMs);
  span(run, "write", fromMs + sortMs, performance.now());
  log.info(
    `sorted ${run.t.outputRecords} records in ${Math.round(sortMs)} ms; wrote ${formatBytes(writer.bytes)} in ${Math.round(writeMs)} ms (fsync included), ${formatRate(writer.bytes, writeMs)}`,
  );
}

/**
 * Every peer combines the same N summaries, so every peer reaches the same
 * verdict; peer 0 prints it. A wrong verdict fails the sort before any commit.
 */
function checkVerdict(mesh: Mesh, serverId: number, own: PeerValidation): void {
  const parts: PeerPart[] = mesh.in.map((stream, id) => {
    if (id === serverId) return own.part();
    const payload = stream?.validation ?? null;
    if (payload === null) {
      throw new NetsortError(`--validate: peer ${id} sent no summary (start every peer with --validate)`);
    }
    return decodePart(payload);
  });
  const verdict = globalVerdict(parts);
  if (serverId === 0) for (const line of verdict.lines) log.info(`validate: ${line}`);
  if (!verdict.ok) throw new NetsortError(`validation failed: ${verdict.problem}`);
  if (serverId !== 0) log.info(`validate: ${verdict.lines[verdict.lines.length - 1]}`);
}

/**
 * Phase 4, the commit rounds (docs/protocol.md, "Commit"):
 *   READY      our output is durable under its temporary name
 *   COMMITTED  after every READY: linked into place under its final name
 *   CONFIRMED  after every COMMITTED: still ours and in place (no peer wrote over it)
 * Exit 0 only after every CONFIRMED: then every output is in place, for good.
 */
async function commit(run: Run): Promise<void> {
  const { mesh, writer, validation, options } = run;
  const fromMs = performance.now();
  mesh.sendReady(validation === null ? null : validation.encode());
  await mesh.whenAllReady();
  if (validation !== null) timedValidation(run, () => checkVerdict(mesh, options.serverId, validation));
  await writer.commit();
  mesh.sendCommitted();
  await mesh.whenAllCommitted();
  // Every peer has renamed by now: a peer given our path (NFS, another host) would show here.
  if (!writer.isInPlace()) {
    throw new NetsortError(
      `output ${options.outputFile}: another process replaced it during the commit (two peers given the same output file?)`,
    );
  }
  mesh.sendConfirmed();
  await mesh.whenAllConfirmed();
  run.t.commitMs = span(run, "commit", fromMs);
}

/**
 * The input or output was unusable before any data moved: still listen, bounded,
 * so every other peer's dial is answered with our reason and they stop now,
 * naming us, instead of at their connect timeout.
 */
async function abortEarly(options: SortOptions, error: unknown): Promise<never> {
  const mesh = new Mesh(options, { onRecords: () => {} });
  let listening = true;
  try {
    mesh.listen();
  } catch {
    listening = false; // could not listen either: the original error is the one to report
  }
  mesh.fail(error);
  await tellAndClose(mesh, options, listening ? earlyAbortLingerMs : 0);
  throw error;
}

/**
 * After a failure, make sure peers that were not connected learn why: a peer
 * that listens answers their dials for at most `lingerMs`; one that could not
 * listen dials them instead. Then close, flushing the ABORTs already queued.
 */
async function tellAndClose(mesh: Mesh, options: SortOptions, lingerMs: number): Promise<void> {
  await mesh.linger(Math.min(options.connectTimeoutMs, lingerMs));
  await mesh.tellByDialing(Math.min(options.connectTimeoutMs, abortDialMs));
  await mesh.close();
}

/**
 * The one failure path. Our output goes away unless we already CONFIRMED it:
 * from then on other peers may exit 0 counting on it, so it must stay.
 */
async function fail(run: Run, error: unknown): Promise<never> {
  const { mesh, writer, options } = run;
  mesh.fail(error);
  if (mesh.confirmedSent) {
    log.warn(`output ${options.outputFile} stays: it was confirmed to the other peers before the failure`);
  } else {
    writer.removeCommitted();
    writer.discard();
  }
  await tellAndClose(mesh, options, mesh.connectedAtMs > 0 ? 0 : abortLingerMs);
  throw mesh.error ?? error;
}

/** While the run goes on: a line every progressIntervalMs, naming missing peers while connecting. */
function startProgress(run: Run): Timer {
  return setInterval(() => {
    const elapsedMs = Math.round(performance.now() - run.startMs);
    const missing = run.mesh.connectedAtMs === 0 ? run.mesh.missingPeers() : [];
    const waiting =
      missing.length === 0
        ? ""
        : `; waiting for ${missing.map((s) => `peer ${s.serverId} (${s.host}:${s.port})`).join(", ")}`;
    log.info(
      `progress at ${elapsedMs} ms: read ${formatBytes(run.readBytes)} of ${formatBytes(run.inputBytes)}, holding ${run.store.records} records${waiting}`,
    );
  }, progressIntervalMs);
}

/**
 * Bun hands every socket read to us in a freshly allocated buffer. Left to the
 * garbage collector's own pace, received data keeps landing in fresh pages; a
 * quick collection every gcEveryReceivedBytes lets the allocator reuse them.
 */
function receiver(
  store: BucketStore,
): (from: number, buf: Uint8Array, offset: number, length: number) => void {
  let sinceGcBytes = 0;
  return (_from, buf, offset, length) => {
    store.add(buf, offset, length);
    sinceGcBytes += length;
    if (sinceGcBytes >= gcEveryReceivedBytes) {
      sinceGcBytes = 0;
      Bun.gc(false);
    }
  };
}

/** Check the files, then build the run's parts. A bad input or output stops here, before data moves. */
function setUp(options: SortOptions): Run | Error {
  const startMs = performance.now();
  const { serverId, config } = options;
  const peers = config.servers.length;
  let inputBytes: number;
  let writer: DurableWriter;
  try {
    inputBytes = checkInputFile(options.inputFile);
    checkOutputPath(options.inputFile, options.outputFile);
    writer = new DurableWriter(options.outputFile);
  } catch (error) {
    return error instanceof Error ? error : new NetsortError(String(error));
  }
  tuneJit(inputBytes);
  const store = new BucketStore({
    rangeStart: rangeStart(serverId, peers),
    rangeEnd: rangeEnd(serverId, peers),
    expectedRecords: Math.ceil(inputBytes / RECORD_BYTES),
  });
  const mesh = new Mesh(options, { onRecords: receiver(store) });
  const partitioner = new Partitioner(serverId, mesh.out, (buf, offset, length) =>
    store.add(buf, offset, length),
  );
  const validation = options.validate ? new PeerValidation() : null;
  const t = emptyTimings(inputBytes);
  return { options, mesh, store, writer, partitioner, validation, t, startMs, inputBytes, readBytes: 0 };
}

export async function runPeer(options: SortOptions): Promise<PhaseTimings> {
  const exposed = noSecretWarning(
    options.config.servers.map((s) => s.host),
    options.secret,
  );
  if (exposed !== null) log.warn(exposed);
  if (options.config.servers[options.serverId] === undefined) {
    // Not a member: say so to the peers that are, so they stop now too.
    const error = new UsageError(
      `serverId ${options.serverId} is not in config ${options.config.path} (it lists ids 0..${options.config.servers.length - 1})`,
    );
    await tellMisfit(options);
    throw error;
  }
  const run = setUp(options);
  if (run instanceof Error) return abortEarly(options, run);
  const { mesh, t } = run;
  const peers = mesh.peers;
  const onSignal = (signal: NodeJS.Signals) => mesh.fail(new NetsortError(`interrupted by ${signal}`));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const progress = startProgress(run);
  const work = async () => {
    mesh.listen();
    mesh.start();
    mesh.whenConnected().then(
      () => {
        t.connectMs = span(run, "connect", run.startMs, mesh.connectedAtMs || performance.now());
        if (peers > 1) {
          log.info(
            `mesh up: ${peers - 1} ${peers === 2 ? "peer" : "peers"} connected in ${Math.round(t.connectMs)} ms`,
          );
        }
      },
      () => {},
    );
    await readAndSend(run);
    await awaitExchange(run);
    await sortAndWrite(run);
    await commit(run);
  };
  try {
    const running = work();
    running.catch(() => {}); // when the mesh fails first, `work` stops on its own
    await Promise.race([running, mesh.failed]);
  } catch (error) {
    return await fail(run, error);
  } finally {
    clearInterval(progress);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  await mesh.close();
  t.totalMs = performance.now() - run.startMs;
  t.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  log.success(
    `peer ${options.serverId}: sorted ${t.outputRecords} records in ${Math.round(t.totalMs)} ms, output ${options.outputFile} committed on every peer, peak RSS ${formatBytes(t.peakRssBytes)}`,
  );
  return t;
}
