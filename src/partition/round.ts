/**
 * The sampling round of --partition sample (docs/protocol.md, "Sampling"):
 * before any record moves, every peer draws a sample of its input, sends it
 * first on each of its streams (SAMPLE, with its input's record count), and
 * waits for everyone's. Every peer then computes the same N-1 split points from
 * the same samples in peer order, and so the same ranges.
 */
import type { Mesh } from "../exchange/mesh.ts";
import { encodeSample } from "../exchange/protocol.ts";
import { log } from "../log.ts";
import { RECORD_BYTES } from "../record.ts";
import type { SortOptions } from "../types.ts";
import { chooseSplitters, drawSample, type PeerSample, sampleRange, sampleRecordsFor } from "./sample.ts";

export interface SampledRanges {
  splitters: Uint8Array;
  /** This peer's key-prefix range, for its store. */
  range: { rangeStart: number; rangeEnd: number };
  /** About what each peer will hold: the cluster's records over the peers. */
  expectedRecords: number;
}

export async function sampleRound(
  mesh: Mesh,
  options: SortOptions,
  inputBytes: number,
): Promise<SampledRanges> {
  const peers = mesh.peers;
  const self = options.serverId;
  const ownInputRecords = inputBytes / RECORD_BYTES;
  const own: PeerSample = {
    records: drawSample(options.inputFile, inputBytes, sampleRecordsFor(peers)),
    inputRecords: ownInputRecords,
  };
  if (peers > 1) {
    await mesh.whenConnected();
    mesh.sendSample(encodeSample(own));
    await mesh.whenAllSampled();
  }
  const samples: PeerSample[] = mesh.in.map((stream, id) => {
    if (id === self) return own;
    const sample = stream?.sample;
    if (sample == null) throw new Error(`assertion failed: peer ${id}'s sample is in`);
    return sample;
  });
  const splitters = chooseSplitters(samples, peers);
  const totalRecords = samples.reduce((sum, s) => sum + s.inputRecords, 0);
  const sampled = samples.reduce((sum, s) => sum + s.records.length / RECORD_BYTES, 0);
  log.info(
    `partition: ${peers - 1} split points from ${sampled} sampled records of ${totalRecords}; every output gets about ${Math.round(totalRecords / peers)} records`,
  );
  return {
    splitters,
    range: sampleRange(splitters, self, peers),
    expectedRecords: Math.ceil(totalRecords / peers),
  };
}
