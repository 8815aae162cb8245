/**
 * A real peer 0 against a FakePeer (tests/mesh/fake-peer.ts) as peer 1 of a
 * 2-peer cluster: the setup and the two endings that auth.test.ts and
 * rounds.test.ts share. The fake is closed when the body ends; the peer is
 * killed by the test file's dirsPerTest afterEach if it is still running.
 */
import { expect } from "bun:test";
import { readFileSync } from "node:fs";
import { FakePeer, wireFingerprintOf } from "./fake-peer.ts";
import { allExited, errorLine, leftovers, type PeerExit, spawnPeer } from "./fault-helpers.ts";
import {
  expectedOwner,
  freePorts,
  outputPaths,
  problemLines,
  RECORD,
  writeConfig,
  writeInputs,
} from "./harness.ts";

export interface FakeRun {
  dir: string;
  input: string;
  output: string;
  fake: FakePeer;
  /** Peer 0's exit, bounded by the options' runBoundMs. */
  exit: Promise<PeerExit>;
}

export interface FakeRunOptions {
  /** A fresh directory, removed after the test (dirsPerTest). */
  newDir: () => string;
  /** Peer 0's input. */
  input: Uint8Array;
  /** Whether the fake answers peer 0's DONE with an ACK. */
  ackPeer0: boolean;
  runBoundMs: number;
  /** Peer 0's flags after --connect-timeout-ms=10000. */
  args?: string[];
  /** Accept peer 0's dial from the start (default); else the body calls fake.listen() when it wants. */
  listenFirst?: boolean;
}

/** Start peer 0 and the fake, connect the fake's stream to peer 0, then run `body`. */
export async function withFakePeer(o: FakeRunOptions, body: (r: FakeRun) => Promise<void>): Promise<void> {
  const dir = o.newDir();
  const ports = freePorts(2);
  const config = writeConfig(dir, ports);
  const [input] = writeInputs(dir, [o.input]);
  const [output] = outputPaths(dir, 1);
  const fake = new FakePeer(wireFingerprintOf(config), ports, o.ackPeer0);
  try {
    if (o.listenFirst ?? true) fake.listen();
    const args = ["--connect-timeout-ms=10000", ...(o.args ?? [])];
    const peer = spawnPeer({ id: 0, input, output, config, args });
    await fake.dial(10_000);
    await body({ dir, input, output, fake, exit: allExited([peer], o.runBoundMs).then(([e]) => e) });
  } finally {
    fake.close();
  }
}

/** The records of peer 0's input file that peer 0 owns in a 2-peer mesh, in file order. */
export function ownRecords(input: string): Uint8Array[] {
  const data = new Uint8Array(readFileSync(input));
  const own: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += RECORD)
    if (expectedOwner(data, o, 2) === 0) own.push(data.subarray(o, o + RECORD));
  return own;
}

/**
 * After both DONEs: the commit rounds, then peer 0 exits 0 with no warning or
 * error line, and the fake saw nothing off-protocol. Returns the exit.
 */
export async function expectCleanFinish(fake: FakePeer, exit: Promise<PeerExit>): Promise<PeerExit> {
  await fake.commitRounds(5_000);
  const e = await exit;
  expect({ exitCode: e.exitCode, problems: problemLines(e.stderr) }).toEqual({ exitCode: 0, problems: [] });
  expect(fake.problems).toEqual([]);
  return e;
}

/**
 * The fake breaks the protocol (`act`): peer 0 exits 1 within `stopBoundMs`
 * with one error line matching `message`, tells the fake (ABORT naming peer
 * 1), and leaves nothing beside its output's directory entries. Returns the
 * error line and how long peer 0 took to stop.
 */
export async function expectStopAfter(
  run: FakeRun,
  act: (fake: FakePeer) => void,
  message: RegExp,
  stopBoundMs: number,
): Promise<{ line: string; stopMs: number }> {
  const faultAtMs = performance.now();
  act(run.fake);
  const e = await run.exit;
  expect({ exitCode: e.exitCode, signal: e.signal }).toEqual({ exitCode: 1, signal: null });
  const line = errorLine(e);
  expect(line).toMatch(message);
  const stopMs = e.exitAtMs - faultAtMs;
  expect(stopMs).toBeLessThan(stopBoundMs);
  // The ABORT reaches the fake on the stream it did not break (or on both).
  await run.fake.events.wait("abort", 1_000);
  expect(run.fake.aborts[0]).toMatch(/^peer 0 aborted: .*peer 1/);
  expect(leftovers(run.dir, [run.output])).toEqual([]);
  return { line, stopMs: Math.round(stopMs) };
}
