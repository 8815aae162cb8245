/**
 * One peer's whole run, as phases over one shared context (src/peer/run.ts):
 *
 *   [sampleRound] -> readAndSend -> awaitExchange -> sortAndWrite -> commit
 *
 * Reading, sending and receiving overlap: every chunk is partitioned and its
 * batches go out while the next is read, and records from other peers land in
 * their buckets (the first radix pass) as they arrive. The commit rounds make
 * exit 0 mean "every peer's output is in place" (docs/protocol.md, "Commit").
 * Each phase records its own figures; src/peer/ending.ts is the failure path.
 */
import { dirname, resolve } from "node:path";
import { NetsortError, UsageError } from "./errors.ts";
import { Mesh } from "./exchange/mesh.ts";
import { tellMisfit } from "./exchange/misfit.ts";
import { checkOutputPath } from "./io/paths.ts";
import { checkInputFile } from "./io/reader.ts";
import { DurableWriter } from "./io/writer.ts";
import { tuneJit } from "./jit.ts";
import { directMinInputBytes, gcEveryReceivedBytes } from "./limits.ts";
import { formatBytes, log } from "./log.ts";
import { peakRssBytes } from "./mem.ts";
import { checkMemoryBudget, defaultMemoryBudget } from "./memory/budget.ts";
import { peersOnThisHost } from "./memory/host.ts";
import { sampleRound } from "./partition/round.ts";
import { commit } from "./peer/commit.ts";
import { abortEarly, fail } from "./peer/ending.ts";
import { awaitExchange, readAndSend, sortAndWrite } from "./peer/phases.ts";
import { emptyTimings, placeRecords, type Run, span, startProgress, storeOf } from "./peer/run.ts";
import { rangeEnd, rangeStart } from "./record.ts";
import { noSecretWarning } from "./secret.ts";
import { checkTempDir } from "./sort/scratch.ts";
import type { PhaseTimings, SortOptions } from "./types.ts";
import { PeerValidation } from "./validate/validation.ts";

/** The memory budget: --memory, or what this host can give each of its peers. Exit 2 below the minimum. */
function memoryBudget(options: SortOptions): number {
  const peers = options.config.servers.length;
  const derived = options.memoryBytes == null ? defaultMemoryBudget(peersOnThisHost(options.config)) : null;
  const memoryBytes = options.memoryBytes ?? derived?.bytes ?? 0;
  checkMemoryBudget(memoryBytes, peers, derived);
  return memoryBytes;
}

/**
 * Records from other peers go into the store. Bun hands every socket read over
 * in a fresh buffer; left to the garbage collector's own pace, received data
 * keeps landing in fresh pages, so a quick collection every
 * gcEveryReceivedBytes lets the allocator reuse them.
 */
function receiver(run: () => Run): (from: number, buf: Uint8Array, offset: number, length: number) => void {
  let sinceGcBytes = 0;
  return (_from, buf, offset, length) => {
    storeOf(run()).add(buf, offset, length);
    sinceGcBytes += length;
    if (sinceGcBytes >= gcEveryReceivedBytes) {
      sinceGcBytes = 0;
      Bun.gc(false);
    }
  };
}

/** Check the files and the memory, then build the run. A bad input, output or budget stops here, before data moves. */
function setUp(options: SortOptions, startMs: number, startedAtEpochMs: number): Run | Error {
  const { serverId, config } = options;
  const peers = config.servers.length;
  const tempDir = options.tempDir ?? dirname(resolve(options.outputFile));
  let inputBytes: number;
  let memoryBytes: number;
  let writer: DurableWriter | null = null;
  try {
    inputBytes = checkInputFile(options.inputFile);
    checkOutputPath(options.inputFile, options.outputFile);
    // The output first: with the default temp dir, its directory is the one to name.
    // O_DIRECT for big shares only: measured, it saves ~0.8 s of CPU at 4 x 256 MiB
    // but cost ~1 s of wall at 16 x 64 MiB (docs/performance.md, "Issue 15").
    writer = new DurableWriter(options.outputFile, { direct: inputBytes >= directMinInputBytes });
    checkTempDir(tempDir);
    memoryBytes = memoryBudget(options);
  } catch (error) {
    writer?.discard();
    return error instanceof Error ? error : new NetsortError(String(error));
  }
  tuneJit(inputBytes);
  const t = emptyTimings(inputBytes, startedAtEpochMs);
  const mesh = new Mesh(options, { onRecords: receiver(() => run) }, t.inputRecords);
  const run: Run = {
    options,
    mesh,
    store: null,
    partitioner: null,
    drain: null,
    writer,
    memoryBytes,
    tempDir,
    validation: options.validate ? new PeerValidation() : null,
    t,
    startMs,
    inputBytes,
    readBytes: 0,
  };
  if ((options.partition ?? "bits") === "bits") {
    // Our own input's size is the best guess of our share we have before data moves.
    const range = { rangeStart: rangeStart(serverId, peers), rangeEnd: rangeEnd(serverId, peers) };
    placeRecords(run, range, t.inputRecords, null);
  }
  return run;
}

/** --partition sample: agree on split points first, then place records by them and read the held streams. */
async function sample(run: Run): Promise<void> {
  const fromMs = performance.now();
  const { splitters, range, expectedRecords } = await sampleRound(run.mesh, run.options, run.inputBytes);
  placeRecords(run, range, expectedRecords, splitters);
  run.mesh.releaseStreams();
  run.t.sampleMs = span(run, "sample", fromMs);
}

export async function runPeer(options: SortOptions): Promise<PhaseTimings> {
  const startMs = performance.now();
  const startedAtEpochMs = Date.now();
  const exposed = noSecretWarning(
    options.config.servers.map((s) => s.host),
    options.secret,
  );
  if (exposed !== null) log.warn(exposed);
  if (options.config.servers[options.serverId] === undefined) {
    // Not a member: say so to the peers that are, so they stop now too.
    const error = new UsageError(
      `config ${options.config.path}: serverId ${options.serverId} is not listed (it lists ids 0..${options.config.servers.length - 1})`,
    );
    await tellMisfit(options);
    throw error;
  }
  const run = setUp(options, startMs, startedAtEpochMs);
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
        t.connectMs = span(run, "connect", startMs, mesh.connectedAtMs || performance.now());
        if (peers > 1) {
          log.info(
            `mesh up: ${peers - 1} ${peers === 2 ? "peer" : "peers"} connected in ${Math.round(t.connectMs)} ms`,
          );
        }
      },
      () => {},
    );
    if (options.partition === "sample") await sample(run);
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
  t.totalMs = performance.now() - startMs;
  t.peakRssBytes = peakRssBytes();
  log.success(
    `peer ${options.serverId}: sorted ${t.outputRecords} records in ${Math.round(t.totalMs)} ms, output ${options.outputFile} committed on every peer, peak RSS ${formatBytes(t.peakRssBytes)}`,
  );
  return t;
}
