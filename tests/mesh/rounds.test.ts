/**
 * Key-range rounds (--rounds, protocol v3 MARK, src/peer/drain.ts) with real
 * peers on loopback:
 * - 4 peers with --rounds 4, 3 peers (ranges not on bit boundaries) with
 *   --rounds 3, and sealed links: exact outputs, and every peer read in that
 *   many rounds and wrote part (not all) of its output while records still
 *   arrived: the drain really ran;
 * - rounds are per sender (one peer --rounds 1, the other 5), --partition
 *   sample on skewed keys, --validate: exact outputs (and the verdict);
 * - a --memory budget that forces a spill, after the drain wrote early or
 *   before it could: exact outputs, and nothing written early after a spill;
 * - a fake peer 1 (tests/mesh/fake-peer.ts): its MARK at the end of peer 0's
 *   range while peer 0's reading is held, so peer 0's drain must wait for its
 *   own rounds (and peer 0's MARKs to the fake are exactly its round cuts, no
 *   record below them); a record below its MARK, a MARK that goes down or one
 *   past the last 48-bit prefix: peer 0 fails with one error line naming
 *   peer 1 (exit 1), in bounded time, and tells the fake. A control run shows
 *   the fake's MARKs are valid ones.
 * "Exact" is byte for byte: the outputs in peer order are an independent
 * whole-record sort of all inputs (tests/partition/distributions.ts).
 */
import { describe, expect, test } from "bun:test";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  encodeMark,
  encodeSummary,
  FRAME_HEADER_BYTES,
  FrameType,
  writeHeader,
} from "../../src/exchange/protocol.ts";
import { minimumBudgetBytes } from "../../src/memory/budget.ts";
import { generateSecret } from "../../src/secret.ts";
import { concat, prng } from "../helpers.ts";
import { distributions, randomBytes, referenceSort } from "../partition/distributions.ts";
import { dataFrame, type FakePeer } from "./fake-peer.ts";
import { expectCleanFinish, expectStopAfter, type FakeRun, ownRecords, withFakePeer } from "./fake-run.ts";
import { allExited, dirsPerTest, errorLine, leftovers, type PeerExit, spawnPeer } from "./fault-helpers.ts";
import {
  expectedOwner,
  freePorts,
  outputPaths,
  problemLines,
  RECORD,
  writeConfig,
  writeInputs,
} from "./harness.ts";

/** Records per peer: ~4 MB, so each stream carries ~250 KB per round (several socket reads between MARKs). */
const recordsPerPeer = 40_000;
/** One mesh run, bounded (a loaded 2-core machine; a run takes 1-3 s). */
const runBoundMs = 30_000;
/** How long a fake peer keeps peer 0's reading held (not accepting its dial) after its MARK. */
const holdReadingMs = 500;
/** After a fake peer's violation, the real peer stops this soon. */
const stopBoundMs = 3_000;
/** How often the rewritten-input test changes the input: several times within the shortest run of passes. */
const flipEveryMs = 5;

const newDir = dirsPerTest("netsort-rounds-");

interface MeshRun {
  dir: string;
  exits: PeerExit[];
  outputs: string[];
}

/** Peers 0..n-1 on `inputs`, peer i with `argsOf(i)`; waits for all (bounded). */
async function runMesh(inputs: Uint8Array[], argsOf: (id: number) => string[]): Promise<MeshRun> {
  const dir = newDir();
  const config = writeConfig(dir, freePorts(inputs.length));
  const inputPaths = writeInputs(dir, inputs);
  const outputs = outputPaths(dir, inputs.length);
  const peers = inputs.map((_, id) =>
    spawnPeer({ id, input: inputPaths[id], output: outputs[id], config, args: argsOf(id) }),
  );
  return { dir, exits: await allExited(peers, runBoundMs), outputs };
}

/** Every peer exited 0; `allowed` warnings aside, none logged a warning or an error. */
function expectAllSucceeded(exits: PeerExit[], allowed: RegExp | null = null): void {
  for (const e of exits) {
    const problems = problemLines(e.stderr).filter((l) => allowed === null || !allowed.test(l));
    expect({ id: e.id, exitCode: e.exitCode, problems }).toEqual({ id: e.id, exitCode: 0, problems: [] });
  }
}

