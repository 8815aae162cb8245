/**
 * One peer's whole run: read -> partition -> exchange -> sort -> write, with the
 * ready/commit step that makes exit 0 mean "the sort succeeded everywhere".
 * Reading, sending and receiving overlap: every chunk is partitioned and its
 * batches go out while the next is read, and records from other peers land in
 * their buckets (the first radix pass) as they arrive.
 */
import { NetsortError } from "./errors.ts";
import { Mesh } from "./exchange/mesh.ts";
import { checkOutputPath } from "./io/paths.ts";
import { checkInputFile, readChunks } from "./io/reader.ts";
import { DurableWriter } from "./io/writer.ts";
import { tuneJit } from "./jit.ts";
import { formatBytes, formatRate, log } from "./log.ts";
import { Partitioner } from "./partition/partitioner.ts";
import { RECORD_BYTES, rangeEnd, rangeStart } from "./record.ts";
import { BucketStore } from "./sort/buckets.ts";
import type { PhaseTimings, SortOptions } from "./types.ts";
import { decodePart, globalVerdict, type PeerPart, PeerValidation } from "./validate/validation.ts";

/** The sort loop gives the event loop a turn at least this often, so pings and ABORTs flow. */
const maxBusyMs = 50;
/**
 * Bun hands every socket read to us in a freshly allocated buffer. Left to the
 * garbage collector's own pace, received data keeps landing in fresh pages (a
 * page fault per 4 KiB); a quick collection this often lets the allocator reuse
 * the chunks we are done with. Measured, 4 peers x 256 MiB, A/B in one session:
 * every 16 MiB 31-34k faults and 3.5-4.6 s system CPU for all peers; every 4 MiB
 * 18-19k faults and 2.7-3.1 s; every 2 MiB worse again (more collections).
 */
const gcEveryReceivedBytes = 4 * 1024 * 1024;
/** A progress line is logged this often during long phases. */
const progressIntervalMs = 5_000;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** After a failure before the mesh was up, answer late peers' dials with our reason for at most this long. */
const earlyAbortLingerMs = 10_000;
/**
 * A peer that could not listen dials the others to tell them why, for at most
 * this long: peers not up by then will meet their own connect timeout.
 */
const abortDialMs = 3_000;
/** After a failure on a connected mesh, the same for peers whose streams were not up. */
const abortLingerMs = 2_000;

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
 * Every peer combines the same N summaries, so every peer reaches the same
 * verdict; peer 0 prints it. A wrong verdict fails the sort before any rename.
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
 * Sort bucket by bucket and write each sorted run as soon as it exists (the
 * store gives a bucket's memory back once its run is written, so the page cache
 * reuses it). Yields to the event loop every maxBusyMs so pings keep flowing.
 * Ends with the output fsynced under its temporary name.
 */
async function sortAndWrite(
  store: BucketStore,
  writer: DurableWriter,
  validation: PeerValidation | null,
  t: PhaseTimings,
): Promise<{ sortMs: number; writeMs: number }> {
  let sortMs = 0;
  let writeMs = 0;
  let lastTurnMs = performance.now();
  const runs = store.sortedRuns();
  while (true) {
    const a = performance.now();
    const next = runs.next();
    const b = performance.now();
    sortMs += b - a;
    if (next.done) break;
    await writer.write(next.value);
    const c = performance.now();
    writeMs += c - b;
    if (validation !== null) {
      validation.addOutput(next.value);
      t.validateMs += performance.now() - c;
    }
    if (c - lastTurnMs > maxBusyMs) {
      await turn();
      lastTurnMs = performance.now();
    }
  }
  const f = performance.now();
  await writer.prepare();
  writeMs += performance.now() - f;
  return { sortMs, writeMs };
}

