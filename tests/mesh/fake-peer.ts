/**
 * Peer 1 of a 2-peer cluster, played by a test against a real peer 0 (loopback
 * only, no secret, no --validate), speaking the real protocol through
 * src/exchange/protocol.ts. It listens and answers peer 0's HELLO with a valid
 * WELCOME, takes peer 0's records, MARKs and DONE (answering ACK when asked), and dials
 * peer 0 with a valid HELLO; the test then writes what it wants on that stream.
 * What it sees is noted in `events`; anything off-protocol lands in `problems`.
 * Used by auth.test.ts (a fake peer breaking the protocol), shutdown.test.ts
 * (a fake peer closing in a chosen order) and mismatch.test.ts (messages).
 */
import { expect } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { loadConfig } from "../../src/config.ts";
import { newNonce } from "../../src/exchange/auth.ts";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import {
  decodeHello,
  decodeMark,
  decodeReason,
  decodeSummary,
  decodeWelcome,
  encodeEmpty,
  encodeHello,
  encodeReady,
  encodeSummary,
  encodeWelcome,
  FRAME_HEADER_BYTES,
  FrameType,
  type StreamSummary,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import { RECORD } from "./harness.ts";

const fakeId = 1;
/** Settings of a plain run (no --validate, bits partitioning, the default idle timeout). */
export const defaultSettings = { validate: false, partition: "bits", idleTimeoutMs: 5_000 } as const;
const peers = 2;
/** The fake redials peer 0 this often until it listens. */
const dialRetryMs = 25;

/** The fingerprint peers of this config put in HELLO and WELCOME (no --validate). */
export function wireFingerprintOf(configPath: string): Uint8Array {
  return new Uint8Array(Buffer.from(loadConfig(configPath).fingerprint, "hex"));
}

/** One DATA frame holding `records`. */
export function dataFrame(records: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + records.length);
  writeHeader(frame, 0, FrameType.Data, records.length);
  frame.set(records, FRAME_HEADER_BYTES);
  return frame;
}

