/**
 * The sealed channel between real peers (issue 13). Two peers with a shared
 * secret; the connection peer 0 dials to peer 1 runs through a proxy
 * (tests/mesh/proxy.ts). The config names peer 1 by a host name that each peer
 * resolves through its own /etc/hosts (a private mount namespace: `unshare -m`
 * and a bind mount, nothing global changes): for peer 0 it is 127.0.0.1, where
 * the proxy listens; for peer 1 it is 127.0.0.2, where peer 1 listens and the
 * proxy forwards to. Peer 1 dials peer 0 directly.
 *
 * - A proxy that flips a byte of, drops, replays or reorders sealed DATA
 *   records: every peer exits 1 naming the link, none exits 0, no output.
 * - A passive proxy: the sort completes, and no 32-byte slice of any input
 *   record crosses the wire. The same search over a run without a secret finds
 *   them (the check can fail).
 * - During the linger after a failure, a dialer that cannot prove the secret
 *   gets a fixed refusal and nothing else; one that proves it gets the reason,
 *   sealed.
 * Where private mount namespaces cannot be made (not root, no unshare) the
 * proxy tests are skipped with the reason.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Socket } from "bun";
import { dialerProof, listenerProofValid, newNonce, type ProofContext } from "../../src/exchange/auth.ts";
import { FrameDecoder } from "../../src/exchange/decoder.ts";
import {
  decodeReason,
  decodeReasonExitCode,
  decodeWelcome,
  encodeAuth,
  encodeHello,
  FLAG_SECRET,
  FRAME_HEADER_BYTES,
  FrameType,
} from "../../src/exchange/protocol.ts";
import { deriveLinkKeys, linkOpener } from "../../src/exchange/seal.ts";
import { batchBytes } from "../../src/limits.ts";
import { generateSecret } from "../../src/secret.ts";
import { defaultSettings, wireFingerprintOf } from "./fake-peer.ts";
import {
  allExited,
  dirsPerTest,
  errorLine,
  leftovers,
  type PeerExit,
  sh,
  skipReason,
  spawnPeer,
} from "./fault-helpers.ts";
import {
  freePorts,
  makeRecords,
  outputPaths,
  problemLines,
  RECORD,
  removeDir,
  tempDir,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "./harness.ts";
import { dropOne, flipIn, RecordingProxy, replayOne, swapTwo, type Tamper } from "./proxy.ts";

const runBoundMs = 40_000;
/**
 * Records per peer: about 8 full DATA batches from peer 0 to peer 1. The
 * tampering hits the 4th (and 5th), so both streams are open by then.
 */
const recordsPerPeer = 40_000;
/** A sealed record at least this long is a DATA batch (control frames are tiny). */
const dataRecordMinBytes = batchBytes / 2;
/** The name the config gives peer 1; each peer's private /etc/hosts says where it is. */
const peer1Name = `netsort-seal-${process.pid}.test`;
/** Where peer 1 really listens (the proxy forwards here). */
const peer1Address = "127.0.0.2";
/** How long a bounded slice of an input record must be to count as plaintext on the wire. */
const sliceBytes = 32;
/** The test's dials to a lingering peer: refused ones are retried this often, this many times. */
const lingerDialRetryMs = 25;
const lingerDialAttempts = 200;
/** How long (and how often) a run waits for peer 0 to listen before it starts peer 1. */
const listenWaitMs = 10_000;
const listenPollMs = 20;

const newDir = dirsPerTest("netsort-seal-");
let proxies: RecordingProxy[] = [];
afterEach(() => {
  for (const p of proxies) p.close();
  proxies = [];
});

/** argv prefix that runs a command with `hostsFile` as its /etc/hosts (a private mount namespace). */
function withHosts(hostsFile: string): string[] {
  return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hostsFile];
}

function hostsFile(dir: string, name: string, address: string): string {
  const path = join(dir, `hosts-${name}`);
  writeFileSync(path, `127.0.0.1 localhost\n${address} ${peer1Name}\n`);
  return path;
}

/** Why the proxied runs cannot work here, or null. Decided once, before the tests. */
async function mountNamespaceProblem(): Promise<string | null> {
  const dir = tempDir("netsort-seal-probe-");
  try {
    const hosts = hostsFile(dir, "probe", peer1Address);
    const r = await sh([...withHosts(hosts), "getent", "hosts", peer1Name]);
    if (r.code !== 0)
      return `cannot give a process its own /etc/hosts (unshare -m, mount --bind): ${r.out.trim()}`;
    if (!r.out.includes(peer1Address)) return `a private /etc/hosts is not used for names: ${r.out.trim()}`;
    return null;
  } finally {
    removeDir(dir);
  }
}

const problem = await mountNamespaceProblem();
if (problem !== null) skipReason("sealed channel through a proxy", problem);

