/**
 * Who may join a mesh, and what a peer does with a stream that breaks the
 * protocol (issue 4, scenarios 6 and 7).
 * 6: a shared secret (--secret-file or NETSORT_SECRET): the sort completes when
 *    every peer has it; a wrong or missing secret is refused on both ends (exit 2).
 * 7: a fake peer (this test, speaking the protocol with src/exchange/protocol.ts
 *    encoders) joins a real peer and then sends an unknown frame type, an
 *    oversized length, closes before DONE, or a DONE that does not match: the
 *    real peer aborts naming the sender (exit 1) and tells the fake peer (ABORT).
 *    A control run where the fake peer behaves shows the fake is a valid peer.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeSummary, FrameType } from "../../src/exchange/protocol.ts";
import { generateSecret } from "../../src/secret.ts";
import { dataFrame, type FakePeer } from "./fake-peer.ts";
import { expectCleanFinish, expectStopAfter, type FakeRun, ownRecords, withFakePeer } from "./fake-run.ts";
import { allExited, dirsPerTest, errorLine, leftovers, spawnPeer } from "./fault-helpers.ts";
import {
  freePorts,
  makeRecords,
  outputPaths,
  problemLines,
  RECORD,
  runPeers,
  verifyOutputs,
  writeConfig,
  writeInputs,
} from "./harness.ts";

const runBoundMs = 30_000;

const newDir = dirsPerTest("netsort-auth-");

/** A secret file as `netsort secret` leaves it: owner-only (0600), whatever the umask. */
function secretFile(dir: string, name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, `${text}\n`);
  chmodSync(file, 0o600);
  return file;
}

function report(scenario: string, figures: Record<string, unknown>): void {
  console.log(`[measured] ${scenario}: ${JSON.stringify(figures)}`);
}

describe("6. shared secret", () => {
  test(
    "--secret-file on every peer: the sort completes",
    async () => {
      const dir = newDir();
      const secret = secretFile(dir, "secret", generateSecret());
      const inputs = writeInputs(
        dir,
        [0, 1, 2].map((id) => makeRecords(5000, "uniform", 60 + id)),
      );
      const outputs = outputPaths(dir, 3);
      const results = await runPeers(writeConfig(dir, freePorts(3)), inputs, outputs, {
        extraArgs: ["--secret-file", secret],
      });
      for (const r of results)
        expect({ id: r.id, exit: r.exitCode, err: problemLines(r.stderr) }).toEqual({
          id: r.id,
          exit: 0,
          err: [],
        });
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
    },
    runBoundMs,
  );

  test(
    "NETSORT_SECRET on every peer: the sort completes",
    async () => {
      const dir = newDir();
      const inputs = writeInputs(
        dir,
        [0, 1].map((id) => makeRecords(5000, "uniform", 70 + id)),
      );
      const outputs = outputPaths(dir, 2);
      const results = await runPeers(writeConfig(dir, freePorts(2)), inputs, outputs, {
        env: { NETSORT_SECRET: generateSecret() },
      });
      for (const r of results)
        expect({ id: r.id, exit: r.exitCode, err: problemLines(r.stderr) }).toEqual({
          id: r.id,
          exit: 0,
          err: [],
        });
      expect(verifyOutputs(inputs, outputs)).toEqual([]);
    },
    runBoundMs,
  );

  interface Mismatch {
    name: string;
    /** Secret of each peer: a file's text, or null for none. */
    secrets: Array<string | null>;
    /**
     * What each end must say: the refusal it saw itself, or the same refusal
     * passed on by the other end in an ABORT ("peer K aborted: ...").
     */
    message: RegExp;
  }
  const mismatches: Mismatch[] = [
    {
      name: "a wrong secret on one peer",
      secrets: [generateSecret(), generateSecret()],
      message: /^(peer \d aborted: )?peer \d .*shared secret.*(secrets differ|different secrets)/,
    },
    {
      name: "no secret on one peer",
      secrets: [generateSecret(), null],
      message: /^(peer \d aborted: )?peer \d .*(no shared secret|shared secret.*(has|have) none)/,
    },
  ];
  for (const m of mismatches) {
    test(
      `${m.name}: refused on both ends with a clear message (exit 2)`,
      async () => {
        const dir = newDir();
        const ports = freePorts(2);
        const config = writeConfig(dir, ports);
        const outputs = outputPaths(dir, 2);
        const inputs = writeInputs(
          dir,
          [0, 1].map((id) => makeRecords(1000, "uniform", 80 + id)),
        );
        const peers = m.secrets.map((secret, id) => {
          const args = ["--connect-timeout-ms=10000"];
          if (secret !== null) args.push("--secret-file", secretFile(dir, `secret-${id}`, secret));
          return spawnPeer({ id, input: inputs[id], output: outputs[id], config, args });
        });
        const exits = await allExited(peers, runBoundMs);
        report(`6 ${m.name}`, {
          elapsedMs: exits.map((e) => Math.round(e.elapsedMs)),
          exitCodes: exits.map((e) => e.exitCode),
          stderr: exits.map((e) => e.stderr.trim()),
        });
        for (const e of exits) {
          expect({ id: e.id, exitCode: e.exitCode }).toEqual({ id: e.id, exitCode: 2 });
          expect(errorLine(e)).toMatch(m.message);
          // The secret itself never appears in a message.
          for (const s of m.secrets) if (s !== null) expect(e.stderr + e.stdout).not.toContain(s);
        }
        expect(leftovers(dir, outputs)).toEqual([]);
      },
      runBoundMs,
    );
  }

  test("a secret shorter than 16 bytes is refused before anything listens (exit 2)", async () => {
    const dir = newDir();
    const ports = freePorts(2);
    const [e] = await allExited(
      [
        spawnPeer({
          id: 0,
          input: writeInputs(dir, [makeRecords(10, "uniform", 1)])[0],
          output: outputPaths(dir, 1)[0],
          config: writeConfig(dir, ports),
          env: { NETSORT_SECRET: "short" },
        }),
      ],
      10_000,
    );
    expect(e.exitCode).toBe(2);
    expect(errorLine(e)).toMatch(/NETSORT_SECRET: the secret must be 16 to 4096 bytes, got 5/);
    report("6 short secret", { elapsedMs: Math.round(e.elapsedMs), message: errorLine(e) });
  }, 15_000);
});

