/**
 * Fuzz of the sealed channel (seal.ts) in front of the FrameDecoder, as a link
 * runs them: valid frame streams are sealed, then mutated (bit flips, byte
 * insertions and deletions, dropped, duplicated, swapped and spliced records,
 * rewritten lengths, truncation, garbage), split at random points and opened.
 *
 * For every input: the only error is SealError; plaintext reaches the decoder
 * only for records that arrived byte-identical at their place (never a byte of a
 * damaged or foreign record); a changed stream always fails; the outcome does
 * not depend on the split; the opener holds at most one record.
 *
 * The fuzz runs in a worker (this same file) so that a loop that never ends is
 * cut at a deadline instead of wedging the test run.
 */
import { describe, expect, test } from "bun:test";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import {
  encodeEmpty,
  encodeReason,
  encodeSummary,
  FRAME_HEADER_BYTES,
  FrameType,
  ProtocolError,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import {
  deriveLinkKeys,
  linkOpener,
  linkSealer,
  maxSealedPlaintextBytes,
  SealError,
  sealOverheadBytes,
} from "../../src/exchange/seal.ts";
import { RECORD_BYTES } from "../../src/record.ts";
import { prng } from "../helpers.ts";
import { reportFromWorker } from "./fuzz-worker.ts";

/** Mutated streams generated (each opened whole and split). */
const fuzzInputs = 6_000;
/** The worker must finish within this long, or the opener is taken to hang. */
const fuzzDeadlineMs = 60_000;
/** Most frames in one stream: enough to drop, duplicate and swap records. */
const maxFramesPerStream = 6;
/** Largest DATA frame in the fuzz, in records: small, so many inputs fit in the time. */
const maxRecordsPerFrame = 12;

interface FuzzReport {
  inputs: number;
  clean: number;
  sealErrors: number;
  partialDeliveries: number;
  maxHeldBytes: number;
  failures: string[];
  elapsedMs: number;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function runFuzz(seed: number): FuzzReport {
  const started = performance.now();
  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const report: FuzzReport = {
    inputs: 0,
    clean: 0,
    sealErrors: 0,
    partialDeliveries: 0,
    maxHeldBytes: 0,
    failures: [],
    elapsedMs: 0,
  };
  const fail = (message: string) => {
    if (report.failures.length < 20) report.failures.push(`${message} [mutation ${lastKind}]`);
  };
  const secret = new TextEncoder().encode("fuzz secret 0123456789abcdef0123456789");
  const context = {
    fingerprint: new Uint8Array(32).fill(7),
    dialerId: 0,
    listenerId: 1,
    dialerNonce: new Uint8Array(32).fill(1),
    listenerNonce: new Uint8Array(32).fill(2),
  };
  const keys = deriveLinkKeys(secret, context);

  function randomFrame(): Uint8Array {
    const kind = int(5);
    if (kind === 0) return encodeEmpty(FrameType.Ping);
    if (kind === 1) return encodeSummary(FrameType.Done, { records: int(1000), digest: int(2 ** 32) });
    if (kind === 2) return encodeReason(FrameType.Abort, `reason ${int(1e6)}`);
    const records = 1 + int(maxRecordsPerFrame);
    const frame = new Uint8Array(FRAME_HEADER_BYTES + records * RECORD_BYTES);
    writeHeader(frame, 0, FrameType.Data, records * RECORD_BYTES);
    for (let i = FRAME_HEADER_BYTES; i < frame.length; i++) frame[i] = int(256);
    return frame;
  }

  /** A genuine sealed stream: its frames, records and where each record ends. */
  function genuine() {
    const sealer = linkSealer(keys, "dialer");
    const frames = Array.from({ length: 1 + int(maxFramesPerStream) }, randomFrame);
    const records = frames.map((f) => sealer.seal(f));
    const ends: number[] = [];
    let at = 0;
    for (const r of records) {
      at += r.length;
      ends.push(at);
    }
    return { frames, records, stream: new Uint8Array(Buffer.concat(records)), ends };
  }

  /** Another connection's records (other nonce, same secret): valid-looking, wrong key. */
  function foreignRecord(): Uint8Array {
    const other = deriveLinkKeys(secret, { ...context, dialerNonce: new Uint8Array(32).fill(3 + int(250)) });
    return linkSealer(other, "dialer").seal(randomFrame());
  }

  let lastKind = 0;
  function mutate(g: ReturnType<typeof genuine>): Uint8Array {
    const s = g.stream;
    const r = g.records;
    lastKind = int(11);
    switch (lastKind) {
      case 0: {
        const out = s.slice();
        for (let k = 1 + int(3); k > 0; k--) out[int(out.length)] ^= 1 << int(8);
        return out;
      }
      case 1: {
        const at = int(s.length + 1);
        return new Uint8Array(Buffer.concat([s.subarray(0, at), new Uint8Array([int(256)]), s.subarray(at)]));
      }
      case 2: {
        const at = int(s.length);
        return new Uint8Array(Buffer.concat([s.subarray(0, at), s.subarray(at + 1 + int(20))]));
      }
      case 3: {
        const drop = int(r.length);
        return new Uint8Array(Buffer.concat(r.filter((_, i) => i !== drop)));
      }
      case 4: {
        const dup = int(r.length);
        return new Uint8Array(Buffer.concat([...r.slice(0, dup + 1), r[dup], ...r.slice(dup + 1)]));
      }
      case 5: {
        if (r.length < 2) return s.subarray(0, int(s.length));
        const i = int(r.length - 1);
        const swapped = r.slice();
        [swapped[i], swapped[i + 1]] = [swapped[i + 1], swapped[i]];
        return new Uint8Array(Buffer.concat(swapped));
      }
      case 6:
        return s.subarray(0, int(s.length));
      case 7: {
        // Rewrite one record's length field (the AAD), keeping everything else.
        const out = s.slice();
        const i = int(r.length);
        const start = i === 0 ? 0 : g.ends[i - 1];
        new DataView(out.buffer).setUint32(start, int(3) === 0 ? 0xffffffff : int(r[i].length + 64));
        return out;
      }
      case 8: {
        const at = int(r.length + 1);
        return new Uint8Array(Buffer.concat([...r.slice(0, at), foreignRecord(), ...r.slice(at)]));
      }
      case 9: {
        // Records of the right connection and key, sealed again: counters restart at 0.
        const again = linkSealer(keys, "dialer");
        const at = 1 + int(r.length);
        return new Uint8Array(
          Buffer.concat([...r.slice(0, at), ...g.frames.slice(0, 1).map((f) => again.seal(f))]),
        );
      }
      default: {
        const garbage = new Uint8Array(1 + int(2000));
        for (let i = 0; i < garbage.length; i++) garbage[i] = int(256);
        if (garbage.length >= 4 && int(2) === 0)
          new DataView(garbage.buffer).setUint32(0, int(garbage.length));
        const at = int(r.length + 1);
        return new Uint8Array(Buffer.concat([...r.slice(0, at), garbage]));
      }
    }
  }

  /** Open `input` in `pieces` into a FrameDecoder; returns a log of the outcome and the plaintext. */
  function open(input: Uint8Array, pieces: number[], role: "listener" | "dialer") {
    const plain: Uint8Array[] = [];
    const decoder = new FrameDecoder(
      {
        onControl(type, payload) {
          plain.push(new Uint8Array([type]), payload.slice());
        },
        onRecords(buf, offset, length) {
          plain.push(buf.slice(offset, offset + length));
        },
      },
      new Set([FrameType.Ping, FrameType.Done, FrameType.Abort, FrameType.Data]),
    );
    const delivered: Uint8Array[] = [];
    const opener = linkOpener(keys, role, (bytes) => {
      delivered.push(bytes.slice());
      decoder.push(bytes);
    });
    let outcome = "clean";
    let at = 0;
    try {
      for (const size of pieces) {
        opener.push(input.subarray(at, at + size));
        at += size;
        // Held back: at most the current record's plaintext, within its checked length.
        const inside = opener as unknown as { pieces: Uint8Array[]; length: number };
        let held = 0;
        for (const p of inside.pieces) held += p.length;
        if (held > inside.length || held > maxSealedPlaintextBytes)
          fail(`held ${held} of a ${inside.length}-byte record`);
        report.maxHeldBytes = Math.max(report.maxHeldBytes, held);
      }
      opener.finish();
    } catch (error) {
      if (error instanceof SealError) outcome = `seal:${error.message}`;
      else if (error instanceof ProtocolError) outcome = `protocol:${error.message}`;
      else outcome = `foreign:${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
    }
    return {
      outcome,
      delivered: Buffer.concat(delivered),
      plain: Buffer.concat(plain),
      records: opener.records,
    };
  }

  function randomPieces(length: number): number[] {
    const pieces: number[] = [];
    let left = length;
    const style = int(3);
    while (left > 0) {
      const size = Math.min(left, style === 0 ? 1 + int(5) : style === 1 ? 1 + int(200) : 1 + int(3000));
      pieces.push(size);
      left -= size;
    }
    return pieces;
  }

  for (let n = 0; n < fuzzInputs; n++) {
    const g = genuine();
    const reflect = n % 11 === 9;
    // Every 11th input: the genuine stream reflected back to its sender (opened with the dialer's own key).
    const input = reflect ? g.stream : mutate(g);
    const role = reflect ? "dialer" : "listener";
    report.inputs++;
    // What may be delivered: the genuine records that arrived whole and unchanged at their place.
    let common = 0;
    while (common < input.length && common < g.stream.length && input[common] === g.stream[common]) common++;
    const intact = reflect ? 0 : g.ends.filter((end) => end <= common).length;
    const expected = Buffer.concat(g.frames.slice(0, intact));
    const unchanged = !reflect && input.length === g.stream.length && common === input.length;
    const prefixAtBoundary =
      !reflect && common === input.length && (input.length === 0 || g.ends.includes(input.length));

    const whole = open(input, input.length > 0 ? [input.length] : [], role);
    const split = open(input, randomPieces(input.length), role);
    for (const [how, result] of [
      ["whole", whole],
      ["split", split],
    ] as const) {
      if (result.outcome.startsWith("foreign:") || result.outcome.startsWith("protocol:")) {
        fail(`input ${n} (${how}): ${result.outcome}`);
      }
      if (hex(result.delivered) !== hex(expected)) {
        fail(
          `input ${n} (${how}): delivered ${result.delivered.length} bytes, expected the ${intact} intact records (${expected.length} bytes)`,
        );
      }
      // The decoder saw exactly the intact frames: the plaintext it got is their payloads, in order.
      if (result.records !== intact)
        fail(`input ${n} (${how}): opened ${result.records} records, ${intact} intact`);
      if ((unchanged || prefixAtBoundary) !== (result.outcome === "clean")) {
        fail(
          `input ${n} (${how}): outcome ${result.outcome} for a ${unchanged ? "unchanged" : prefixAtBoundary ? "whole-record prefix" : "changed"} stream`,
        );
      }
    }
    if (whole.outcome !== split.outcome)
      fail(`input ${n}: outcome depends on the split: ${whole.outcome} vs ${split.outcome}`);
    if (whole.outcome === "clean") report.clean++;
    else report.sealErrors++;
    if (intact > 0 && whole.outcome !== "clean") report.partialDeliveries++;
  }
  report.elapsedMs = performance.now() - started;
  return report;
}

if (!isMainThread) {
  const seed = (workerData as { seed: number }).seed;
  let report: FuzzReport;
  try {
    report = runFuzz(seed);
  } catch (error) {
    report = {
      inputs: 0,
      clean: 0,
      sealErrors: 0,
      partialDeliveries: 0,
      maxHeldBytes: 0,
      failures: [`fuzz harness threw ${error instanceof Error ? error.stack : error}`],
      elapsedMs: 0,
    };
  }
  parentPort!.postMessage(report);
} else {
  describe("sealed stream fuzz", () => {
    test(
      "mutated sealed streams only raise SealError, never yield a damaged record's plaintext, and do not depend on the split",
      async () => {
        const report = await reportFromWorker<FuzzReport>(
          import.meta.url,
          { seed: 20261201 },
          fuzzDeadlineMs,
        );
        expect(report.failures).toEqual([]);
        expect(report.inputs).toBe(fuzzInputs);
        // Both outcomes and partial deliveries occur: the fuzz reaches past the first record.
        expect(report.sealErrors).toBeGreaterThan(report.inputs / 2);
        expect(report.clean).toBeGreaterThan(0);
        expect(report.partialDeliveries).toBeGreaterThan(report.inputs / 10);
        expect(report.maxHeldBytes).toBeGreaterThan(0);
        console.log(
          `seal fuzz: ${report.inputs} inputs, ${report.sealErrors} seal errors, ${report.clean} clean, ${report.partialDeliveries} partial, ${Math.round(report.elapsedMs)} ms (record overhead ${sealOverheadBytes} B)`,
        );
      },
      fuzzDeadlineMs + 5_000,
    );
  });
}