/**
 * The outputs in peer order are, byte for byte, the sorted union of the inputs;
 * `bitsOwners`: each output also holds only its peer's equal share of the
 * 48-bit prefixes (sorted, so its first and last record decide).
 */
function expectExact(inputs: Uint8Array[], outputs: string[], bitsOwners: boolean): Uint8Array[] {
  const outs = outputs.map((p) => new Uint8Array(readFileSync(p)));
  const joined = concat(outs);
  const reference = referenceSort(concat(inputs));
  expect({ bytes: joined.length, sameAsReference: Buffer.compare(joined, reference) === 0 }).toEqual({
    bytes: reference.length,
    sameAsReference: true,
  });
  if (bitsOwners) {
    outs.forEach((out, id) => {
      if (out.length === 0) return;
      const owners = [
        expectedOwner(out, 0, outs.length),
        expectedOwner(out, out.length - RECORD, outs.length),
      ];
      expect({ id, owners }).toEqual({ id, owners: [id, id] });
    });
  }
  return outs;
}

const roundsLine = (n: number) => new RegExp(`^read .* in ${n} key-range rounds in \\d+ ms`, "m");
const drainLine =
  /^wrote (\d+(?:\.\d+)?) (B|KiB|MiB|GiB) of the output while records arrived \(sort \d+ ms, write \d+ ms\)$/m;

/** Bytes the peer says it wrote while records arrived (formatBytes: rounded to 0.1 unit), or null for no such line. */
function drainedBytes(stderr: string): number | null {
  const m = drainLine.exec(stderr);
  if (m === null) return null;
  const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2]] ?? Number.NaN;
  return Number(m[1]) * unit;
}

/**
 * Every peer read in `rounds` rounds and wrote part, never all, of its output
 * while records still arrived (the drain writes only below the last round's
 * start). Returns the share each wrote so, for the log.
 */
function expectDrained(exits: PeerExit[], outs: Uint8Array[], rounds: number): string {
  const shares: string[] = [];
  for (const e of exits) {
    expect({ id: e.id, rounds: roundsLine(rounds).test(e.stderr) }).toEqual({ id: e.id, rounds: true });
    const bytes = drainedBytes(e.stderr);
    expect({ id: e.id, drained: bytes !== null && bytes > 0 && bytes < outs[e.id].length }).toEqual({
      id: e.id,
      drained: true,
    });
    shares.push(`${(((bytes ?? 0) / outs[e.id].length) * 100).toFixed(0)}%`);
  }
  return shares.join(" / ");
}

