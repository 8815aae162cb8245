/**
 * PeerLink and the Mesh over it, in one process: two or three Mesh instances on
 * real loopback sockets (Bun.listen / Bun.connect on 127.0.0.1), no child
 * process, so a change to a state path or a frame rule shows here in seconds
 * (tests/mesh/ runs the same protocol between real peer processes).
 *
 * Every stream state step, every frame a link handles and every barrier the mesh
 * resolves goes into one timeline, and the tests assert its order: the state
 * paths of src/exchange/streams.ts, the frames each state accepts
 * (src/exchange/link.ts) and the barriers of src/exchange/mesh.ts.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fingerprintOf } from "../../src/config.ts";
import { NetsortError } from "../../src/errors.ts";
import { PeerLink } from "../../src/exchange/link.ts";
import { Mesh, MismatchError } from "../../src/exchange/mesh.ts";
import {
  encodeEmpty,
  encodeReady,
  encodeSample,
  encodeSummary,
  FRAME_HEADER_BYTES,
  FrameType,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import { InStream, OutStream } from "../../src/exchange/streams.ts";
import { batchBytes, busyKeepAliveMs, lingerQuietMinMs } from "../../src/limits.ts";
import { freeLoopbackPorts } from "../../src/local/cluster.ts";
import { log } from "../../src/log.ts";
import type { PartitionMode, ServerEntry, SortOptions } from "../../src/types.ts";

const RECORD = 100;
/** Any single wait in these tests; far above what a loaded 2-core machine needs. */
const waitBoundMs = 5_000;
/** Idle timeout of every mesh except the idle test's: never reached by a healthy test. */
const relaxedIdleTimeoutMs = 5_000;
/** The idle test's timeout: small, so a silent link is noticed in well under a second. */
const shortIdleTimeoutMs = 300;
/** How long a test watches for something that must NOT happen (a barrier too early, a failure). */
const quietWindowMs = 100;

const barrierNames = [
  "connected",
  "allSampled",
  "allReceived",
  "allReady",
  "allCommitted",
  "allConfirmed",
] as const;
type BarrierName = (typeof barrierNames)[number];

// ---- the timeline ------------------------------------------------------------------

/**
 * Everything observed, in order: "0 out->1 open" (a state step of peer 0's stream
 * to peer 1), "0 in<-1 frame Ready" (a frame peer 0's link took from peer 1),
 * "0 in<-1 records" (a run of records), "0 allReady" (a barrier), and marks the
 * test adds itself.
 */
let timeline: string[] = [];
/** PINGs are kept out of the timeline (their timing is the clock's), counted here. */
let pings = 0;

interface TestPeer {
  id: number;
  mesh: Mesh;
  entry: ServerEntry;
  /** Records received, by sender, in arrival order. */
  received: Map<number, Uint8Array[]>;
  reached: Set<BarrierName>;
  /** Settles with "ok" once every barrier resolved, or the mesh's error. */
  outcome: Promise<"ok" | NetsortError>;
}

let peers: TestPeer[] = [];

function mark(event: string): void {
  timeline.push(event);
}

/** The peer and the other end of a link, found among this test's meshes. */
function whereIs(match: (link: PeerLink) => boolean): { self: number; other: number } | null {
  for (const p of peers) {
    for (const link of p.mesh.links) if (link !== null && match(link)) return { self: p.id, other: link.id };
  }
  return null;
}

type Method = (this: unknown, ...args: unknown[]) => unknown;
const patched: Array<{ target: Record<string, Method>; name: string; original: Method }> = [];

/** Wrap a (possibly private) method so it reports to the timeline, then does its work. */
function tap(proto: object, name: string, report: (self: unknown, args: unknown[]) => void): void {
  const target = proto as Record<string, Method>;
  const original = target[name];
  expect(typeof original).toBe("function"); // a renamed method must fail here, not silently record nothing
  patched.push({ target, name, original });
  target[name] = function (this: unknown, ...args: unknown[]) {
    report(this, args);
    return original.apply(this, args);
  };
}

let logLevel = log.level;

beforeAll(() => {
  // The failures here are on purpose: their warnings (dropped hellos) would only be noise.
  logLevel = log.level;
  log.level = -999;
  tap(OutStream.prototype, "to", (stream, [next]) => {
    const at = whereIs((l) => l.out === stream);
    if (at !== null) mark(`${at.self} out->${at.other} ${next}`);
  });
  tap(InStream.prototype, "to", (stream, [next]) => {
    const at = whereIs((l) => l.in === stream);
    if (at !== null) mark(`${at.self} in<-${at.other} ${next}`);
  });
  tap(PeerLink.prototype, "onInFrame", (link, [, type]) =>
    frameSeen(link as PeerLink, "in", type as FrameType),
  );
  tap(PeerLink.prototype, "onOutFrame", (link, [type]) =>
    frameSeen(link as PeerLink, "out", type as FrameType),
  );
});

afterAll(() => {
  for (const { target, name, original } of patched.reverse()) target[name] = original;
  log.level = logLevel;
});