/**
 * True when something listens on TCP `port` (read from /proc/net/tcp: probing
 * by binding could steal the port from the peer, by connecting would show up
 * in its log as a dropped stranger).
 */
function listening(port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const tcpListen = "0A";
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hexPort}`) === true && f[3] === tcpListen;
    });
}

function secretFile(dir: string): string {
  const file = join(dir, "secret");
  writeFileSync(file, `${generateSecret()}\n`);
  chmodSync(file, 0o600);
  return file;
}

/** The config: peer 0 on 127.0.0.1, peer 1 by name. */
function proxiedConfig(dir: string, ports: number[]): string {
  const path = join(dir, "cluster.yaml");
  writeFileSync(
    path,
    [
      "servers:",
      "  - serverId: 0",
      "    host: 127.0.0.1",
      `    port: ${ports[0]}`,
      "  - serverId: 1",
      `    host: ${peer1Name}`,
      `    port: ${ports[1]}`,
      "",
    ].join("\n"),
  );
  return path;
}

interface ProxiedRun {
  dir: string;
  inputs: string[];
  outputs: string[];
  exits: PeerExit[];
  proxy: RecordingProxy;
}

/** Two real peers, peer 0's stream to peer 1 through a proxy (tampering when `tamper` is given). */
async function proxiedRun(tamper: Tamper | undefined, secret: boolean): Promise<ProxiedRun> {
  const dir = newDir();
  const ports = freePorts(2);
  const config = proxiedConfig(dir, ports);
  const inputs = writeInputs(
    dir,
    [0, 1].map((id) => makeRecords(recordsPerPeer, "uniform", 130 + id)),
  );
  const outputs = outputPaths(dir, 2);
  const proxy = new RecordingProxy({
    listen: { host: "127.0.0.1", port: ports[1] },
    target: { host: peer1Address, port: ports[1] },
    tamper,
  });
  proxies.push(proxy);
  proxy.start();
  const args = ["--connect-timeout-ms=15000"];
  if (secret) args.push("--secret-file", secretFile(dir));
  const views = [hostsFile(dir, "peer0", "127.0.0.1"), hostsFile(dir, "peer1", peer1Address)];
  const start = (id: number) =>
    spawnPeer({ id, input: inputs[id], output: outputs[id], config, args, prefix: withHosts(views[id]) });
  // Peer 0 first, and peer 1 once peer 0 listens: peer 1's own stream to peer 0 then opens at its
  // first dial, long before the tampered record arrives. (A peer that fails while its dial is still
  // in its handshake hangs up on it, and the other side may see a reset before the reason.)
  const peer0 = start(0);
  for (let waitedMs = 0; !listening(ports[0]) && waitedMs < listenWaitMs; waitedMs += listenPollMs) {
    await Bun.sleep(listenPollMs);
  }
  const peers = [peer0, start(1)];
  const exits = await allExited(peers, runBoundMs);
  return { dir, inputs, outputs, exits, proxy };
}

function readInputs(paths: string[]): Uint8Array[] {
  return paths.map((p) => new Uint8Array(readFileSync(p)));
}

/** The first 32-byte slice found of any record of `inputs` in `wire`, or null. */
function plaintextSlice(inputs: Uint8Array[], wire: Uint8Array): string | null {
  // Three slices per record (start, middle, end), indexed by their first 4 bytes.
  const index = new Map<number, Uint8Array[]>();
  for (const data of inputs) {
    for (let o = 0; o + RECORD <= data.length; o += RECORD) {
      for (const at of [0, (RECORD - sliceBytes) >> 1, RECORD - sliceBytes]) {
        const slice = data.subarray(o + at, o + at + sliceBytes);
        const key = new DataView(slice.buffer, slice.byteOffset, 4).getUint32(0);
        const list = index.get(key);
        if (list === undefined) index.set(key, [slice]);
        else list.push(slice);
      }
    }
  }
  const view = new DataView(wire.buffer, wire.byteOffset, wire.length);
  for (let i = 0; i + sliceBytes <= wire.length; i++) {
    const list = index.get(view.getUint32(i));
    if (list === undefined) continue;
    const here = wire.subarray(i, i + sliceBytes);
    for (const slice of list)
      if (Buffer.compare(here, slice) === 0) return Buffer.from(slice).toString("hex");
  }
  return null;
}

describe("sealed records between real peers, through a proxy", () => {
  const tamperings: Array<{ name: string; tamper: () => Tamper }> = [
    { name: "one flipped bit in a DATA record", tamper: () => flipIn(3, dataRecordMinBytes) },
    { name: "a dropped DATA record", tamper: () => dropOne(3, dataRecordMinBytes) },
    { name: "a replayed DATA record", tamper: () => replayOne(3, dataRecordMinBytes) },
    { name: "two DATA records swapped", tamper: () => swapTwo(3, dataRecordMinBytes) },
  ];
  for (const t of tamperings) {
    test.skipIf(problem !== null)(
      `${t.name}: every peer exits 1 naming the link, no output`,
      async () => {
        const run = await proxiedRun(t.tamper(), true);
        console.log(
          `[measured] ${t.name}: ${JSON.stringify(run.exits.map((e) => ({ id: e.id, exit: e.exitCode, ms: Math.round(e.elapsedMs) })))}`,
        );
        for (const e of run.exits) {
          expect({ id: e.id, exitCode: e.exitCode }).toEqual({ id: e.id, exitCode: 1 });
          // Peer 1 found it; peer 0 hears it in peer 1's ABORT. Both name the link.
          expect(errorLine(e)).toMatch(
            /link with peer 0 \(127\.0\.0\.1:\d+\): sealed record \d+ failed authentication/,
          );
        }
        expect(errorLine(run.exits[0])).toMatch(/^peer 1 aborted: /);
        expect(leftovers(run.dir, run.outputs)).toEqual([]);
      },
      runBoundMs + 5_000,
    );
  }

  test.skipIf(problem !== null)(
    "a passive proxy: the sort completes and no 32-byte slice of a record is on the wire",
    async () => {
      const run = await proxiedRun(undefined, true);
      for (const e of run.exits)
        expect({ id: e.id, exit: e.exitCode, problems: problemLines(e.stderr) }).toEqual({
          id: e.id,
          exit: 0,
          problems: [],
        });
      expect(verifyOutputs(run.inputs, run.outputs)).toEqual([]);
      const wire = run.proxy.captured();
      // Peer 0 sends about half its records to peer 1: all of it went through the proxy.
      expect(wire.length).toBeGreaterThan((recordsPerPeer * RECORD) / 3);
      expect(plaintextSlice(readInputs(run.inputs), wire)).toBeNull();
    },
    runBoundMs + 5_000,
  );

  test.skipIf(problem !== null)(
    "control: without a secret the same search finds the records on the wire",
    async () => {
      const run = await proxiedRun(undefined, false);
      for (const e of run.exits) expect({ id: e.id, exit: e.exitCode }).toEqual({ id: e.id, exit: 0 });
      expect(verifyOutputs(run.inputs, run.outputs)).toEqual([]);
      expect(plaintextSlice(readInputs(run.inputs), run.proxy.captured())).not.toBeNull();
      // And the peer whose config leaves this machine said so, once.
      const warnings = problemLines(run.exits[0].stderr).filter((l) => /no shared secret/.test(l));
      expect(warnings.length).toBe(1);
    },
    runBoundMs + 5_000,
  );
});

// ---- the linger after a failure -------------------------------------------------

interface LingerAnswer {
  /** Every byte the failed peer sent after WELCOME. */
  after: Uint8Array;
  context: ProofContext;
}

/**
 * Dial a failed, lingering peer 0 as peer 1 of `config`: HELLO with the secret
 * flag, then AUTH with a proof under `secret` (the right one or not), and
 * collect what comes back until the peer hangs up.
 */
async function dialLingering(config: string, port: number, secret: Uint8Array): Promise<LingerAnswer> {
  const fingerprint = wireFingerprintOf(config);
  const dialerNonce = newNonce();
  let got = new Uint8Array(0);
  let welcomeEnd = -1;
  let context: ProofContext | null = null;
  const closed = Promise.withResolvers<void>();
  const connect = () =>
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        binaryType: "uint8array",
        data(s, chunk) {
          got = Buffer.concat([got, chunk]);
          if (welcomeEnd >= 0 || got.length < FRAME_HEADER_BYTES) return;
          if (got[0] !== FrameType.Welcome) return; // a REFUSE at HELLO: collected as is
          const length = new DataView(got.buffer, got.byteOffset).getUint32(4);
          if (got.length < FRAME_HEADER_BYTES + length) return;
          welcomeEnd = FRAME_HEADER_BYTES + length;
          const welcome = decodeWelcome(got.subarray(FRAME_HEADER_BYTES, welcomeEnd));
          context = { fingerprint, dialerId: 1, listenerId: 0, dialerNonce, listenerNonce: welcome.nonce };
          s.write(encodeAuth(dialerProof(secret, context)));
        },
        close: () => closed.resolve(),
        error: () => closed.resolve(),
      },
    });
  // The peer listens a moment after it starts: retry refused connections (bounded).
  let socket: Socket<undefined> | null = null;
  for (let attempt = 0; socket === null; attempt++) {
    try {
      socket = await connect();
    } catch (error) {
      if (attempt >= lingerDialAttempts) throw error;
      await Bun.sleep(lingerDialRetryMs);
    }
  }
  socket.write(
    encodeHello({
      senderId: 1,
      receiverId: 0,
      peers: 2,
      flags: FLAG_SECRET,
      settings: defaultSettings,
      inputRecords: 0,
      fingerprint,
      outputTag: newNonce(),
      nonce: dialerNonce,
    }),
  );
  await Promise.race([closed.promise, Bun.sleep(10_000)]);
  socket.terminate();
  expect(context).not.toBeNull();
  return { after: got.subarray(Math.max(0, welcomeEnd)), context: context as unknown as ProofContext };
}

describe("the linger after a failure, with a secret", () => {
  test(
    "an unproved dialer gets a fixed refusal; a proved one gets the reason, sealed",
    async () => {
      const dir = newDir();
      const ports = freePorts(2);
      const config = writeConfig(dir, ports);
      const secretPath = secretFile(dir);
      const secret = new TextEncoder().encode(readFileSync(secretPath, "utf8").trim());
      // A missing input: peer 0 fails before its mesh is up, listens, and waits for peer 1 to dial.
      const missing = join(dir, "no-such-input.dat");
      const [output] = outputPaths(dir, 1);
      const peer = spawnPeer({
        id: 0,
        input: missing,
        output,
        config,
        // --retry-ms sets how long the linger waits for a quiet spell (4 retry intervals): room for a loaded machine.
        args: ["--secret-file", secretPath, "--connect-timeout-ms=15000", "--retry-ms=1000"],
      });
      // Wrong secret: a REFUSE in clear with the fixed text, and not a word of the reason.
      const wrong = await dialLingering(config, ports[0], new TextEncoder().encode(generateSecret()));
      const wrongText = Buffer.from(wrong.after).toString("latin1");
      expect(wrong.after[0]).toBe(FrameType.Refuse);
      expect(wrongText).toContain("failed to prove the shared secret");
      expect(wrongText).not.toContain("no-such-input");
      expect(wrongText).not.toContain(dir);
      // The right secret: the listener's AUTH, then one sealed record holding the reason.
      const right = await dialLingering(config, ports[0], secret);
      expect(right.after[0]).toBe(FrameType.Auth);
      const authEnd = FRAME_HEADER_BYTES + 32;
      expect(
        listenerProofValid(secret, right.context, right.after.subarray(FRAME_HEADER_BYTES, authEnd)),
      ).toBe(true);
      const sealed = right.after.subarray(authEnd);
      expect(Buffer.from(sealed).toString("latin1")).not.toContain("no-such-input");
      const reasons: string[] = [];
      const exitCodes: number[] = [];
      const decoder = new FrameDecoder(
        {
          onRecords: () => {},
          onControl: (_type, payload) => {
            reasons.push(decodeReason(payload));
            exitCodes.push(decodeReasonExitCode(payload));
          },
        },
        new Set([FrameType.Refuse]),
      );
      const opener = linkOpener(deriveLinkKeys(secret, right.context), "dialer", (b) => {
        decoder.push(b);
      });
      opener.push(sealed);
      opener.finish();
      expect(reasons.length).toBe(1);
      expect(reasons[0]).toMatch(/^peer 0 aborted: .*no-such-input/);
      const [e] = await allExited([peer], runBoundMs);
      expect(e.exitCode).not.toBe(0);
      console.log(
        `[measured] linger: reason sealed for the proved dialer: ${reasons[0]} (exit ${exitCodes[0]})`,
      );
    },
    runBoundMs,
  );
});

describe("a settings mismatch between peers with the same secret", () => {
  test(
    "the listener's verdict, sent sealed after its proof, stops both peers (exit 2) naming the setting",
    async () => {
      const dir = newDir();
      const config = writeConfig(dir, freePorts(2));
      const inputs = writeInputs(
        dir,
        [0, 1].map((id) => makeRecords(1000, "uniform", 150 + id)),
      );
      const outputs = outputPaths(dir, 2);
      const secret = secretFile(dir);
      const peers = [0, 1].map((id) =>
        spawnPeer({
          id,
          input: inputs[id],
          output: outputs[id],
          config,
          // Only peer 0 validates: a setting every peer must share, compared after the proofs.
          args: ["--secret-file", secret, "--connect-timeout-ms=15000", ...(id === 0 ? ["--validate"] : [])],
        }),
      );
      const exits = await allExited(peers, runBoundMs);
      for (const e of exits) {
        expect({ id: e.id, exitCode: e.exitCode }).toEqual({ id: e.id, exitCode: 2 });
        expect(errorLine(e)).toMatch(/validate/);
      }
      expect(leftovers(dir, outputs)).toEqual([]);
    },
    runBoundMs,
  );
});