describe("--rounds with real peers", () => {
  test(
    "4 peers, --rounds 4, uniform keys: exact outputs; every peer read in 4 rounds and wrote part of its output while records arrived",
    async () => {
      const inputs = [0, 1, 2, 3].map((p) => randomBytes(recordsPerPeer, 1000 + p));
      const { exits, outputs } = await runMesh(inputs, () => ["--rounds", "4"]);
      expectAllSucceeded(exits);
      const outs = expectExact(inputs, outputs, true);
      const shares = expectDrained(exits, outs, 4);
      console.log(
        `[measured] 4 peers x --rounds 4: written while records arrived ${shares} of each output; peers ${exits.map((e) => Math.round(e.elapsedMs)).join(" / ")} ms`,
      );
    },
    runBoundMs,
  );

  test(
    "3 peers (ranges not on bit boundaries), --rounds 3: exact outputs, part written while records arrived",
    async () => {
      const inputs = [0, 1, 2].map((p) => randomBytes(recordsPerPeer, 2000 + p));
      const { exits, outputs } = await runMesh(inputs, () => ["--rounds", "3"]);
      expectAllSucceeded(exits);
      const outs = expectExact(inputs, outputs, true);
      const shares = expectDrained(exits, outs, 3);
      console.log(`[measured] 3 peers x --rounds 3: written while records arrived ${shares}`);
    },
    runBoundMs,
  );

  test(
    "rounds are per sender: peer 0 with --rounds 1, peer 1 with --rounds 5: exact outputs",
    async () => {
      const inputs = [0, 1].map((p) => randomBytes(recordsPerPeer, 3000 + p));
      const { exits, outputs } = await runMesh(inputs, (id) => ["--rounds", id === 0 ? "1" : "5"]);
      expectAllSucceeded(exits);
      expectExact(inputs, outputs, true);
      // One pass says nothing about rounds; five say so.
      expect(exits[0].stderr).toMatch(/^read .* records\) in \d+ ms/m);
      expect(exits[0].stderr).not.toMatch(/key-range rounds/);
      expect(exits[1].stderr).toMatch(roundsLine(5));
    },
    runBoundMs,
  );

  test(
    "--partition sample --rounds 4 with skewed keys: exact outputs",
    async () => {
      const inputs = [0, 1, 2, 3].map((p) => distributions.skewed(recordsPerPeer / 2, p));
      const { exits, outputs } = await runMesh(inputs, () => ["--partition", "sample", "--rounds", "4"]);
      expectAllSucceeded(exits);
      expectExact(inputs, outputs, false);
      for (const e of exits) {
        expect({ id: e.id, rounds: roundsLine(4).test(e.stderr) }).toEqual({ id: e.id, rounds: true });
        expect(e.stderr).toMatch(/^partition: 3 split points from \d+ sampled records/m);
      }
    },
    runBoundMs,
  );

  test(
    "with a shared secret (sealed links), --rounds 4: exact outputs, part written while records arrived",
    async () => {
      const secretDir = newDir();
      const secret = join(secretDir, "secret");
      writeFileSync(secret, `${generateSecret()}\n`, { mode: 0o600 });
      const inputs = [0, 1, 2, 3].map((p) => randomBytes(recordsPerPeer, 4000 + p));
      const { exits, outputs } = await runMesh(inputs, () => ["--secret-file", secret, "--rounds", "4"]);
      expectAllSucceeded(exits);
      const outs = expectExact(inputs, outputs, true);
      // Sealed records open before the decoder: the MARKs arrive, and the drain runs, as in the clear.
      const shares = expectDrained(exits, outs, 4);
      console.log(`[measured] sealed, 4 peers x --rounds 4: written while records arrived ${shares}`);
    },
    runBoundMs,
  );

  test(
    "--validate --rounds 4: exit 0, and the verdict is logged as without rounds",
    async () => {
      // Duplicate keys on peer 0 (a few keys, many times), uniform elsewhere.
      const dups = randomBytes(recordsPerPeer / 2, 5000);
      const keys = randomBytes(9, 5001);
      const pick = prng(5002);
      for (let o = 0; o < dups.length; o += RECORD) {
        const k = Math.floor(pick() * 9);
        dups.set(keys.subarray(k * RECORD, k * RECORD + 10), o);
      }
      const inputs = [dups, randomBytes(recordsPerPeer / 2, 5003), randomBytes(recordsPerPeer / 2, 5004)];
      const { exits, outputs } = await runMesh(inputs, () => ["--validate", "--rounds", "4"]);
      expectAllSucceeded(exits);
      expectExact(inputs, outputs, true);
      const all = concat(inputs);
      const seen = new Set<string>();
      for (let o = 0; o < all.length; o += RECORD)
        seen.add(Buffer.from(all.subarray(o, o + 10)).toString("hex"));
      expect(exits[0].stderr).toContain(`validate: Records: ${all.length / RECORD}`);
      expect(exits[0].stderr).toContain(`validate: Duplicate keys: ${all.length / RECORD - seen.size}`);
      for (const e of exits) {
        expect({ id: e.id, valid: /VALID: outputs sorted/.test(e.stderr) }).toEqual({
          id: e.id,
          valid: true,
        });
        expect({ id: e.id, rounds: roundsLine(4).test(e.stderr) }).toEqual({ id: e.id, rounds: true });
      }
    },
    runBoundMs,
  );

  interface SpillCase {
    name: string;
    /** The hot 48-bit prefix: 90% of the records of the inputs it is given to; peer 1 owns it (0x40-0x7f). */
    hot: number[];
    /** Records in each peer's input, and which inputs get the hot prefix. */
    records: number[];
    hotInputs: number[];
    why: string;
    /**
     * Peer 1 spills inside its own first round, before its drain may start (its
     * own rounds bound it): after that spill it must write nothing early.
     */
    spillsBeforeAnyDrain: boolean;
  }
  const spillCases: SpillCase[] = [
    {
      name: "hot keys in peer 1's last round: it may write its first rounds, then spills",
      hot: [0x7a, 0x12, 0x34, 0x56, 0x78, 0x9a],
      records: [30_000, 30_000, 30_000, 30_000],
      hotInputs: [0, 2, 3],
      why: "peer 1 reads uniform keys, the others send it ~8 MB of one prefix in their last round",
      spillsBeforeAnyDrain: false,
    },
    {
      name: "hot keys in peer 1's first round: it spills while reading, and drains nothing after",
      hot: [0x46, 0x12, 0x34, 0x56, 0x78, 0x9a],
      records: [20_000, 60_000, 20_000, 20_000],
      hotInputs: [0, 1, 2, 3],
      why: "peer 1's own 5.4 MB of one prefix spill in its first round; a drain after that would write keys the merge has below them",
      spillsBeforeAnyDrain: true,
    },
  ];
  for (const c of spillCases) {
    test(
      `--memory that forces a spill, --rounds 4, ${c.name}: exact outputs`,
      async () => {
        // Peer 1 holds more of the hot prefix than the least budget leaves for records
        // (8 MiB): it spills; the merge gives what the drain did not write. (${c.why})
        const peers = 4;
        const inputs = c.records.map((n, p) => {
          const data = randomBytes(n, 6000 + p);
          const pick = prng(6100 + p);
          if (c.hotInputs.includes(p))
            for (let o = 0; o < data.length; o += RECORD) if (pick() < 0.9) data.set(c.hot, o);
          return data;
        });
        const spillRoot = newDir();
        const { exits, outputs } = await runMesh(inputs, (id) => {
          const spill = join(spillRoot, `spill-${id}`);
          mkdirSync(spill);
          return ["--memory", String(minimumBudgetBytes(peers)), "--temp-dir", spill, "--rounds", "4"];
        });
        // Bits mode on skewed keys: the peer with most of them says so (and suggests sampling).
        expectAllSucceeded(exits, /^warning: .*--partition sample/);
        expectExact(inputs, outputs, true);
        const spiller = exits[1];
        expect(spiller.stderr).toMatch(
          /memory: the share does not fit in --memory .*; spilling sorted runs to /,
        );
        expect(spiller.stderr).toMatch(/memory: merging \d+ runs/);
        if (c.spillsBeforeAnyDrain) expect(drainedBytes(spiller.stderr)).toBeNull();
        for (const e of exits)
          expect({ id: e.id, rounds: roundsLine(4).test(e.stderr) }).toEqual({ id: e.id, rounds: true });
        for (let id = 0; id < peers; id++) expect(readdirSync(join(spillRoot, `spill-${id}`))).toEqual([]);
        console.log(
          `[measured] spill, ${c.name}: peer 1 wrote ${drainedBytes(spiller.stderr) ?? 0} B before the merge; others ${exits
            .filter((e) => e.id !== 1)
            .map((e) => drainedBytes(e.stderr) ?? 0)
            .join(" / ")} B`,
        );
      },
      runBoundMs,
    );
  }
});