/** Waits for one of a set of events the fake peer notes. */
export class Events {
  private readonly seen = new Map<string, unknown>();
  private readonly waiters = new Map<string, Array<(v: unknown) => void>>();
  note(name: string, value: unknown = true): void {
    if (!this.seen.has(name)) this.seen.set(name, value);
    for (const w of this.waiters.get(name) ?? []) w(value);
    this.waiters.delete(name);
  }
  has(name: string): boolean {
    return this.seen.has(name);
  }
  async wait(name: string, timeoutMs: number): Promise<unknown> {
    if (this.seen.has(name)) return this.seen.get(name);
    let timer: Timer | undefined;
    try {
      return await new Promise((resolve, reject) => {
        this.waiters.set(name, [...(this.waiters.get(name) ?? []), resolve]);
        timer = setTimeout(
          () => reject(new Error(`fake peer: no "${name}" within ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Events: "done-from-0" (peer 0's DONE arrived), "ready-in" (its READY),
 * "ack-from-0" (its ACK of our stream, with the summary), "abort", "in-closed",
 * "out-closed".
 */
export class FakePeer {
  readonly events = new Events();
  readonly problems: string[] = [];
  /** ABORT and REFUSE reasons peer 0 sent, as text. */
  readonly aborts: string[] = [];
  /** Records peer 0 sent us, in stream order (copies), and their count and digest. */
  readonly receivedRecords: Uint8Array[] = [];
  received: StreamSummary = { records: 0, digest: 0 };
  /** The MARKs peer 0 sent us (key-range rounds), in order; a record below the last one is a problem. */
  readonly marksFromPeer0: number[] = [];
  doneFromPeer0: StreamSummary | null = null;
  ackFromPeer0: StreamSummary | null = null;
  /** The stream we dialed to peer 0 (ours to write on); null until dial() succeeds. */
  dialer: Socket<undefined> | null = null;
  private inbound: Socket<undefined> | null = null;
  private listener: TCPSocketListener<undefined> | null = null;
  private closingInbound = false;

  constructor(
    private readonly fingerprint: Uint8Array,
    /** ports[0]: peer 0's, ports[1]: ours. */
    private readonly ports: number[],
    /** Answer peer 0's DONE with an ACK. */
    private readonly ackPeer0: boolean,
  ) {}

  /** Accept peer 0's dial: HELLO -> WELCOME, its records and DONE (-> ACK), READY. */
  listen(): void {
    const decoder = new FrameDecoder(
      {
        onRecords: (buf, offset, length) => {
          const records = buf.slice(offset, offset + length); // the decoder reuses buf
          const mark = this.marksFromPeer0.at(-1) ?? 0;
          for (let o = 0; o < records.length; o += RECORD) {
            const prefix = records.subarray(o, o + 6).reduce((p, b) => p * 256 + b, 0);
            if (prefix < mark) {
              this.problems.push(`peer 0 sent a record with prefix ${prefix} after its MARK ${mark}`);
              break;
            }
          }
          this.receivedRecords.push(records);
          this.received.records += length / RECORD;
          this.received.digest = Bun.hash.crc32(records, this.received.digest);
        },
        onControl: (type, payload) => {
          if (type === FrameType.Hello) {
            const h = decodeHello(payload);
            if (h.senderId !== 0 || h.receiverId !== fakeId || h.peers !== peers)
              this.problems.push(`unexpected hello ${JSON.stringify({ ...h, fingerprint: 0, nonce: 0 })}`);
            if (!Buffer.from(h.fingerprint).equals(Buffer.from(this.fingerprint)))
              this.problems.push("hello with another fingerprint");
            decoder.allowed = new Set([
              FrameType.Data,
              FrameType.Mark,
              FrameType.Done,
              FrameType.Ready,
              FrameType.Committed,
              FrameType.Confirmed,
              FrameType.Abort,
              FrameType.Ping,
            ]);
            this.write(this.inbound, encodeWelcome({ listenerId: fakeId, flags: 0, nonce: newNonce() }));
          } else if (type === FrameType.Mark) {
            const mark = decodeMark(payload);
            if (mark < (this.marksFromPeer0.at(-1) ?? 0))
              this.problems.push(`peer 0's MARK went down to ${mark}`);
            this.marksFromPeer0.push(mark);
          } else if (type === FrameType.Done) {
            const done = decodeSummary(payload);
            this.doneFromPeer0 = done;
            if (done.records !== this.received.records || done.digest !== this.received.digest) {
              this.problems.push(
                `peer 0's DONE says ${done.records} records / ${done.digest}, we got ${this.received.records} / ${this.received.digest}`,
              );
            }
            if (this.ackPeer0) this.write(this.inbound, encodeSummary(FrameType.Ack, done));
            this.events.note("done-from-0");
          } else if (type === FrameType.Ready) {
            this.events.note("ready-in");
          } else if (type === FrameType.Committed) {
            this.events.note("committed-in");
          } else if (type === FrameType.Confirmed) {
            this.events.note("confirmed-in");
          } else if (type === FrameType.Abort) {
            this.noteAbort(payload);
          }
        },
      },
      new Set([FrameType.Hello]),
    );
    this.listener = Bun.listen({
      hostname: "127.0.0.1",
      port: this.ports[1],
      socket: {
        binaryType: "uint8array",
        open: (s) => {
          if (this.inbound !== null) {
            this.problems.push("peer 0 dialed twice");
            s.end();
            return;
          }
          this.inbound = s;
        },
        data: (s, chunk: Uint8Array) => {
          if (s === this.inbound) this.feed(decoder, chunk, "peer 0's out stream");
        },
        close: (s) => {
          if (s !== this.inbound) return;
          if (!this.closingInbound && !this.events.has("confirmed-in") && !this.events.has("abort"))
            this.problems.push("peer 0 closed its out stream before CONFIRMED");
          this.events.note("in-closed");
        },
      },
    });
  }

  /** Dial peer 0 (retrying until it listens, for at most `timeoutMs`) and finish the hello. */
  async dial(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      try {
        await this.tryDial(Math.max(1, deadline - performance.now()));
        return;
      } catch (error) {
        if (performance.now() >= deadline) throw new Error(`fake peer: could not reach peer 0: ${error}`);
        await Bun.sleep(dialRetryMs);
      }
    }
  }

  private async tryDial(welcomeWithinMs: number): Promise<void> {
    const welcomed = Promise.withResolvers<void>();
    const decoder = new FrameDecoder(
      {
        onRecords: () => this.problems.push("records on our own out stream"),
        onControl: (type, payload) => {
          if (type === FrameType.Welcome) {
            const w = decodeWelcome(payload);
            if (w.listenerId !== 0) this.problems.push(`welcome from listener ${w.listenerId}`);
            decoder.allowed = new Set([FrameType.Ack, FrameType.Abort, FrameType.Ping]);
            welcomed.resolve();
          } else if (type === FrameType.Ack) {
            this.ackFromPeer0 = decodeSummary(payload);
            this.events.note("ack-from-0", this.ackFromPeer0);
          } else if (type === FrameType.Refuse) {
            welcomed.reject(new Error(`refused: ${decodeReason(payload)}`));
          } else if (type === FrameType.Abort) {
            this.noteAbort(payload);
          }
        },
      },
      new Set([FrameType.Welcome, FrameType.Refuse, FrameType.Abort]),
    );
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: this.ports[0],
      socket: {
        binaryType: "uint8array",
        data: (_s, chunk: Uint8Array) => this.feed(decoder, chunk, "our out stream"),
        close: () => {
          welcomed.reject(new Error("closed"));
          this.events.note("out-closed");
        },
      },
    });
    this.dialer = socket;
    this.write(
      socket,
      encodeHello({
        senderId: fakeId,
        receiverId: 0,
        peers,
        flags: 0,
        settings: defaultSettings,
        inputRecords: 0,
        fingerprint: this.fingerprint,
        outputTag: newNonce(), // any tag but peer 0's: another output file
        nonce: newNonce(),
      }),
    );
    let timer: Timer | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no WELCOME within ${welcomeWithinMs} ms`)), welcomeWithinMs);
    });
    try {
      await Promise.race([welcomed.promise, late]);
    } catch (error) {
      socket.end();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Write bytes on our stream to peer 0, all of them (small writes: the kernel takes them). */
  send(bytes: Uint8Array): void {
    const wrote = this.dialer?.write(bytes);
    expect(wrote).toBe(bytes.length);
  }

  /**
   * The commit rounds, as a well-behaved peer plays them after its DONE: READY,
   * then COMMITTED once peer 0's COMMITTED arrived, then (unless `stopBefore`
   * says otherwise) CONFIRMED once peer 0's CONFIRMED arrived.
   */
  async commitRounds(boundMs: number, stopBefore: "none" | "confirmed" = "none"): Promise<void> {
    this.send(encodeReady(null));
    await this.events.wait("committed-in", boundMs);
    this.send(encodeEmpty(FrameType.Committed));
    await this.events.wait("confirmed-in", boundMs);
    if (stopBefore !== "confirmed") this.send(encodeEmpty(FrameType.Confirmed));
  }

  /** Write bytes on the stream peer 0 dialed (its out stream), e.g. an ACK of our choosing. */
  sendOnInbound(bytes: Uint8Array): void {
    const wrote = this.inbound?.write(bytes);
    expect(wrote).toBe(bytes.length);
  }

  /** End the connection peer 0 dialed (its out stream). */
  closeInbound(): void {
    this.closingInbound = true;
    this.inbound?.end();
  }

  close(): void {
    this.closingInbound = true;
    this.dialer?.end();
    this.inbound?.end();
    this.listener?.stop(true);
    this.listener = null;
  }

  private noteAbort(payload: Uint8Array): void {
    this.aborts.push(decodeReason(payload));
    this.events.note("abort");
  }

  private feed(decoder: FrameDecoder, chunk: Uint8Array, where: string): void {
    try {
      decoder.push(chunk);
    } catch (error) {
      this.problems.push(`${where}: ${error}`);
    }
  }

  /** In socket callbacks a throw would be lost: a short write is noted instead. */
  private write(socket: Socket<undefined> | null, frame: Uint8Array): void {
    const wrote = socket?.write(frame) ?? 0;
    if (wrote !== frame.length) this.problems.push(`wrote ${wrote} of ${frame.length} bytes`);
  }
}