function frameSeen(link: PeerLink, direction: "in" | "out", type: FrameType): void {
  if (type === FrameType.Ping) {
    pings++;
    return;
  }
  const at = whereIs((l) => l === link);
  if (at !== null) mark(`${at.self} ${direction}<-${at.other} frame ${FrameType[type]}`);
}

beforeEach(() => {
  timeline = [];
  pings = 0;
});

afterEach(async () => {
  const closing = peers.map((p) => p.mesh.close());
  peers = [];
  await Promise.all(closing);
});

// ---- building a cluster ------------------------------------------------------------

interface PeerSettings {
  validate?: boolean;
  partition?: PartitionMode;
  secret?: Uint8Array | null;
  idleTimeoutMs?: number;
}

/**
 * `n` meshes with one config, listening on free loopback ports and dialing each
 * other. `settings(i)` changes peer i's options (mismatch tests).
 */
function cluster(
  n: number,
  settings: (id: number) => PeerSettings = () => ({}),
  /** Peers listening and dialing from the start; the test starts the others itself (start()). */
  startNow: (id: number) => boolean = () => true,
): TestPeer[] {
  const ports = freeLoopbackPorts(n);
  const servers = ports.map((port, serverId) => ({ serverId, host: "127.0.0.1", port }));
  const config = { path: "link-test.yaml", servers, fingerprint: fingerprintOf(servers) };
  peers = servers.map((entry) => {
    const s = settings(entry.serverId);
    const options: SortOptions = {
      serverId: entry.serverId,
      inputFile: join(tmpdir(), `netsort-link-${entry.port}.in`),
      outputFile: join(tmpdir(), `netsort-link-${entry.port}.out`), // one per peer: distinct output tags
      config,
      retryIntervalMs: 50,
      connectTimeoutMs: waitBoundMs,
      idleTimeoutMs: s.idleTimeoutMs ?? relaxedIdleTimeoutMs,
      helloTimeoutMs: 1_000,
      secret: s.secret ?? null,
      validate: s.validate ?? false,
      partition: s.partition ?? "bits",
    };
    const received = new Map<number, Uint8Array[]>();
    const id = entry.serverId;
    const mesh = new Mesh(
      options,
      {
        onRecords: (from, buf, offset, length) => {
          const event = `${id} in<-${from} records`;
          if (timeline[timeline.length - 1] !== event) mark(event);
          const list = received.get(from) ?? [];
          list.push(buf.slice(offset, offset + length));
          received.set(from, list);
        },
      },
      0,
    );
    const reached = new Set<BarrierName>();
    const waits = barrierNames.map((name) => {
      const wait = barrierWait(mesh, name);
      wait.then(
        () => {
          reached.add(name);
          mark(`${id} ${name}`);
        },
        () => {},
      );
      return name === "allSampled" && options.partition !== "sample" ? Promise.resolve() : wait;
    });
    const outcome = Promise.all(waits).then(
      () => "ok" as const,
      (error: NetsortError) => error,
    );
    return { id, mesh, entry, received, reached, outcome };
  });
  const now = peers.filter((p) => startNow(p.id));
  for (const p of now) p.mesh.listen();
  for (const p of now) p.mesh.start();
  return peers;
}

function start(p: TestPeer): void {
  p.mesh.listen();
  p.mesh.start();
}

function barrierWait(mesh: Mesh, name: BarrierName): Promise<void> {
  switch (name) {
    case "connected":
      return mesh.whenConnected();
    case "allSampled":
      return mesh.whenAllSampled();
    case "allReceived":
      return mesh.whenAllReceived();
    case "allReady":
      return mesh.whenAllReady();
    case "allCommitted":
      return mesh.whenAllCommitted();
    case "allConfirmed":
      return mesh.whenAllConfirmed();
  }
}

/** `count` records for the stream from -> to, each one different (sender, receiver and index in it). */
function records(from: number, to: number, count: number): Uint8Array {
  const out = new Uint8Array(count * RECORD);
  for (let i = 0; i < count; i++) {
    const r = out.subarray(i * RECORD, (i + 1) * RECORD);
    r[0] = from;
    r[1] = to;
    new DataView(r.buffer, r.byteOffset).setUint32(2, i);
    for (let k = 6; k < RECORD; k++) r[k] = (i * 7 + k + from * 13 + to) & 255;
  }
  return out;
}

/** Send `bytes` on `mesh`'s stream to peer `to`, as the partitioner does (pooled batch buffers). */
async function sendRecords(mesh: Mesh, to: number, bytes: Uint8Array): Promise<void> {
  const out = mesh.out[to]!;
  for (let offset = 0; offset < bytes.length; offset += batchBytes) {
    let buf = out.acquire();
    while (buf === null) {
      await out.whenFree();
      buf = out.acquire();
    }
    const piece = bytes.subarray(offset, Math.min(offset + batchBytes, bytes.length));
    buf.set(piece, FRAME_HEADER_BYTES);
    out.sendBatch(buf, piece.length);
  }
}