export async function runPeer(options: SortOptions): Promise<PhaseTimings> {
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
    return abortEarly(options, error);
  }
  tuneJit(inputBytes);
  const store = new BucketStore({
    rangeStart: rangeStart(serverId, peers),
    rangeEnd: rangeEnd(serverId, peers),
    expectedRecords: Math.ceil(inputBytes / RECORD_BYTES),
  });
  let receivedSinceGcBytes = 0;
  const mesh = new Mesh(options, {
    onRecords: (_from, buf, offset, length) => {
      store.add(buf, offset, length);
      receivedSinceGcBytes += length;
      if (receivedSinceGcBytes >= gcEveryReceivedBytes) {
        receivedSinceGcBytes = 0;
        Bun.gc(false);
      }
    },
  });
  const partitioner = new Partitioner(serverId, mesh.out, (buf, offset, length) =>
    store.add(buf, offset, length),
  );
  const t: PhaseTimings = {
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
  let readBytes = 0;
  const validation = options.validate ? new PeerValidation() : null;
  /** Time --validate adds, summed where it happens (read, write, verdict). */
  const timed = (fn: () => void) => {
    const a = performance.now();
    fn();
    t.validateMs += performance.now() - a;
  };
  const onSignal = (signal: NodeJS.Signals) => mesh.fail(new NetsortError(`interrupted by ${signal}`));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const progress = setInterval(() => {
    log.info(
      `progress: read ${formatBytes(readBytes)} of ${formatBytes(inputBytes)}, holding ${store.records} records, ${Math.round(performance.now() - startMs)} ms`,
    );
  }, progressIntervalMs);

  const work = async () => {
    mesh.listen();
    mesh.start();
    mesh.whenConnected().then(
      () => {
        t.connectMs = mesh.connectedAtMs > 0 ? mesh.connectedAtMs - startMs : 0;
        t.spans.push({ phase: "connect", startMs: 0, endMs: t.connectMs });
        if (peers > 1) log.info(`mesh up: ${peers - 1} peers connected in ${Math.round(t.connectMs)} ms`);
      },
      () => {},
    );
    for await (const chunk of readChunks(options.inputFile, inputBytes)) {
      if (validation !== null) timed(() => validation.addInput(chunk));
      await partitioner.push(chunk);
      readBytes += chunk.length;
      await turn(); // let sockets drain and receive between chunks
    }
    partitioner.finish();
    for (const out of mesh.out) out?.finish();
    const readEndMs = performance.now();
    t.readMs = readEndMs - startMs;
    t.spans.push({ phase: "read", startMs: 0, endMs: t.readMs });
    const kept = partitioner.routed[serverId];
    log.info(
      `read ${formatBytes(inputBytes)} (${t.inputRecords} records) in ${Math.round(t.readMs)} ms, ${formatRate(inputBytes, t.readMs)}; kept ${kept}, sent ${t.inputRecords - kept} records`,
    );
    await mesh.whenConnected();
    await mesh.whenAllReceived();
    const exchangeEndMs = performance.now();
    t.exchangeMs = exchangeEndMs - readEndMs;
    t.spans.push({ phase: "exchange", startMs: t.readMs, endMs: exchangeEndMs - startMs });
    t.sentBytes = mesh.out.reduce((sum, o) => sum + (o === null ? 0 : o.records * RECORD_BYTES), 0);
    t.receivedBytes = mesh.in.reduce((sum, s) => sum + (s === null ? 0 : s.records * RECORD_BYTES), 0);
    log.info(
      `exchange: waited ${Math.round(t.exchangeMs)} ms after reading; received ${t.receivedBytes / RECORD_BYTES} records from ${peers - 1} peers, holding ${store.records}`,
    );

    const { sortMs, writeMs } = await sortAndWrite(store, writer, validation, t);
    const writtenMs = performance.now() - startMs;
    t.sortMs = sortMs;
    t.spans.push({
      phase: "sort",
      startMs: exchangeEndMs - startMs,
      endMs: exchangeEndMs - startMs + sortMs,
    });
    t.spans.push({ phase: "write", startMs: exchangeEndMs - startMs + sortMs, endMs: writtenMs });
    t.outputRecords = writer.bytes / RECORD_BYTES;
    log.info(`sorted ${t.outputRecords} records in ${Math.round(sortMs)} ms`);
    mesh.sendReady(validation === null ? null : validation.encode());
    await mesh.whenCommitted();
    if (validation !== null) timed(() => checkVerdict(mesh, serverId, validation));
    await writer.commit();
    t.writeMs = writeMs;
    t.commitMs = performance.now() - startMs - writtenMs;
    t.spans.push({ phase: "commit", startMs: writtenMs, endMs: writtenMs + t.commitMs });
    log.info(
      `wrote ${formatBytes(writer.bytes)} to ${options.outputFile} in ${Math.round(t.writeMs)} ms (fsync included), ${formatRate(writer.bytes, t.writeMs)}`,
    );
  };

  try {
    const running = work();
    running.catch(() => {}); // when the mesh fails first, `work` stops on its own
    await Promise.race([running, mesh.failed]);
  } catch (error) {
    mesh.fail(error);
    writer.discard();
    await tellAndClose(mesh, options, mesh.connectedAtMs > 0 ? 0 : abortLingerMs);
    throw mesh.error ?? error;
  } finally {
    clearInterval(progress);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  await mesh.close();
  t.totalMs = performance.now() - startMs;
  t.peakRssBytes = peakRssBytes();
  log.success(
    `peer ${serverId}: sorted ${t.outputRecords} records in ${Math.round(t.totalMs)} ms, peak RSS ${formatBytes(t.peakRssBytes)}`,
  );
  return t;
}