// ---- a fake peer 1: MARKs kept and broken --------------------------------------------

/** `n` records that peer 0 of a 2-peer cluster owns, with 48-bit prefixes in [low, high) (a range within [0, 2^47)). */
function recordsBetween(n: number, low: number, high: number, seed: number): Uint8Array {
  const data = randomBytes(n, seed);
  const pick = prng(seed + 1);
  for (let o = 0; o < data.length; o += RECORD) {
    const p = low + Math.floor(pick() * (high - low));
    for (let i = 0; i < 6; i++) data[o + i] = Math.floor(p / 2 ** (8 * (5 - i))) % 256;
  }
  return data;
}

/** A quarter of the key space: inside peer 0's half. */
const markAt = 2 ** 46;

/** Peer 0 (uniform input of `inputRecords`) against a fake peer 1. */
function withFake(
  ackPeer0: boolean,
  body: (r: FakeRun) => Promise<void>,
  o: { inputRecords: number; args: string[]; listenFirst: boolean } = {
    inputRecords: 3000,
    args: [],
    listenFirst: true,
  },
): Promise<void> {
  const input = randomBytes(o.inputRecords, 7000);
  return withFakePeer(
    { newDir, input, ackPeer0, runBoundMs, args: o.args, listenFirst: o.listenFirst },
    body,
  );
}