// ---- scenario 7: a fake peer ------------------------------------------------

/** The records peer 0 must end up with: its own input's share plus what the fake sent it. */
function sortedRecordsHex(buffers: Uint8Array[]): string[] {
  const all: string[] = [];
  for (const b of buffers)
    for (let o = 0; o < b.length; o += RECORD)
      all.push(Buffer.from(b.subarray(o, o + RECORD)).toString("hex"));
  return all.sort();
}

/** `n` records that peer 0 of a 2-peer cluster owns (key's top bit clear). */
function recordsForPeer0(n: number, seed: number): Uint8Array {
  const r = makeRecords(n, "uniform", seed);
  for (let o = 0; o < r.length; o += RECORD) r[o] &= 0x7f;
  return r;
}

/** Peer 0 (3000 uniform records) against a fake peer 1. */
function withFake(ackPeer0: boolean, body: (r: FakeRun) => Promise<void>): Promise<void> {
  return withFakePeer({ newDir, input: makeRecords(3000, "uniform", 99), ackPeer0, runBoundMs }, body);
}

describe("7. a fake peer breaks the protocol", () => {
  test(
    "control: the fake peer speaking the protocol correctly lets peer 0 finish (exit 0)",
    () =>
      withFake(true, async ({ input, output, fake, exit }) => {
        const mine = recordsForPeer0(50, 7);
        fake.send(dataFrame(mine));
        fake.send(encodeSummary(FrameType.Done, { records: 50, digest: Bun.hash.crc32(mine) }));
        expect(await fake.events.wait("ack-from-0", 5_000)).toEqual({
          records: 50,
          digest: Bun.hash.crc32(mine),
        });
        await fake.events.wait("done-from-0", 5_000);
        expect(fake.doneFromPeer0).toEqual(fake.received);
        // Also: peer 0's hello named sender 0 and receiver 1 (the fake notes any mismatch as a problem).
        await expectCleanFinish(fake, exit);
        // Peer 0's output: its own share of its input plus the fake's records, in order.
        const own = ownRecords(input);
        // Hex strings compare like the bytes they spell: file order must be sorted order.
        const out = new Uint8Array(readFileSync(output));
        const outInFileOrder: string[] = [];
        for (let o = 0; o < out.length; o += RECORD)
          outInFileOrder.push(Buffer.from(out.subarray(o, o + RECORD)).toString("hex"));
        expect(outInFileOrder).toEqual(sortedRecordsHex([...own, mine]));
        expect(fake.received.records).toBe(3000 - own.length);
      }),
    runBoundMs,
  );

  interface Breakage {
    name: string;
    act(fake: FakePeer): void;
    message: RegExp;
  }
  const tenRecords = recordsForPeer0(10, 11);
  const breakages: Breakage[] = [
    {
      name: "an unknown frame type",
      act: (f) => f.send(new Uint8Array([0x63, 0, 0, 0, 0, 0, 0, 0])),
      message: /protocol violation by peer 1 \(127\.0\.0\.1:\d+\): unknown frame type 99/,
    },
    {
      name: "an oversized length",
      act: (f) => f.send(new Uint8Array([FrameType.Data, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])),
      message: /protocol violation by peer 1 \(127\.0\.0\.1:\d+\): .*2147483647 bytes exceeds/,
    },
    {
      name: "a close before DONE",
      act: (f) => {
        f.send(dataFrame(tenRecords));
        f.dialer?.end();
      },
      message: /peer 1 \(127\.0\.0\.1:\d+\) closed its stream mid-stream after 10 records/,
    },
    {
      name: "a close inside a frame",
      act: (f) => {
        f.send(dataFrame(tenRecords).subarray(0, 500));
        f.dialer?.end();
      },
      message: /peer 1 \(127\.0\.0\.1:\d+\) closed its stream mid-stream after \d+ records inside a frame/,
    },
    {
      name: "a DONE whose count does not match",
      act: (f) => {
        f.send(dataFrame(tenRecords));
        f.send(encodeSummary(FrameType.Done, { records: 11, digest: Bun.hash.crc32(tenRecords) }));
      },
      message: /stream from peer 1 is corrupt: received 10 records, peer 1 sent 11$/,
    },
    {
      name: "a DONE whose digest does not match",
      act: (f) => {
        f.send(dataFrame(tenRecords));
        f.send(
          encodeSummary(FrameType.Done, { records: 10, digest: (Bun.hash.crc32(tenRecords) ^ 1) >>> 0 }),
        );
      },
      message:
        /stream from peer 1 is corrupt: 10 records as sent, but the digest differs: received [0-9a-f]{8}, peer 1 sent [0-9a-f]{8}$/,
    },
  ];
  for (const b of breakages) {
    test(
      `${b.name}: the real peer aborts naming peer 1 (exit 1) and tells it`,
      () =>
        withFake(false, async (run) => {
          const { line, stopMs } = await expectStopAfter(run, b.act, b.message, 3_000);
          report(`7 ${b.name}`, { stopMs, message: line });
        }),
      runBoundMs,
    );
  }
});
