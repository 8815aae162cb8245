/**
 * The end of a run, with the race made deterministic: a 2-peer mesh where peer 0
 * is a real netsort process and peer 1 is a fake written here, speaking the real
 * protocol (src/exchange/protocol.ts) on 127.0.0.1, without a secret.
 *
 * A committing peer closes both of its connections to a peer right after sending
 * READY on one of them. The other peer may handle the close of its out-connection
 * (acked already) before it reads that READY on its in-connection: the two sockets
 * are not ordered. The fake forces that order: it closes peer 0's out-connection,
 * waits, and only then sends READY. Peer 0 must commit (exit 0, verified output).
 * The same close without a READY must fail peer 0 cleanly, naming peer 1.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { loadConfig } from "../../src/config.ts";
import { newNonce, noProof } from "../../src/exchange/auth.ts";
import {
  decodeHello,
  decodeReason,
  decodeSummary,
  decodeWelcome,
  encodeHello,
  encodeReady,
  encodeSummary,
  encodeWelcome,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  type StreamSummary,
  writeHeader,
} from "../../src/exchange/protocol.ts";
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
/** The fake redials peer 0 this often until it listens, for at most fakeDialBoundMs. */
const fakeDialRetryMs = 25;
const fakeDialBoundMs = 5_000;
/** From spawn until peer 0 has sent READY and received the fake's stream (both are needed first). */
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

/** A promise with its resolver, bounded when awaited through `within`. */
function signal<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type SocketData = { push(chunk: Uint8Array): void; closed(): void };

/**
 * Peer 1, played by the test. It accepts peer 0's dial (peer 0's out stream: its
 * records, DONE, READY) and dials peer 0 (the fake's out stream: its records,
 * DONE, then READY or not, as the case wants). Anything off-protocol is kept in
 * `problems` for the test to show.
 */
class FakePeer {
  readonly problems: string[] = [];
  /** Control frames from peer 0 that end a run early (ABORT, REFUSE), as text. */
  readonly aborts: string[] = [];
  /** Records peer 0 sent us, in stream order. */
  readonly received: Uint8Array[] = [];
  private receivedDigest = 0;
  /** Peer 0's DONE, and the ACK peer 0 sent for our stream. */
  doneFromPeer0: StreamSummary | null = null;
  ackFromPeer0: StreamSummary | null = null;
  readonly sent: StreamSummary;
  readonly peer0Ready = signal<void>();
  readonly peer0Acked = signal<void>();
  private listener: TCPSocketListener<SocketData> | null = null;
  /** The connection peer 0 dialed (its out stream), and the one we dialed (our out stream). */
  private accepted: Socket<SocketData> | null = null;
  private dialed: Socket<SocketData> | null = null;
  private closing = false;

  constructor(
    private readonly port: number,
    private readonly peer0Port: number,
    private readonly fingerprint: Uint8Array,
    private readonly records: Uint8Array,
  ) {
    this.sent = { records: records.length / RECORD, digest: Bun.hash.crc32(records, 0) };
    fakes.add(this);
  }

  listen(): void {
    this.listener = Bun.listen<SocketData>({
      hostname: "127.0.0.1",
      port: this.port,
      socket: {
        binaryType: "uint8array",
        open: (s) => this.accept(s),
        data: (s, chunk) => s.data.push(chunk),
        close: (s) => s.data?.closed(),
        error: (s, e) => {
          this.problems.push(`accepted socket error: ${e}`);
          s.data?.closed();
        },
      },
    });
  }

