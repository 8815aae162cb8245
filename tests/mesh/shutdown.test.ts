/**
 * The end of a run, with the race made deterministic: a 2-peer mesh where peer 0
 * is a real netsort process and peer 1 is a fake written here, speaking the real
 * protocol (src/exchange/protocol.ts) on 127.0.0.1, without a secret.
 *
 * A finishing peer closes both of its connections to a peer right after sending
 * its last frame (CONFIRMED) on one of them. The other peer may handle the close
 * of its out-connection (acked already) before it reads that frame on its
 * in-connection: the two sockets are not ordered. The fake forces that order: it
 * closes peer 0's out-connection, waits, and only then sends its last frame.
 * Peer 0 must finish (exit 0, verified output). The same close without the last
 * frame must fail peer 0 cleanly, naming peer 1: before READY it leaves no files;
 * after it confirmed its own output, that output stays (others may count on it).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  encodeEmpty,
  encodeReady,
  encodeSummary,
  FrameType,
  type StreamSummary,
} from "../../src/exchange/protocol.ts";
import { dataFrame, FakePeer, wireFingerprintOf } from "./fake-peer.ts";
import { allExited, errorLine, killPeers, leftovers, type PeerExit, spawnPeer } from "./fault-helpers.ts";
import {
  expectedOwner,
  freePorts,
  makeRecords,
  RECORD,
  removeDir,
  tempDir,
  writeConfig,
  writeInputs,
} from "./harness.ts";

const peers = 2;
const fakeId = 1;
/** Peer 0's input: mixed keys, so records flow both to the fake and into peer 0's output. */
const inputRecords = 400;
/** Records the fake sends to peer 0; all owned by peer 0, so they must appear in its output. */
const fakeRecords = 60;
/** The fake's pause between closing peer 0's out-connection and acting on its own connection. */
const closeGapMs = 300;
/** The fake dials peer 0 until it listens, for at most this long. */
const fakeDialBoundMs = 5_000;
/** From the fake's stream until peer 0 has sent READY and acked the fake's stream. */
const readyBoundMs = 5_000;
/** Peer 0 must exit within this long after spawn; killed otherwise. */
const exitBoundMs = 8_000;
const testBoundMs = exitBoundMs + 2_000;
/** Timeouts well above closeGapMs: only the behaviour under test may end the run, never a timeout. */
const peerArgs = ["--connect-timeout-ms=5000", "--idle-timeout-ms=5000"];

const fakes = new Set<FakePeer>();

afterEach(() => {
  killPeers();
  for (const f of fakes) f.close();
  fakes.clear();
});

/** Where the fake stops: before READY, before CONFIRMED, or nowhere (a whole run). */
type StopAt = "ready" | "confirmed" | "none";

/**
 * The fake's part: its records and DONE, then the commit rounds up to `stopAt`;
 * then the racy order on purpose: close the connection peer 0 dialed (its out
 * stream, acked), wait, and only then send the last frame (unless it stops
 * before it) on ours and close it.
 */
async function playFake(fake: FakePeer, records: Uint8Array, sent: StreamSummary, stopAt: StopAt) {
  await fake.dial(fakeDialBoundMs);
  if (records.length > 0) fake.send(dataFrame(records));
  fake.send(encodeSummary(FrameType.Done, sent));
  await Promise.all([
    fake.events.wait("ready-in", readyBoundMs),
    fake.events.wait("ack-from-0", readyBoundMs),
  ]);
  let last: Uint8Array | null = encodeReady(null);
  if (stopAt !== "ready") {
    fake.send(encodeReady(null));
    await fake.events.wait("committed-in", readyBoundMs);
    fake.send(encodeEmpty(FrameType.Committed));
    await fake.events.wait("confirmed-in", readyBoundMs);
    last = stopAt === "confirmed" ? null : encodeEmpty(FrameType.Confirmed);
  } else {
    last = null;
  }
  fake.closeInbound();
  await Bun.sleep(closeGapMs);
  const dialer = fake.dialer;
  if (dialer === null) throw new Error("the fake never dialed");
  // Peer 0 may already be gone (the bug): then this write goes nowhere, and the exit says why.
  if (last !== null) dialer.write(last);
  dialer.end();
}

function recordsOf(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += RECORD) out.push(data.subarray(o, o + RECORD));
  return out;
}

/** Records sorted by whole-record memcmp (keys are random, so by key), concatenated: the reference output. */
function sortedConcat(records: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const sorted = [...records].sort((a, b) => Buffer.compare(a, b));
  const out = new Uint8Array(sorted.length * RECORD);
  for (const [i, r] of sorted.entries()) out.set(r, i * RECORD);
  return out;
}

interface Run {
  dir: string;
  port1: number;
  output: string;
  input: Uint8Array;
  /** What the fake sent peer 0, and its summary. */
  fakeSent: Uint8Array;
  sent: StreamSummary;
  fake: FakePeer;
  exit: PeerExit;
}