function receivedFrom(p: TestPeer, from: number): Uint8Array {
  return Buffer.concat(p.received.get(from) ?? []);
}

async function until(what: string, cond: () => boolean, boundMs = waitBoundMs): Promise<void> {
  const endMs = performance.now() + boundMs;
  while (!cond()) {
    if (performance.now() > endMs) throw new Error(`timed out after ${boundMs} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}

async function all(what: BarrierName, ps = peers): Promise<void> {
  await Promise.all(ps.map((p) => barrierWait(p.mesh, what)));
}

/** The error a mesh fails with (it must fail within the wait bound). */
async function failure(p: TestPeer): Promise<NetsortError> {
  let timer: Timer | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`peer ${p.id} did not fail`)), waitBoundMs);
  });
  try {
    await Promise.race([p.mesh.failed, bound]);
  } catch (error) {
    if (error instanceof NetsortError) return error;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  throw new Error("unreachable: failed never resolves");
}

/**
 * Hang up one socket as if the process on `owner`'s side went away on that
 * connection: the owner's link is not told (its handlers are detached first), so
 * only the other end reacts.
 */
function hangUp(socket: { data: unknown; end(): void } | null): void {
  expect(socket).not.toBeNull();
  socket!.data = { onData() {}, onDrain() {}, onClose() {} };
  socket!.end();
}

/** The subsequence of the timeline about one thing (a stream's states, a link's frames, a peer's barriers). */
function events(prefix: string, filter: (rest: string) => boolean = () => true): string[] {
  return timeline
    .filter((e) => e.startsWith(prefix) && filter(e.slice(prefix.length)))
    .map((e) => e.slice(prefix.length));
}

/** Each event is in the timeline, in this order. */
function expectOrder(...expected: string[]): void {
  let from = 0;
  for (const e of expected) {
    const at = timeline.indexOf(e, from);
    if (at < 0) {
      const anywhere = timeline.indexOf(e);
      throw new Error(
        anywhere < 0
          ? `"${e}" never happened; timeline:\n${timeline.join("\n")}`
          : `"${e}" came before "${expected[expected.indexOf(e) - 1]}"; timeline:\n${timeline.join("\n")}`,
      );
    }
    from = at + 1;
  }
}

const stateNames = new Set(["dialing", "open", "done", "acked", "ready", "committed", "confirmed", "lost"]);
const isState = (rest: string) => rest.startsWith(" ") && stateNames.has(rest.slice(1));
const isFrame = (rest: string) => rest.startsWith(" frame ");

// ---- whole runs --------------------------------------------------------------------

describe("PeerLink over loopback: whole runs", () => {
  test("three peers: records both ways, then READY, COMMITTED, CONFIRMED; every state path and barrier in order", async () => {
    const ps = cluster(3);
    await all("connected");
    // Every ordered pair gets its own records; 2 -> 0 sends none (an empty stream still ends with DONE/ACK).
    const count = (from: number, to: number) => (from === 2 && to === 0 ? 0 : 40 + 10 * from + to);
    const sends: Promise<void>[] = [];
    for (const p of ps)
      for (const q of ps)
        if (p !== q) sends.push(sendRecords(p.mesh, q.id, records(p.id, q.id, count(p.id, q.id))));
    await Promise.all(sends);
    for (const p of ps) p.mesh.finishStreams();
    await all("allReceived");
    for (const p of ps)
      for (const q of ps)
        if (p !== q) expect(receivedFrom(q, p.id)).toEqual(records(p.id, q.id, count(p.id, q.id)));

    // READY from peers 0 and 1 only: nobody's allReady may resolve before peer 2's.
    ps[0].mesh.sendReady();
    ps[1].mesh.sendReady();
    await Bun.sleep(quietWindowMs);
    for (const p of ps) expect(p.reached.has("allReady")).toBe(false);
    mark("2 sends READY");
    ps[2].mesh.sendReady();
    await all("allReady");
    for (const p of ps) p.mesh.sendCommitted();
    await all("allCommitted");
    for (const p of ps) p.mesh.sendConfirmed();
    await all("allConfirmed");
    for (const p of ps) expect(await p.outcome).toBe("ok");

    for (const p of ps) {
      expect(events(`${p.id} `, (rest) => (barrierNames as readonly string[]).includes(rest))).toEqual([
        "connected",
        "allReceived",
        "allReady",
        "allCommitted",
        "allConfirmed",
      ]);
      for (const q of ps) {
        if (p === q) continue;
        expect(events(`${p.id} out->${q.id}`, isState)).toEqual([" open", " done", " acked"]);
        expect(events(`${p.id} in<-${q.id}`, isState)).toEqual([
          " done",
          " ready",
          " committed",
          " confirmed",
        ]);
        const inFrames = [" frame Done", " frame Ready", " frame Committed", " frame Confirmed"];
        expect(events(`${p.id} in<-${q.id}`, isFrame)).toEqual(inFrames);
        expect(events(`${p.id} out<-${q.id}`, isFrame)).toEqual([" frame Ack"]);
        // A barrier resolves only after the frame that completes it.
        expectOrder(`${p.id} in<-${q.id} frame Done`, `${p.id} allReceived`);
        expectOrder(`${p.id} out<-${q.id} frame Ack`, `${p.id} allReady`);
        expectOrder(`${p.id} in<-${q.id} frame Ready`, `${p.id} allReady`);
        // Peer 2's READY was the last one: every allReady waited for it.
        if (q.id === 2) expectOrder("2 sends READY", `${p.id} in<-2 frame Ready`, `${p.id} allReady`);
        expectOrder("2 sends READY", `${p.id} allReady`);
        expectOrder(`${p.id} in<-${q.id} frame Committed`, `${p.id} allCommitted`);
        expectOrder(`${p.id} in<-${q.id} frame Confirmed`, `${p.id} allConfirmed`);
        // Records come before DONE on each stream.
        if (count(q.id, p.id) > 0)
          expectOrder(`${p.id} in<-${q.id} records`, `${p.id} in<-${q.id} frame Done`);
      }
    }
    for (const p of ps) expect(p.mesh.error).toBeNull();
  });

  test("a peer that finishes first and closes at once does not fail the others: its CONFIRMED is flushed before the close", async () => {
    const ps = cluster(3);
    await all("connected");
    for (const p of ps) p.mesh.finishStreams();
    await all("allReceived");
    for (const p of ps) p.mesh.sendReady();
    await all("allReady");
    for (const p of ps) p.mesh.sendCommitted();
    await all("allCommitted");
    ps[0].mesh.sendConfirmed();
    ps[1].mesh.sendConfirmed();
    await until("peer 2 received both CONFIRMED", () =>
      [0, 1].every((id) => ps[2].mesh.in[id]?.state === "confirmed"),
    );
    // Peer 2 confirms last, so its own allConfirmed holds at once, and it closes, as runPeer does.
    ps[2].mesh.sendConfirmed();
    await barrierWait(ps[2].mesh, "allConfirmed");
    mark("2 closed");
    await ps[2].mesh.close();
    await all("allConfirmed", ps.slice(0, 2));
    await Bun.sleep(quietWindowMs); // the closes of peer 2's connections are read by now
    for (const p of ps.slice(0, 2)) {
      expect(p.mesh.error).toBeNull();
      expect(p.mesh.in[2]!.state).toBe("confirmed");
      expect(p.mesh.out[2]!.state).toBe("acked");
      expect(p.mesh.links[2]!.connections().every((c) => c.closed)).toBe(true);
    }
  });

  test("allReady waits for the ACK of our stream, not only for the peer's READY", async () => {
    const [a, b] = cluster(2);
    await all("connected");
    await sendRecords(a.mesh, 1, records(0, 1, 5));
    // Peer 1 stops reading peer 0's stream: peer 0's DONE waits in the kernel, unacknowledged.
    const held = b.mesh.links[0]!.in!.conn.socket!;
    held.pause();
    a.mesh.finishStreams();
    b.mesh.finishStreams();
    await until("peer 0 received peer 1's DONE", () => a.mesh.in[1]?.state === "done");
    a.mesh.sendReady();
    b.mesh.sendReady();
    await until("peer 0 received peer 1's READY", () => a.mesh.in[1]?.state === "ready");
    await Bun.sleep(quietWindowMs);
    expect(a.mesh.out[1]!.state).toBe("done");
    expect(a.reached.has("allReady")).toBe(false);
    mark("resume");
    held.resume();
    await barrierWait(a.mesh, "allReady");
    expectOrder("0 in<-1 ready", "resume", "0 out<-1 frame Ack", "0 out->1 acked", "0 allReady");
    expect(receivedFrom(b, 0)).toEqual(records(0, 1, 5));
  });

  test("a direction fails only when two liveness checks in a row find it idle: bytes read in between clear it", async () => {
    const [a, b] = cluster(2);
    await all("connected");
    const link = a.mesh.links[1]!;
    const message = `no traffic from peer 1 (127.0.0.1:${b.entry.port}) for ${relaxedIdleTimeoutMs} ms`;
    // Checks from the future, where nothing has been received for twice the timeout.
    const later = performance.now() + 2 * relaxedIdleTimeoutMs;
    expect(link.checkLiveness(later, 0, relaxedIdleTimeoutMs)).toBeNull(); // seen idle once
    for (const c of link.connections()) c.lastReceivedMs = later; // what a read in between does
    expect(link.checkLiveness(later, 0, relaxedIdleTimeoutMs)).toBeNull();
    const evenLater = later + 2 * relaxedIdleTimeoutMs;
    expect(link.checkLiveness(evenLater, 0, relaxedIdleTimeoutMs)).toBeNull();
    expect(link.checkLiveness(evenLater, 0, relaxedIdleTimeoutMs)?.message).toBe(message);
    expect(a.mesh.error).toBeNull(); // only the ticks act on a verdict
  });

  test("keepAlive from inside a synchronous stretch sends on every connection; without it they stay quiet", async () => {
    const [a] = cluster(2, () => ({ idleTimeoutMs: shortIdleTimeoutMs }));
    await all("connected");
    const conns = a.mesh.links[1]!.connections();
    expect(conns.length).toBe(2);
    /** Block this process for `ms`, calling keepAlive every few ms when asked to. */
    const busy = (ms: number, keepAlive: boolean) => {
      const endMs = performance.now() + ms;
      let nextMs = 0;
      while (performance.now() < endMs) {
        if (keepAlive && performance.now() >= nextMs) {
          a.mesh.keepAlive();
          nextMs = performance.now() + busyKeepAliveMs;
        }
      }
      return performance.now();
    };
    const stretchMs = 2 * shortIdleTimeoutMs;
    let endMs = busy(stretchMs, false);
    // Nothing runs the clock meanwhile: the last sends are from before the stretch.
    for (const c of conns) expect(endMs - c.lastSentMs).toBeGreaterThanOrEqual(stretchMs);
    endMs = busy(stretchMs, true);
    // PING once a direction is quiet for a third of the idle timeout: each sent during the stretch.
    for (const c of conns)
      expect(endMs - c.lastSentMs).toBeLessThan(shortIdleTimeoutMs / 3 + 2 * busyKeepAliveMs);
    await Bun.sleep(quietWindowMs);
    expect(a.mesh.error).toBeNull();
  });

  test("an idle but healthy mesh stays up on PINGs; a link gone silent fails on the idle timeout, and the peer is told", async () => {
    const [a, b] = cluster(2, () => ({ idleTimeoutMs: shortIdleTimeoutMs }));
    await all("connected");
    // Twice the idle timeout with nothing to say: PINGs keep both links alive.
    await Bun.sleep(2 * shortIdleTimeoutMs);
    expect(a.mesh.error).toBeNull();
    expect(b.mesh.error).toBeNull();
    expect(pings).toBeGreaterThan(0);
    // Peer 1's link to peer 0 goes silent: no more PINGs (and no checks of its own).
    const silent = b.mesh.links[0]!;
    silent.checkLiveness = () => null;
    const error = await failure(a);
    expect(error.message).toBe(
      `no traffic from peer 1 (127.0.0.1:${b.entry.port}) for ${shortIdleTimeoutMs} ms`,
    );
    expect(error.exitCode).toBe(1);
    // Peer 0 told peer 1 why, then hung up both connections.
    expect((await failure(b)).message).toBe(`peer 0 aborted: ${error.message}`);
    await until("peer 0's connections to peer 1 closed", () =>
      a.mesh.links[1]!.connections().every((c) => c.closed),
    );
  });
});

// ---- --partition sample ------------------------------------------------------------

describe("PeerLink over loopback: the SAMPLE round", () => {
  test("a stream is held after SAMPLE (records already sent wait) until releaseStreams, then its records and DONE arrive", async () => {
    const ps = cluster(2, () => ({ partition: "sample" }));
    const [a, b] = ps;
    await all("connected");
    const sample = (id: number) => records(id, 9, 3);
    // Each peer sends its SAMPLE, then at once its records and DONE: they reach the
    // other side in the same chunks as the SAMPLE, or right after it.
    for (const p of ps) {
      p.mesh.sendSample(encodeSample({ inputRecords: 50 + p.id, records: sample(p.id) }));
      const to = 1 - p.id;
      await sendRecords(p.mesh, to, records(p.id, to, 20));
      p.mesh.finishStreams();
    }
    await all("allSampled");
    for (const p of ps) {
      const from = 1 - p.id;
      const stream = p.mesh.in[from]!;
      expect(stream.sample?.inputRecords).toBe(50 + from);
      expect(stream.sample?.records).toEqual(sample(from));
    }
    // Bytes behind the SAMPLE have arrived (the socket saw more than the sample)
    // but no record was placed and DONE was not read.
    await Bun.sleep(quietWindowMs);
    for (const p of ps) {
      expect(p.received.size).toBe(0);
      expect(p.mesh.in[1 - p.id]!.state).toBe("open");
      expect(p.mesh.links[1 - p.id]!.held).toBe(true);
      expect(p.reached.has("allReceived")).toBe(false);
    }
    mark("release");
    for (const p of ps) p.mesh.releaseStreams();
    await all("allReceived");
    for (const p of ps) {
      const from = 1 - p.id;
      expect(p.mesh.links[from]!.held).toBe(false);
      expect(receivedFrom(p, from)).toEqual(records(from, p.id, 20));
      expect(events(`${p.id} in<-${from}`, isFrame)).toEqual([" frame Sample", " frame Done"]);
      expectOrder(
        `${p.id} in<-${from} frame Sample`,
        `${p.id} allSampled`,
        "release",
        `${p.id} in<-${from} records`,
        `${p.id} in<-${from} frame Done`,
        `${p.id} allReceived`,
      );
    }
    expect(a.mesh.error).toBeNull();
    expect(b.mesh.error).toBeNull();
  });
});

describe("PeerLink over loopback: a held stream is not idle", () => {
  test("streams held after SAMPLE for several idle timeouts do not fail; the run goes on after release", async () => {
    const ps = cluster(2, () => ({ partition: "sample", idleTimeoutMs: shortIdleTimeoutMs }));
    await all("connected");
    for (const p of ps) {
      p.mesh.sendSample(encodeSample({ inputRecords: 10, records: records(p.id, 9, 1) }));
      await sendRecords(p.mesh, 1 - p.id, records(p.id, 1 - p.id, 10));
    }
    await all("allSampled");
    // Each side stopped reading the other's stream; PINGs on the other connection still flow.
    await Bun.sleep(3 * shortIdleTimeoutMs);
    for (const p of ps) expect(p.mesh.error).toBeNull();
    for (const p of ps) p.mesh.releaseStreams();
    for (const p of ps) p.mesh.finishStreams();
    await all("allReceived");
    for (const p of ps) expect(receivedFrom(p, 1 - p.id)).toEqual(records(1 - p.id, p.id, 10));
  });
});

// ---- closes ------------------------------------------------------------------------

/**
 * Drive peer 1's stream to peer 0 (peer 0's in-stream) into `state` with the
 * real API. Peer 0 finishes its own stream too, so peer 0's out-stream is acked
 * from "done" on.
 */
async function driveInStream(a: TestPeer, b: TestPeer, state: string): Promise<void> {
  await all("connected");
  await sendRecords(b.mesh, 0, records(1, 0, 5));
  await until("5 records at peer 0", () => a.mesh.in[1]?.records === 5);
  const path = ["open", "done", "ready", "committed", "confirmed"];
  expect(path).toContain(state);
  // Each step after "done" is peer 1's announcement; take them up to `state`.
  const announce: Record<string, () => void> = {
    ready: () => b.mesh.sendReady(),
    committed: () => b.mesh.sendCommitted(),
    confirmed: () => b.mesh.sendConfirmed(),
  };
  if (path.indexOf(state) >= path.indexOf("done")) {
    a.mesh.finishStreams();
    b.mesh.finishStreams();
    await until("peer 0's stream acked", () => a.mesh.out[1]?.state === "acked");
    await until("peer 0's in-stream done", () => a.mesh.in[1]?.state === "done");
  }
  for (const next of path.slice(path.indexOf("ready"), path.indexOf(state) + 1)) {
    announce[next]();
    await until(`peer 0's in-stream ${next}`, () => a.mesh.in[1]?.state === next);
  }
}

describe("PeerLink over loopback: connections that close", () => {
  const lostCases: Array<[string, string]> = [
    ["open", "mid-stream after 5 records"],
    ["done", "before it was ready"],
    ["ready", "before it committed its output"],
    ["committed", "after committing its output, before confirming it"],
  ];
  for (const [state, where] of lostCases) {
    test(`the in-connection closing in state ${state} fails the mesh naming the peer; the stream is lost`, async () => {
      const [a, b] = cluster(2);
      await driveInStream(a, b, state);
      mark("hang up");
      hangUp(b.mesh.links[0]!.out.conn.socket);
      const error = await failure(a);
      expect(error.message).toBe(`peer 1 (127.0.0.1:${b.entry.port}) closed its stream ${where}: closed`);
      expect(error.exitCode).toBe(1);
      expect(a.mesh.in[1]!.state).toBe("lost");
      expectOrder("hang up", "0 in<-1 lost");
      expect(events("0 in<-1", isState).at(-1)).toBe(" lost");
      // Peer 0 tells peer 1 on the connection still up.
      expect((await failure(b)).message).toBe(`peer 0 aborted: ${error.message}`);
    });
  }

  test("the in-connection closing inside a frame says so", async () => {
    const [a, b] = cluster(2);
    await driveInStream(a, b, "open");
    b.mesh.links[0]!.announce(rawData().subarray(0, FRAME_HEADER_BYTES + RECORD / 2));
    // The half frame and the close travel on one connection, in that order.
    hangUp(b.mesh.links[0]!.out.conn.socket);
    const error = await failure(a);
    expect(error.message).toBe(
      `peer 1 (127.0.0.1:${b.entry.port}) closed its stream mid-stream after 5 records inside a frame: closed`,
    );
  });

  test("the in-connection closing after CONFIRMED is the normal end: no failure, the state stays confirmed", async () => {
    const [a, b] = cluster(2);
    await driveInStream(a, b, "confirmed");
    hangUp(b.mesh.links[0]!.out.conn.socket);
    await until("peer 0 saw the close", () => a.mesh.in[1]!.conn.closed);
    await Bun.sleep(quietWindowMs);
    expect(a.mesh.error).toBeNull();
    expect(a.mesh.in[1]!.state).toBe("confirmed");
  });

  test("the out-connection closing after ACK is not a failure: the in-stream still carries the run to its end", async () => {
    const [a, b] = cluster(2);
    await driveInStream(a, b, "done");
    expect(a.mesh.out[1]!.state).toBe("acked");
    mark("hang up");
    hangUp(b.mesh.links[0]!.in!.conn.socket); // peer 1 hangs up the stream it received from peer 0
    await until("peer 0 saw its out-connection close", () => a.mesh.out[1]!.conn.closed);
    b.mesh.sendReady();
    a.mesh.sendReady();
    await barrierWait(a.mesh, "allReady");
    b.mesh.sendCommitted();
    a.mesh.sendCommitted();
    await barrierWait(a.mesh, "allCommitted");
    b.mesh.sendConfirmed();
    a.mesh.sendConfirmed();
    await barrierWait(a.mesh, "allConfirmed");
    expect(a.mesh.error).toBeNull();
    expect(a.mesh.out[1]!.state).toBe("acked");
    expect(events("0 out->1", isState)).toEqual([" open", " done", " acked"]);
    expectOrder("hang up", "0 allReady", "0 allCommitted", "0 allConfirmed");
  });

  test("the out-connection closing before ACK fails the mesh naming the peer; the stream is lost", async () => {
    const [a, b] = cluster(2);
    await all("connected");
    await sendRecords(a.mesh, 1, records(0, 1, 5));
    await until("5 records at peer 1", () => b.mesh.in[0]?.records === 5);
    hangUp(b.mesh.links[0]!.in!.conn.socket);
    const error = await failure(a);
    expect(error.message).toBe(`lost connection to peer 1 (127.0.0.1:${b.entry.port}): closed`);
    expect(a.mesh.out[1]!.state).toBe("lost");
    expect(events("0 out->1", isState)).toEqual([" open", " lost"]);
  });
});

// ---- ABORT ---------------------------------------------------------------------------

describe("PeerLink over loopback: ABORT", () => {
  const cases: Array<[string, NetsortError, 1 | 2]> = [
    ["a run-time failure (exit 1)", new NetsortError("disk full writing /data/out"), 1],
    ["a misconfiguration (exit 2)", new MismatchError("output directory is read-only"), 2],
  ];
  for (const [what, cause, exitCode] of cases) {
    test(`${what} on one peer reaches every other with its reason and exit code`, async () => {
      const ps = cluster(3);
      await all("connected");
      ps[0].mesh.fail(cause);
      for (const p of ps.slice(1)) {
        const error = await failure(p);
        expect(error.message).toBe(`peer 0 aborted: ${cause.message}`);
        expect(error.exitCode).toBe(exitCode);
        expect(error instanceof MismatchError).toBe(exitCode === 2);
        // On whichever of its two connections with peer 0 was read first.
        expect(events(`${p.id} `, (rest) => /^(in|out)<-0 frame Abort$/.test(rest)).length).toBeGreaterThan(
          0,
        );
      }
      expect(ps[0].mesh.error).toBe(cause);
      // Every barrier wait now rejects with the same error.
      expect(await ps[1].outcome).toBe(ps[1].mesh.error!);
    });
  }
});

describe("PeerLink over loopback: telling a late peer", () => {
  test("a peer that failed before the mesh was up answers a late peer's hello with its reason", async () => {
    const [a, b] = cluster(
      2,
      () => ({}),
      (id) => id === 0,
    );
    a.mesh.fail(new NetsortError("input /data/in.bin: not a whole number of records"));
    mark("peer 1 starts");
    start(b);
    const error = await failure(b);
    expect(error.message).toBe("peer 0 aborted: input /data/in.bin: not a whole number of records");
    expect(error.exitCode).toBe(1);
    expect(b.mesh.in[0]).toBeNull(); // told at hello: no stream ever opened
    expect(events("", isState)).toEqual([]);
    // Peer 0 knows peer 1 was told: its linger ends at once, not after a quiet
    // time of at least lingerQuietMinMs.
    const fromMs = performance.now();
    await a.mesh.linger(waitBoundMs);
    expect(performance.now() - fromMs).toBeLessThan(lingerQuietMinMs / 2);
  });
});

// ---- refused at hello ------------------------------------------------------------------

describe("PeerLink over loopback: refused at hello", () => {
  const secretA = new Uint8Array(32).fill(1);
  const secretB = new Uint8Array(32).fill(2);
  const cases: Array<[string, (id: number) => PeerSettings, RegExp]> = [
    [
      "--validate on one peer only",
      (id) => ({ validate: id === 0 }),
      /peers disagree on --validate: peer [01] has (it|none), peer [01] has (it|none)/,
    ],
    [
      "--partition differs",
      (id) => ({ partition: id === 0 ? "sample" : "bits" }),
      /peers disagree on --partition: peer [01] has (sample|bits), peer [01] has (sample|bits)/,
    ],
    [
      "a shared secret on one peer only",
      (id) => ({ secret: id === 0 ? secretA : null }),
      /peer [01] (requires|has) a shared secret but peer [01] has (none|one)/,
    ],
    [
      "different shared secrets",
      (id) => ({ secret: id === 0 ? secretA : secretB }),
      /peer [01] failed to prove the shared secret to peer [01]: the secrets differ/,
    ],
  ];
  for (const [what, settings, reason] of cases) {
    test(`${what}: both peers fail with a MismatchError (exit 2) naming it; no stream opens`, async () => {
      const ps = cluster(2, settings);
      for (const p of ps) {
        const error = await failure(p);
        expect(error).toBeInstanceOf(MismatchError);
        expect(error.exitCode).toBe(2);
        expect(error.message).toMatch(reason);
        expect(await p.outcome).toBe(error);
        expect(p.reached.size).toBe(0);
        expect(p.mesh.in[1 - p.id]).toBeNull();
      }
      expect(events("", isState)).toEqual([]);
    });
  }
});

// ---- frames in the wrong state ------------------------------------------------------------

/** A DATA frame of one record, written by hand (the API refuses data after DONE). */
function rawData(): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + RECORD);
  writeHeader(frame, 0, FrameType.Data, RECORD);
  return frame;
}

