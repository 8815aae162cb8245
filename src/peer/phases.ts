/**
 * The data phases of one peer's run, in order: read and send, wait for the
 * exchange, sort and write. Each records its own figures in run.t and its span.
 */
import { assert, NetsortError } from "../errors.ts";
import { END_MARK } from "../exchange/protocol.ts";
import { chunkBuffer, fileVersion, readChunks } from "../io/reader.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import { imbalanceWarning } from "../partition/sample.ts";
import { RECORD_BYTES } from "../record.ts";
import { type SortWriteTimes, turn, writeSorted } from "./drain.ts";
import { type Run, span, storeOf, timedValidation } from "./run.ts";

/**
 * Read the input, keep our own records, send the rest as it is read (queued
 * while a peer is not up). With key-range rounds, once per round: each pass
 * routes that round's records and ends with a MARK to every peer (and to our
 * own drain), so everyone can write the part below it now.
 */
export async function readAndSend(run: Run): Promise<void> {
  const { validation, options, drain } = run;
  const partitioner = run.partitioner;
  assert(partitioner !== null && drain !== null, "the partitioner and drain exist before reading");
  const fromMs = performance.now();
  const version = partitioner.rounds > 1 ? fileVersion(options.inputFile) : "";
  const buffer = chunkBuffer(run.inputBytes); // one for every pass: no fresh pages per round
  for (let round = 0; round < partitioner.rounds; round++) {
    partitioner.beginRound(round);
    run.readBytes = 0;
    for await (const chunk of readChunks(options.inputFile, run.inputBytes, buffer)) {
      if (round === 0 && validation !== null) timedValidation(run, () => validation.addInput(chunk));
      await partitioner.push(chunk);
      run.readBytes += chunk.length;
      await turn(); // let sockets drain and receive between chunks
    }
    // Each pass must see the same records, or some would be sent twice and others never.
    if (partitioner.rounds > 1 && fileVersion(options.inputFile) !== version) {
      throw new NetsortError(
        `input ${options.inputFile}: changed while being read (during key-range round ${round + 1} of ${partitioner.rounds})`,
      );
    }
    if (round < partitioner.rounds - 1) drain.setLocalMark(partitioner.endRound());
  }
  partitioner.finish();
  drain.setLocalMark(END_MARK);
  run.t.readMs = span(run, "read", fromMs);
  const kept = partitioner.routed[options.serverId];
  const rounds = partitioner.rounds === 1 ? "" : ` in ${partitioner.rounds} key-range rounds`;
  log.info(
    `read ${formatBytes(run.inputBytes)} (${run.t.inputRecords} records)${rounds} in ${Math.round(run.t.readMs)} ms, ${formatRate(run.inputBytes, run.t.readMs)}; kept ${kept}, sent ${run.t.inputRecords - kept} records`,
  );
}

/**
 * After our own read: end every stream (once the mesh is up) and wait until
 * every other peer's stream has arrived whole; say so when our share is far
 * from fair. The wait for late peers counts here, not in the read.
 */
export async function awaitExchange(run: Run): Promise<void> {
  const { mesh } = run;
  const store = storeOf(run);
  const fromMs = performance.now();
  await mesh.whenConnected();
  mesh.finishStreams();
  await mesh.whenAllReceived();
  run.t.exchangeMs = span(run, "exchange", fromMs);
  run.t.sentBytes = mesh.out.reduce((sum, o) => sum + (o === null ? 0 : o.records * RECORD_BYTES), 0);
  run.t.receivedBytes = mesh.in.reduce((sum, s) => sum + (s === null ? 0 : s.records * RECORD_BYTES), 0);
  const peers = mesh.peers;
  log.info(
    `exchange: waited ${Math.round(run.t.exchangeMs)} ms after reading; received ${run.t.receivedBytes / RECORD_BYTES} records from ${peers - 1} ${peers === 2 ? "peer" : "peers"}, holding ${store.records}`,
  );
  if ((run.options.partition ?? "bits") === "bits") {
    const totalRecords = mesh.in.reduce((sum, s) => sum + (s?.inputRecords ?? 0), run.t.inputRecords);
    const warning = imbalanceWarning(store.records, totalRecords, peers);
    if (warning !== null) log.warn(warning);
  }
}

/**
 * After the last stream: stop the drain (src/peer/drain.ts), then sort and
 * write the rest of the share piece by piece as each sorted piece exists (in
 * memory, the store gives a group's memory back once its runs are written;
 * after a spill, the pieces come from the merge). Yields to the event loop
 * every maxBusyMs so pings keep flowing. Ends with the output fsynced under
 * its temporary name.
 */
export async function sortAndWrite(run: Run): Promise<void> {
  const { writer, drain } = run;
  const store = storeOf(run);
  assert(drain !== null, "the drain exists with the store");
  await drain.stop();
  const spilled = store.figures;
  if (spilled.spills > 0) {
    log.info(
      `memory: merging ${spilled.runs} runs (${formatBytes(spilled.spilledBytes)} spilled) and the records held, fan-in ${spilled.fanIn}`,
    );
  }
  if (drain.bytes > 0) {
    log.info(
      `wrote ${formatBytes(drain.bytes)} of the output while records arrived (sort ${Math.round(drain.times.sortMs)} ms, write ${Math.round(drain.times.writeMs)} ms)`,
    );
  }
  const fromMs = performance.now();
  const times: SortWriteTimes = { sortMs: 0, writeMs: 0 };
  await writeSorted(run, store.sortedChunks(), times);
  const prepareFromMs = performance.now();
  await writer.prepare();
  times.writeMs += performance.now() - prepareFromMs;
  run.t.sortMs = times.sortMs;
  run.t.writeMs = times.writeMs;
  run.t.drainMs = drain.times.sortMs + drain.times.writeMs;
  run.t.drainedBytes = drain.bytes;
  run.t.outputRecords = writer.bytes / RECORD_BYTES;
  const f = store.figures;
  if (f.spills > 0) {
    const { runs, spilledBytes, mergePasses, spillMs, mergeMs } = f;
    run.t.spill = { runs, spilledBytes, mergePasses, spillMs, mergeMs };
  }
  // Sorting and writing interleave: one span each, laid end to end, with the measured durations.
  span(run, "sort", fromMs, fromMs + times.sortMs);
  span(run, "write", fromMs + times.sortMs, performance.now());
  log.info(
    `sorted ${run.t.outputRecords} records in ${Math.round(times.sortMs + drain.times.sortMs)} ms; wrote ${formatBytes(writer.bytes)} in ${Math.round(times.writeMs + drain.times.writeMs)} ms (fsync included), ${formatRate(writer.bytes, times.writeMs + drain.times.writeMs)}`,
  );
}
