/**
 * Micro-benchmark of the partitioner's record loop: Partitioner.push over an
 * in-memory input, with streams whose sockets take every write at once (so the
 * figure is routing + copying + the batch checksum, no network), in "bits" mode
 * and in "sample" mode (whole-record splitters, src/partition/sample.ts). Each
 * mode runs in its own child process, so the loop's owner call site sees one
 * function, as in a real peer. Prints MB/s per wall second and per CPU second
 * (steadier on a shared machine): the first run apart, median and best of the rest.
 *
 *   bun bench/partition-micro.ts [--records N] [--runs N] [--peers N] [--kind uniform|ascii|skew] [--rounds N]
 *
 * --rounds N: key-range rounds, every record pass N times (the input is
 * routed once per round, as a peer does); MB/s are of the input, per run.
 *
 * skew: as `netsort gen --kind skew`, 90% of the records share one 6-byte key
 * prefix; in sample mode the split points all fall inside that prefix, so those
 * records take the owner function's slow path (the search among the splitters).
 */
import { parseArgs } from "node:util";
import { parseIntArg } from "../src/cli/args.ts";
import { OutStream } from "../src/exchange/streams.ts";
import { readChunkBytes } from "../src/limits.ts";
import { Partitioner } from "../src/partition/partitioner.ts";
import { chooseSplitters, sampleRange, sampleRecordsFor } from "../src/partition/sample.ts";
import { RECORD_BYTES, rangeEnd, rangeStart } from "../src/record.ts";
import { GensortGenerator } from "../src/tools/gensort.ts";
import type { ServerEntry } from "../src/types.ts";

const { values } = parseArgs({
  options: {
    records: { type: "string", default: "1000000" },
    runs: { type: "string", default: "5" },
    peers: { type: "string", default: "4" },
    kind: { type: "string", default: "uniform" },
    mode: { type: "string" },
    rounds: { type: "string", default: "1" },
  },
});
const records = parseIntArg("--records", values.records, 1, 20_000_000);
const runs = parseIntArg("--runs", values.runs, 2, 100);
const peers = parseIntArg("--peers", values.peers, 2, 1024);
const rounds = parseIntArg("--rounds", values.rounds, 1, 64);
const kind = values.kind === "ascii" || values.kind === "skew" ? values.kind : "uniform";
/** skew: records whose byte 9 (random) is below this share the prefix: 230/256 = 90%. */
const skewBelow = 230;
const skewPrefix = [0x5e, 0xed, 0x01, 0x23, 0x45, 0x67];

if (values.mode === undefined) {
  for (const mode of ["bits", "sample"]) {
    const child = Bun.spawnSync(
      [process.execPath, import.meta.path, ...process.argv.slice(2), "--mode", mode],
      { stdout: "inherit", stderr: "inherit" },
    );
    if (child.exitCode !== 0) process.exit(1);
  }
  process.exit(0);
}

function makeInput(): Uint8Array {
  const data = new Uint8Array(records * RECORD_BYTES);
  if (kind === "ascii") {
    data.set(new GensortGenerator({ ascii: true, batchRecords: records }).next(records));
  } else {
    let x = 12345;
    const words = new Uint32Array(data.buffer);
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    if (kind === "skew") {
      for (let o = 0; o < data.length; o += RECORD_BYTES) {
        if (data[o + 9] < skewBelow) data.set(skewPrefix, o);
      }
    }
  }
  return data;
}

/** Splitters from an evenly spaced sample of the input itself (as one peer's sample). */
function splittersFor(data: Uint8Array): Uint8Array {
  const m = sampleRecordsFor(peers);
  const sample = new Uint8Array(m * RECORD_BYTES);
  for (let k = 0; k < m; k++) {
    const r = Math.floor((k * records) / m);
    sample.set(data.subarray(r * RECORD_BYTES, (r + 1) * RECORD_BYTES), k * RECORD_BYTES);
  }
  const samples = Array.from({ length: peers }, () => ({ records: sample, inputRecords: records }));
  return chooseSplitters(samples, peers);
}

const data = makeInput();
const splitters = values.mode === "sample" ? splittersFor(data) : null;
const self = 0;
/** Streams whose sockets take every write at once; fresh per run (marks only go up on a stream). */
const makeOuts = () =>
  Array.from({ length: peers }, (_, id) => {
    if (id === self) return null;
    const out = new OutStream({ serverId: id, host: "127.0.0.1", port: 1 } as ServerEntry, peers);
    const socket = {
      write: (_b: Uint8Array, offset = 0, length = _b.length - offset) => length,
      end: () => {},
    };
    // biome-ignore lint/suspicious/noExplicitAny: a stand-in for Bun's Socket
    out.conn.attach(socket as any);
    return out;
  });
const ranges = Array.from({ length: peers }, (_, k) =>
  splitters === null
    ? { rangeStart: rangeStart(k, peers), rangeEnd: rangeEnd(k, peers) }
    : sampleRange(splitters, k, peers),
);
const rates: number[] = [];
const cpuRates: number[] = [];
for (let run = 0; run < runs; run++) {
  const p = new Partitioner(self, makeOuts(), () => {}, splitters, rounds, ranges);
  const cpu = process.cpuUsage();
  const t = performance.now();
  for (let g = 0; g < rounds; g++) {
    p.beginRound(g);
    for (let o = 0; o < data.length; o += readChunkBytes)
      await p.push(data.subarray(o, Math.min(data.length, o + readChunkBytes)));
    if (g < rounds - 1) p.endRound();
  }
  p.finish();
  const ms = performance.now() - t;
  const used = process.cpuUsage(cpu);
  rates.push(data.length / 1e6 / (ms / 1000));
  cpuRates.push(data.length / 1e6 / ((used.user + used.system) / 1e6));
}
const fmt = (x: number) => x.toFixed(0);
/** First run apart; median and best of the rest. */
const summary = (xs: number[]) => {
  const warm = xs.slice(1).sort((a, b) => a - b);
  return `first ${fmt(xs[0])}, median ${fmt(warm[Math.floor(warm.length / 2)])}, best ${fmt(warm[warm.length - 1])} MB/s`;
};
console.log(
  `${values.mode.padEnd(6)} ${kind} ${peers} peers, ${records} records, ${rounds} rounds: wall ${summary(rates)}; per CPU second ${summary(cpuRates)}`,
);