/** Start the fake, then peer 0; the fake plays its part and ends the run its way. */
async function runAgainstFake(stopAt: StopAt, dir: string): Promise<Run> {
  const [port0, port1] = freePorts(peers);
  const config = writeConfig(dir, [port0, port1]);
  const input = makeRecords(inputRecords, "uniform", 7_001);
  const [inputPath] = writeInputs(dir, [input]);
  const output = join(dir, "output-0.dat");
  const fakeSent = makeRecords(fakeRecords, "one-owner", 7_002);
  const sent = { records: fakeSent.length / RECORD, digest: Bun.hash.crc32(fakeSent, 0) };
  const fake = new FakePeer(wireFingerprintOf(config), [port0, port1], true);
  fakes.add(fake);
  fake.listen();
  const peer = spawnPeer({ id: 0, input: inputPath, output, config, args: peerArgs });
  const played = playFake(fake, fakeSent, sent, stopAt);
  played.catch(() => {}); // surfaced below, after the exit (which says more)
  const [exit] = await allExited([peer], exitBoundMs);
  try {
    await played;
  } catch (error) {
    throw new Error(`the fake could not play its part: ${error}\n--- peer 0 stderr\n${exit.stderr}`);
  }
  return { dir, port1, output, input, fakeSent, sent, fake, exit };
}

describe("shutdown: peer 1 closes peer 0's acked out-connection before its last frame arrives", () => {
  test(
    "CONFIRMED arriving after the close still finishes: peer 0 exits 0 with exactly its records, sorted",
    async () => {
      const dir = tempDir("netsort-shutdown-");
      try {
        const run = await runAgainstFake("none", dir);
        const { exit, fake } = run;
        if (exit.exitCode !== 0) {
          throw new Error(
            `peer 0 exited ${exit.exitCode} (signal ${exit.signal}); fake saw aborts ${JSON.stringify(fake.aborts)}\n--- stderr\n${exit.stderr}`,
          );
        }
        expect(fake.problems).toEqual([]);
        expect(fake.aborts).toEqual([]);
        // Peer 0 sent the fake exactly its records owned by peer 1, and acked the fake's stream.
        const all = recordsOf(run.input);
        const toFake = all.filter((r) => expectedOwner(r, 0, peers) === fakeId);
        const kept = all.filter((r) => expectedOwner(r, 0, peers) === 0);
        expect(toFake.length).toBeGreaterThan(0);
        expect(kept.length).toBeGreaterThan(0);
        expect(sortedConcat(fake.receivedRecords.flatMap(recordsOf))).toEqual(sortedConcat(toFake));
        expect(fake.doneFromPeer0?.records).toBe(toFake.length);
        expect(fake.ackFromPeer0).toEqual(run.sent);
        // The output: peer 0's own records plus the fake's, sorted, byte for byte.
        const fromFake = recordsOf(run.fakeSent);
        expect(fromFake.every((r) => expectedOwner(r, 0, peers) === 0)).toBe(true);
        const expected = sortedConcat([...kept, ...fromFake]);
        expect(new Uint8Array(readFileSync(run.output))).toEqual(expected);
        expect(leftovers(dir, [])).toEqual([]);
      } finally {
        removeDir(dir);
      }
    },
    testBoundMs,
  );

  test(
    "the in-connection closing without READY fails peer 0 (exit 1), naming peer 1, leaving no files",
    async () => {
      const dir = tempDir("netsort-shutdown-");
      try {
        const run = await runAgainstFake("ready", dir);
        const { exit, fake } = run;
        expect(fake.problems).toEqual([]);
        expect({ exitCode: exit.exitCode, signal: exit.signal }).toEqual({ exitCode: 1, signal: null });
        // The stream was complete (DONE acked), READY never came.
        const where = `peer 1 \\(127\\.0\\.0\\.1:${run.port1}\\) closed its stream before it was ready: `;
        expect(errorLine(exit)).toMatch(new RegExp(`^${where}\\S`));
        expect(leftovers(dir, [run.output])).toEqual([]);
      } finally {
        removeDir(dir);
      }
    },
    testBoundMs,
  );

  test(
    "closing without CONFIRMED fails peer 0 (exit 1), naming peer 1; peer 0's own confirmed output stays",
    async () => {
      const dir = tempDir("netsort-shutdown-");
      try {
        const run = await runAgainstFake("confirmed", dir);
        const { exit, fake } = run;
        expect(fake.problems).toEqual([]);
        expect({ exitCode: exit.exitCode, signal: exit.signal }).toEqual({ exitCode: 1, signal: null });
        const where = `peer 1 \\(127\\.0\\.0\\.1:${run.port1}\\) closed its stream after committing its output, before confirming it: `;
        expect(errorLine(exit)).toMatch(new RegExp(`^${where}\\S`));
        // Peer 0 had told the fake its output was in place for good: it must still be there.
        expect(existsSync(run.output)).toBe(true);
        expect(leftovers(dir, [run.output])).toEqual([run.output]);
      } finally {
        removeDir(dir);
      }
    },
    testBoundMs,
  );
});