describe("a fake peer 1: MARKs kept and broken", () => {
  test(
    "control: records, a MARK, records at or above it, DONE: peer 0 finishes with them in its output (exit 0)",
    () =>
      withFake(true, async ({ input, output, fake, exit }) => {
        const below = recordsBetween(40, 0, markAt, 7100);
        const above = recordsBetween(40, markAt, 2 ** 47, 7200);
        above.set([0x40, 0, 0, 0, 0, 0], 0); // exactly the mark: allowed
        fake.send(dataFrame(below));
        fake.send(encodeMark(markAt));
        fake.send(encodeMark(markAt)); // the same mark again: marks never go down, they may stay
        fake.send(dataFrame(above));
        const mine = concat([below, above]);
        fake.send(encodeSummary(FrameType.Done, { records: 80, digest: Bun.hash.crc32(mine) }));
        await fake.events.wait("ack-from-0", 5_000);
        await fake.events.wait("done-from-0", 5_000);
        await expectCleanFinish(fake, exit);
        const expected = referenceSort(concat([...ownRecords(input), mine]));
        expect(Buffer.compare(new Uint8Array(readFileSync(output)), expected)).toBe(0);
      }),
    runBoundMs,
  );

  test(
    "the drain waits for the peer's own rounds too: a MARK at the end of its range while its own reading is held",
    () =>
      withFake(
        true,
        async ({ input, output, fake, exit }) => {
          // Peer 1 has nothing for peer 0: all it will send is at or above 2^47, the end of peer 0's range.
          fake.send(encodeMark(2 ** 47));
          // Peer 0 cannot dial us yet: its reading stops once its batches for us (2 MB) are queued,
          // in its third of 4 rounds. Its drain may write what its own first rounds routed, not more:
          // records of its later rounds are still to come from its own input.
          await Bun.sleep(holdReadingMs);
          fake.listen();
          // Peer 0 failing first ends the wait with its log (exit is never a success before our DONE).
          await Promise.race([
            fake.events.wait("done-from-0", 10_000),
            exit.then((e) => {
              throw new Error(`peer 0 exited ${e.exitCode} before its DONE:\n${e.stderr}`);
            }),
          ]);
          fake.send(encodeSummary(FrameType.Done, { records: 0, digest: 0 }));
          await fake.events.wait("ack-from-0", 5_000);
          // Peer 0 kept its MARK rules on its own stream too (the fake checks every record against
          // the last MARK, and expectCleanFinish wants no problem): one MARK after each of its
          // first 3 rounds, at the cuts of our range [2^47, 2^48).
          const e = await expectCleanFinish(fake, exit);
          expect(fake.marksFromPeer0).toEqual([1, 2, 3].map((g) => 2 ** 47 + g * 2 ** 45));
          expect(fake.received.records).toBe(60_000 - ownRecords(input).length);
          expect(e.stderr).toMatch(roundsLine(4));
          expect(drainedBytes(e.stderr)).toBeGreaterThan(0);
          const out = new Uint8Array(readFileSync(output));
          expect(Buffer.compare(out, referenceSort(concat(ownRecords(input))))).toBe(0);
        },
        { inputRecords: 60_000, args: ["--rounds", "4", "--retry-ms=50"], listenFirst: false },
      ),
    runBoundMs,
  );

  interface Breakage {
    name: string;
    act(fake: FakePeer): void;
    message: RegExp;
  }
  const pastTheEnd = new Uint8Array(FRAME_HEADER_BYTES + 8);
  writeHeader(pastTheEnd, 0, FrameType.Mark, 8);
  new DataView(pastTheEnd.buffer).setBigUint64(FRAME_HEADER_BYTES, 2n ** 48n + 1n);
  const breakages: Breakage[] = [
    {
      name: "a record below its MARK, in the same write",
      act: (f) =>
        f.send(
          concat([
            dataFrame(recordsBetween(20, markAt, 2 ** 47, 7300)),
            encodeMark(markAt),
            dataFrame(recordsBetween(1, markAt - 1, markAt, 7400)), // one below the mark
          ]),
        ),
      message: new RegExp(
        `^protocol violation by peer 1 \\(127\\.0\\.0\\.1:\\d+\\): record with 48-bit prefix ${markAt - 1} below the stream's MARK ${markAt}$`,
      ),
    },
    {
      name: "a record below its MARK, after peer 0 had time to write below it",
      act: (f) => {
        f.send(dataFrame(recordsBetween(20, 0, 2 ** 47, 7500)));
        f.send(encodeMark(markAt));
        setTimeout(() => f.send(dataFrame(recordsBetween(1, 0, 2 ** 16, 7600))), 300);
      },
      message: new RegExp(
        `^protocol violation by peer 1 \\(127\\.0\\.0\\.1:\\d+\\): record with 48-bit prefix \\d+ below the stream's MARK ${markAt}$`,
      ),
    },
    {
      name: "a MARK that goes down",
      act: (f) => {
        f.send(encodeMark(markAt));
        f.send(encodeMark(markAt - 2 ** 16));
      },
      message: new RegExp(
        `^protocol violation by peer 1 \\(127\\.0\\.0\\.1:\\d+\\): MARK went down from ${markAt} to ${markAt - 2 ** 16}$`,
      ),
    },
    {
      name: "a MARK past the last 48-bit prefix",
      act: (f) => f.send(pastTheEnd),
      message:
        /^protocol violation by peer 1 \(127\.0\.0\.1:\d+\): MARK \d+ is past the largest 48-bit prefix$/,
    },
  ];
  for (const b of breakages) {
    test(
      `${b.name}: peer 0 fails with one line naming peer 1 (exit 1) and tells it`,
      () =>
        withFake(false, async (run) => {
          const { line, stopMs } = await expectStopAfter(run, b.act, b.message, stopBoundMs + 300);
          console.log(`[measured] ${b.name}: stopped in ${stopMs} ms: ${line}`);
        }),
      runBoundMs,
    );
  }
});