  /** Peer 0's dial: HELLO -> WELCOME, then its records and DONE -> ACK, then READY. */
  private accept(socket: Socket<SocketData>): void {
    if (this.accepted !== null) {
      this.problems.push("peer 0 dialed twice");
      socket.end();
      return;
    }
    this.accepted = socket;
    const decoder = new FrameDecoder(
      {
        onRecords: (buf, offset, length) => {
          const records = buf.slice(offset, offset + length); // buf is reused by the decoder
          this.received.push(records);
          this.receivedDigest = Bun.hash.crc32(records, this.receivedDigest);
        },
        onControl: (type, payload) => {
          if (type === FrameType.Hello) {
            const h = decodeHello(payload);
            if (h.senderId !== 0 || h.receiverId !== fakeId || h.peers !== peers)
              this.problems.push(`unexpected hello ${JSON.stringify({ ...h, fingerprint: 0, nonce: 0 })}`);
            if (!Buffer.from(h.fingerprint).equals(Buffer.from(this.fingerprint)))
              this.problems.push("hello with another fingerprint");
            this.write(
              socket,
              encodeWelcome({
                listenerId: fakeId,
                fingerprint: this.fingerprint,
                nonce: newNonce(),
                proof: noProof,
              }),
            );
            decoder.allowed = new Set([FrameType.Data, FrameType.Done, FrameType.Ping, FrameType.Abort]);
          } else if (type === FrameType.Done) {
            const done = decodeSummary(payload);
            this.doneFromPeer0 = done;
            const records = this.received.reduce((n, b) => n + b.length / RECORD, 0);
            if (done.records !== records || done.digest !== this.receivedDigest) {
              this.problems.push(
                `peer 0's DONE says ${done.records} records / ${done.digest}, we got ${records} / ${this.receivedDigest}`,
              );
            }
            this.write(socket, encodeSummary(FrameType.Ack, done));
            decoder.allowed = new Set([FrameType.Ready, FrameType.Ping, FrameType.Abort]);
          } else if (type === FrameType.Ready) {
            this.peer0Ready.resolve();
            decoder.allowed = new Set([FrameType.Ping, FrameType.Abort]);
          } else if (type === FrameType.Abort) {
            this.aborts.push(decodeReason(payload));
          }
        },
      },
      new Set([FrameType.Hello]),
    );
    socket.data = {
      push: (chunk) => this.feed(decoder, chunk, "peer 0's out stream"),
      closed: () => {
        if (!this.closing && socket === this.accepted) this.problems.push("peer 0 closed its out stream");
      },
    };
  }

  /** Dial peer 0 (retrying until it listens), send our HELLO, records and DONE. */
  async dial(): Promise<void> {
    const welcomed = signal<void>();
    const decoder = new FrameDecoder(
      {
        onRecords: () => this.problems.push("records on our own out stream"),
        onControl: (type, payload) => {
          if (type === FrameType.Welcome) {
            const w = decodeWelcome(payload);
            if (w.listenerId !== 0) this.problems.push(`welcome from listener ${w.listenerId}`);
            decoder.allowed = new Set([FrameType.Ack, FrameType.Ping, FrameType.Abort]);
            welcomed.resolve();
          } else if (type === FrameType.Ack) {
            this.ackFromPeer0 = decodeSummary(payload);
            this.peer0Acked.resolve();
          } else if (type === FrameType.Abort || type === FrameType.Refuse) {
            this.aborts.push(decodeReason(payload));
          }
        },
      },
      new Set([FrameType.Welcome, FrameType.Refuse, FrameType.Abort]),
    );
    const data: SocketData = {
      push: (chunk) => this.feed(decoder, chunk, "our out stream"),
      closed: () => {},
    };
    const giveUpAtMs = performance.now() + fakeDialBoundMs;
    while (this.dialed === null) {
      try {
        this.dialed = await Bun.connect<SocketData>({
          hostname: "127.0.0.1",
          port: this.peer0Port,
          data,
          socket: {
            binaryType: "uint8array",
            data: (s, chunk) => s.data.push(chunk),
            close: (s) => s.data.closed(),
            error: (s) => s.data.closed(),
          },
        });
      } catch (error) {
        if (performance.now() >= giveUpAtMs || this.closing) throw error;
        await Bun.sleep(fakeDialRetryMs);
      }
    }
    this.write(
      this.dialed,
      encodeHello({
        senderId: fakeId,
        receiverId: 0,
        peers,
        fingerprint: this.fingerprint,
        nonce: newNonce(),
      }),
    );
    await within(welcomed.promise, readyBoundMs, "WELCOME from peer 0");
    if (this.records.length > 0) {
      const frame = new Uint8Array(FRAME_HEADER_BYTES + this.records.length);
      writeHeader(frame, 0, FrameType.Data, this.records.length);
      frame.set(this.records, FRAME_HEADER_BYTES);
      this.write(this.dialed, frame);
    }
    this.write(this.dialed, encodeSummary(FrameType.Done, this.sent));
  }