describe("PeerLink over loopback: a frame in the wrong state is a protocol violation", () => {
  // Peer 1's stream to peer 0 is driven into `state` with the real API, then
  // peer 1 sends a frame that state does not accept.
  const cases: Array<[string, string, () => Uint8Array]> = [
    ["open", "Ready", () => encodeReady(null)],
    ["open", "Committed", () => encodeEmpty(FrameType.Committed)],
    ["open", "Sample", () => encodeSample({ inputRecords: 1, records: records(1, 0, 1) })],
    ["done", "Data", rawData],
    ["done", "Committed", () => encodeEmpty(FrameType.Committed)],
    ["ready", "Confirmed", () => encodeEmpty(FrameType.Confirmed)],
    ["ready", "Ready", () => encodeReady(null)],
    ["committed", "Ready", () => encodeReady(null)],
    ["confirmed", "Committed", () => encodeEmpty(FrameType.Committed)],
  ];
  for (const [state, frame, encode] of cases) {
    test(`${frame} in state ${state}`, async () => {
      const [a, b] = cluster(2);
      await driveInStream(a, b, state);
      b.mesh.links[0]!.announce(encode());
      const error = await failure(a);
      const why = frame === "Sample" ? "SAMPLE without --partition sample" : `unexpected ${frame} frame`;
      expect(error.message).toBe(`protocol violation by peer 1 (127.0.0.1:${b.entry.port}): ${why}`);
      expect(a.mesh.in[1]!.state).toBe(state as InStream["state"]);
      expect((await failure(b)).message).toBe(`peer 0 aborted: ${error.message}`);
    });
  }

  test("ACK before our DONE", async () => {
    const [a, b] = cluster(2);
    await all("connected");
    b.mesh.links[0]!.in!.conn.send(encodeSummary(FrameType.Ack, { records: 0, digest: 0 }));
    const error = await failure(a);
    expect(error.message).toBe(
      `protocol violation by peer 1 (127.0.0.1:${b.entry.port}): ACK before our DONE`,
    );
    expect(a.mesh.out[1]!.state).toBe("open");
  });

  test("the frame of the next state is accepted (control: the same frames in order do not fail)", async () => {
    const [a, b] = cluster(2);
    await driveInStream(a, b, "confirmed");
    expect(a.mesh.error).toBeNull();
    expect(events("0 in<-1", isState)).toEqual([" done", " ready", " committed", " confirmed"]);
  });
});

