/**
 * A TCP proxy between two real peers (loopback only), for the sealed-channel
 * tests (tests/mesh/seal.test.ts). It forwards both directions of every
 * connection, records every byte it forwards, and can tamper with the sealed
 * records the dialer sends: after the handshake's two clear frames from the
 * dialer (HELLO, AUTH) the dialer's stream is cut into sealed records
 * ([u32 length][ciphertext][16-byte tag], src/exchange/seal.ts) and each goes
 * through `tamper`, which returns what to send instead (nothing: dropped; twice:
 * replayed; held and sent later: reordered; changed: flipped).
 * Writes respect backpressure: what the kernel does not take waits for `drain`.
 */
import type { Socket, TCPSocketListener } from "bun";
import { FRAME_HEADER_BYTES } from "../../src/exchange/protocol.ts";
import { SEAL_LENGTH_BYTES, SEAL_TAG_BYTES } from "../../src/exchange/seal.ts";

/** Clear frames the dialer sends before its first sealed record (HELLO, AUTH). */
const dialerClearFrames = 2;

/** What to send in place of the dialer's sealed record number `index` (0-based, per connection). */
export type Tamper = (record: Uint8Array, index: number) => Uint8Array[];

export interface ProxyOptions {
  listen: { host: string; port: number };
  target: { host: string; port: number };
  /** Rewrites the dialer's sealed records; without it every byte passes untouched. */
  tamper?: Tamper;
}

/** One direction's writes: what the socket has not taken yet, in order. */
class Pipe {
  socket: Socket<unknown> | null = null;
  private readonly pending: Uint8Array[] = [];

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.pending.push(bytes);
    this.flush();
  }

  flush(): void {
    const socket = this.socket;
    if (socket === null) return;
    while (this.pending.length > 0) {
      const head = this.pending[0];
      const wrote = socket.write(head);
      if (wrote < 0) return;
      if (wrote < head.length) {
        this.pending[0] = head.subarray(wrote);
        return; // drain calls flush again
      }
      this.pending.shift();
    }
  }
}

/** Cuts the dialer's stream into its clear handshake frames and then sealed records. */
class RecordCutter {
  private buffered = new Uint8Array(0);
  private clearLeft = dialerClearFrames;
  private records = 0;

  constructor(
    private readonly tamper: Tamper,
    private readonly out: (bytes: Uint8Array) => void,
  ) {}

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.buffered.length + chunk.length);
    joined.set(this.buffered, 0);
    joined.set(chunk, this.buffered.length);
    let pos = 0;
    for (;;) {
      const unit = this.unitBytes(joined, pos);
      if (unit === null || pos + unit > joined.length) break;
      const bytes = joined.slice(pos, pos + unit);
      pos += unit;
      if (this.clearLeft > 0) {
        this.clearLeft--;
        this.out(bytes);
      } else {
        for (const b of this.tamper(bytes, this.records)) this.out(b);
        this.records++;
      }
    }
    this.buffered = joined.slice(pos);
  }

  /** Bytes of the unit starting at `pos`, or null until its length field is in. */
  private unitBytes(buf: Uint8Array, pos: number): number | null {
    const view = new DataView(buf.buffer, buf.byteOffset);
    if (this.clearLeft > 0) {
      if (buf.length - pos < FRAME_HEADER_BYTES) return null;
      return FRAME_HEADER_BYTES + view.getUint32(pos + 4);
    }
    if (buf.length - pos < SEAL_LENGTH_BYTES) return null;
    return SEAL_LENGTH_BYTES + view.getUint32(pos) + SEAL_TAG_BYTES;
  }
}

interface Ends {
  toTarget: Pipe;
  toDialer: Pipe;
  /** Tampering proxies cut the dialer's stream into records; passive ones forward chunks. */
  cutter: RecordCutter | null;
}

export class RecordingProxy {
  /** Every byte forwarded, per direction, in order (all connections). */
  readonly fromDialer: Uint8Array[] = [];
  readonly fromListener: Uint8Array[] = [];
  /** Connections accepted. */
  connections = 0;
  private server: TCPSocketListener<Ends> | null = null;
  private readonly sockets = new Set<Socket<unknown>>();

  constructor(private readonly options: ProxyOptions) {}

  start(): void {
    const { listen, target, tamper } = this.options;
    this.server = Bun.listen<Ends>({
      hostname: listen.host,
      port: listen.port,
      socket: {
        binaryType: "uint8array",
        open: (client) => {
          this.connections++;
          this.sockets.add(client);
          const ends: Ends = { toTarget: new Pipe(), toDialer: new Pipe(), cutter: null };
          if (tamper !== undefined) ends.cutter = new RecordCutter(tamper, (b) => ends.toTarget.write(b));
          ends.toDialer.socket = client as Socket<unknown>;
          client.data = ends;
          Bun.connect({
            hostname: target.host,
            port: target.port,
            socket: {
              binaryType: "uint8array",
              open: (upstream) => {
                this.sockets.add(upstream);
                ends.toTarget.socket = upstream;
                ends.toTarget.flush();
              },
              data: (_upstream, chunk) => {
                this.fromListener.push(chunk.slice());
                ends.toDialer.write(chunk.slice());
              },
              drain: () => ends.toTarget.flush(),
              close: () => {
                client.end();
              },
              error: () => {
                client.end();
              },
            },
          }).catch(() => {
            client.end();
          });
        },
        data: (client, chunk) => {
          this.fromDialer.push(chunk.slice());
          const ends = client.data;
          if (ends.cutter === null) ends.toTarget.write(chunk.slice());
          else ends.cutter.push(chunk);
        },
        drain: (client) => client.data.toDialer.flush(),
        close: (client) => {
          client.data.toTarget.socket?.end();
        },
        error: (client) => {
          client.data.toTarget.socket?.end();
        },
      },
    });
  }

  /** Everything the proxy forwarded in both directions, joined (for searching). */
  captured(): Uint8Array {
    return Buffer.concat([...this.fromDialer, ...this.fromListener]);
  }

  close(): void {
    for (const s of this.sockets) {
      try {
        s.terminate();
      } catch {
        // already closed
      }
    }
    this.sockets.clear();
    this.server?.stop(true);
    this.server = null;
  }
}

/** Tamper: flip one bit of the ciphertext of the `nth` record longer than `minBytes`. */
export function flipIn(nth: number, minBytes: number): Tamper {
  let seen = 0;
  return (record) => {
    if (record.length < minBytes || seen++ !== nth) return [record];
    const changed = record.slice();
    changed[SEAL_LENGTH_BYTES + Math.floor((changed.length - SEAL_LENGTH_BYTES - SEAL_TAG_BYTES) / 2)] ^=
      0x01;
    return [changed];
  };
}

/** Tamper: drop the `nth` record longer than `minBytes`. */
export function dropOne(nth: number, minBytes: number): Tamper {
  let seen = 0;
  return (record) => (record.length >= minBytes && seen++ === nth ? [] : [record]);
}

/** Tamper: send the `nth` record longer than `minBytes` twice. */
export function replayOne(nth: number, minBytes: number): Tamper {
  let seen = 0;
  return (record) => (record.length >= minBytes && seen++ === nth ? [record, record] : [record]);
}

/** Tamper: swap the `nth` record longer than `minBytes` with the record after it. */
export function swapTwo(nth: number, minBytes: number): Tamper {
  let seen = 0;
  let held: Uint8Array | null = null;
  return (record) => {
    if (held !== null) {
      const first = held;
      held = null;
      return [record, first];
    }
    if (record.length >= minBytes && seen++ === nth) {
      held = record;
      return [];
    }
    return [record];
  };
}