  /**
   * The racy order, on purpose: once peer 0 is ready and has acked our stream,
   * close the connection peer 0 dialed (its out stream, acked), wait, and only
   * then (optionally) send READY on ours and close it.
   */
  async endRun(sendReady: boolean): Promise<void> {
    await within(
      Promise.all([this.peer0Ready.promise, this.peer0Acked.promise]),
      readyBoundMs,
      "READY and ACK from peer 0",
    );
    this.closing = true;
    this.accepted?.end();
    await Bun.sleep(closeGapMs);
    const dialed = this.dialed;
    if (dialed === null) throw new Error("the fake never dialed");
    // Peer 0 may already be gone (the bug): then this write goes nowhere, and the exit says why.
    if (sendReady) dialed.write(encodeReady(null));
    dialed.end();
  }

  close(): void {
    this.closing = true;
    this.accepted?.end();
    this.dialed?.end();
    this.listener?.stop(true);
    this.listener = null;
  }

  private feed(decoder: FrameDecoder, chunk: Uint8Array, where: string): void {
    try {
      decoder.push(chunk);
    } catch (error) {
      this.problems.push(`${where}: ${error}`);
    }
  }

  /** Frames here are small: the kernel takes them whole on a fresh loopback socket. */
  private write(socket: Socket<SocketData>, frame: Uint8Array): void {
    const wrote = socket.write(frame);
    if (wrote !== frame.length) this.problems.push(`wrote ${wrote} of ${frame.length} bytes`);
  }
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
  /** What the fake sent peer 0. */
  fakeSent: Uint8Array;
  fake: FakePeer;
  exit: PeerExit;
}

/** Start the fake, then peer 0; the fake plays its part and ends the run its way. */
async function runAgainstFake(sendReady: boolean, dir: string): Promise<Run> {
  const [port0, port1] = freePorts(peers);
  const config = writeConfig(dir, [port0, port1]);
  const fingerprint = new Uint8Array(Buffer.from(loadConfig(config).fingerprint, "hex"));
  const input = makeRecords(inputRecords, "uniform", 7_001);
  const [inputPath] = writeInputs(dir, [input]);
  const output = join(dir, "output-0.dat");
  const fakeSent = makeRecords(fakeRecords, "one-owner", 7_002);
  const fake = new FakePeer(port1, port0, fingerprint, fakeSent);
  fake.listen();
  const peer = spawnPeer({ id: 0, input: inputPath, output, config, args: peerArgs });
  const played = (async () => {
    await fake.dial();
    await fake.endRun(sendReady);
  })();
  played.catch(() => {}); // surfaced below, after the exit (which says more)
  const [exit] = await allExited([peer], exitBoundMs);
  try {
    await played;
  } catch (error) {
    throw new Error(`the fake could not play its part: ${error}\n--- peer 0 stderr\n${exit.stderr}`);
  }
  return { dir, port1, output, input, fakeSent, fake, exit };
}

describe("shutdown: peer 1 closes peer 0's acked out-connection before its READY arrives", () => {
  test(
    "READY arriving after the close still commits: peer 0 exits 0 with exactly its records, sorted",
    async () => {
      const dir = tempDir("netsort-shutdown-");
      try {
        const run = await runAgainstFake(true, dir);
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
        expect(sortedConcat(fake.received.flatMap(recordsOf))).toEqual(sortedConcat(toFake));
        expect(fake.doneFromPeer0?.records).toBe(toFake.length);
        expect(fake.ackFromPeer0).toEqual(fake.sent);
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
        const run = await runAgainstFake(false, dir);
        const { exit, fake } = run;
        expect(fake.problems).toEqual([]);
        expect({ exitCode: exit.exitCode, signal: exit.signal }).toEqual({ exitCode: 1, signal: null });
        // onInClosed's message: the stream was complete (DONE acked), READY never came.
        const where = `peer 1 \\(127\\.0\\.0\\.1:${run.port1}\\) closed its stream before it was ready: `;
        expect(errorLine(exit)).toMatch(new RegExp(`^${where}\\S`));
        expect(leftovers(dir, [run.output])).toEqual([]);
      } finally {
        removeDir(dir);
      }
    },
    testBoundMs,
  );
});