describe("PeerLink over loopback: DONE and ACK are checked against the stream", () => {
  test("DONE whose count or digest differs from what arrived: the stream is corrupt, naming the peer", async () => {
    for (const [done, why] of [
      [{ records: 99, digest: 0 }, "received 5 records, peer 1 sent 99"],
      [{ records: 5, digest: 0x1234 }, "5 records as sent, but the digest differs: received"],
    ] as const) {
      const [a, b] = cluster(2);
      await driveInStream(a, b, "open");
      b.mesh.links[0]!.announce(encodeSummary(FrameType.Done, done));
      const error = await failure(a);
      expect(error.message).toStartWith(`stream from peer 1 is corrupt: ${why}`);
      expect(a.mesh.in[1]!.state).toBe("open");
      await Promise.all(peers.map((p) => p.mesh.close()));
      peers = [];
    }
  });

  test("ACK whose count differs from what we sent fails the mesh; our stream is not acked", async () => {
    const [a, b] = cluster(2);
    await all("connected");
    await sendRecords(a.mesh, 1, records(0, 1, 5));
    await until("5 records at peer 1", () => b.mesh.in[0]?.records === 5);
    b.mesh.links[0]!.in!.conn.socket!.pause(); // peer 1 will not read our DONE, so sends no real ACK
    a.mesh.finishStreams();
    b.mesh.links[0]!.in!.conn.send(encodeSummary(FrameType.Ack, { records: 4, digest: 0 }));
    const error = await failure(a);
    expect(error.message).toBe("peer 1 acknowledged 4 records, we sent 5");
    expect(a.mesh.out[1]!.state).toBe("done");
  });
});
