/**
 * The data phases of one peer's run, in order: read and send, wait for the
 * exchange, sort and write. Each records its own figures in run.t and its span.
 */
import { assert } from "../errors.ts";
import { readChunks } from "../io/reader.ts";
import { maxBusyMs } from "../limits.ts";
import { formatBytes, formatRate, log } from "../log.ts";
import { imbalanceWarning } from "../partition/sample.ts";
import { RECORD_BYTES } from "../record.ts";
import { type Run, span, storeOf, timedValidation } from "./run.ts";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Read the input, keep our own records, send the rest as it is read (queued while a peer is not up). */
export async function readAndSend(run: Run): Promise<void> {
  const { validation, options } = run;
  const partitioner = run.partitioner;
  assert(partitioner !== null, "the partitioner exists before reading");
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
 * Sort and write piece by piece as each sorted piece exists (in memory, the
 * store gives a bucket's memory back once its run is written, so the page cache
 * reuses it; after a spill, the pieces come from the merge). Yields to the event
 * loop every maxBusyMs so pings keep flowing. Ends with the output fsynced
 * under its temporary name.
 */
export async function sortAndWrite(run: Run): Promise<void> {
  const { writer, validation } = run;
  const store = storeOf(run);
  const spilled = store.figures;
  if (spilled.spills > 0) {
    log.info(
      `memory: merging ${spilled.runs} runs (${formatBytes(spilled.spilledBytes)} spilled) and the records held, fan-in ${spilled.fanIn}`,
    );
  }
  const fromMs = performance.now();
  let sortMs = 0;
  let writeMs = 0;
  let lastTurnMs = fromMs;
  const pieces = store.sortedChunks();
  while (true) {
    const askedAtMs = performance.now();
    const next = pieces.next();
    const sortedAtMs = performance.now();
    sortMs += sortedAtMs - askedAtMs;
    if (next.done) break;
    if (next.value.length > 0) await writer.write(next.value);
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
  const f = store.figures;
  if (f.spills > 0) {
    const { runs, spilledBytes, mergePasses, spillMs, mergeMs } = f;
    run.t.spill = { runs, spilledBytes, mergePasses, spillMs, mergeMs };
  }
  // Sorting and writing interleave: one span each, laid end to end, with the measured durations.
  span(run, "sort", fromMs, fromMs + sortMs);
  span(run, "write", fromMs + sortMs, performance.now());
  log.info(
    `sorted ${run.t.outputRecords} records in ${Math.round(sortMs)} ms; wrote ${formatBytes(writer.bytes)} in ${Math.round(writeMs)} ms (fsync included), ${formatRate(writer.bytes, writeMs)}`,
  );
}