describe("an input rewritten in place between rounds", () => {
  test(
    "is an error naming the input and the round, not records sent twice or never",
    async () => {
      const dir = newDir();
      const [port] = await freePorts(1);
      const config = writeConfig(dir, [port]);
      // 16 MiB read 64 times: 80 ms of passes on the fastest host seen so far, ~1 s on slow ones.
      const [input] = writeInputs(dir, [randomBytes(167_772, 7)]);
      const [output] = outputPaths(dir, 1);
      const peer = spawnPeer({ id: 0, input, output, config, args: ["--rounds", "64"] });
      // Flip one byte in place (same size, same inode) every flipEveryMs until the peer exits:
      // whichever flip lands after it took the input's version fails the pass it is in. Every
      // 100 ms was too slow there: the passes could all end between two flips (exit 0).
      let flips = 0;
      const flipper = setInterval(() => {
        const fd = openSync(input, "r+");
        const b = Buffer.alloc(1);
        readSync(fd, b, 0, 1, 12345);
        b[0] ^= 0xff;
        writeSync(fd, b, 0, 1, 12345);
        closeSync(fd);
        flips++;
      }, flipEveryMs);
      try {
        const [exit] = await allExited([peer], runBoundMs);
        expect(flips).toBeGreaterThan(0);
        expect(exit.exitCode).toBe(1);
        expect(errorLine(exit)).toMatch(
          new RegExp(
            `^input ${input.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: changed while being read \\(during key-range round \\d+ of 64\\)$`,
          ),
        );
        expect(leftovers(dir, [output])).toEqual([]);
      } finally {
        clearInterval(flipper);
      }
    },
    runBoundMs + 5_000,
  );
});
