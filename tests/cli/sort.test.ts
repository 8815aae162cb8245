/**
 * The sort command's table to runPeer's SortOptions, and the peer flags demo and
 * bench hand on: parsed once, checked, and passed through unchanged.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCommandArgs } from "../../src/cli/args.ts";
import { peerArgv, peerFlags } from "../../src/cli/peer-flags.ts";
import { sortArgs, toSortOptions } from "../../src/cli/sort.ts";
import { UsageError } from "../../src/errors.ts";
import { generateSecret } from "../../src/secret.ts";
import { runNetsort } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "netsort-sort-cli-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = join(dir, "cluster.yaml");
writeFileSync(
  config,
  "servers:\n  - { serverId: 0, host: 127.0.0.1, port: 5000 }\n  - { serverId: 1, host: 127.0.0.1, port: 5001 }\n",
);
const secretFile = join(dir, "secret");
// A secret as `netsort secret` writes it: random, owner-only (src/secret.ts refuses anything weaker).
const secretText = generateSecret();
writeFileSync(secretFile, `${secretText}\n`);
chmodSync(secretFile, 0o600);

const options = (extra: string[]) =>
  toSortOptions(parseCommandArgs("sort", sortArgs, ["1", "in.dat", "out.dat", config, ...extra]));

describe("sort: arguments to SortOptions", () => {
  test("defaults: bits partition, no memory budget, no temp dir, the limits' timeouts", () => {
    const o = options([]);
    expect(o).toMatchObject({
      serverId: 1,
      inputFile: "in.dat",
      outputFile: "out.dat",
      retryIntervalMs: 250,
      connectTimeoutMs: 60_000,
      idleTimeoutMs: 5000,
      helloTimeoutMs: 2000,
      validate: false,
      partition: "bits",
      memoryBytes: null,
      // No --rounds: null, so the peer picks them from its input size and budget (src/peer/run.ts).
      rounds: null,
      tempDir: null,
    });
    expect(o.config.servers).toHaveLength(2);
  });

  test("--partition, --memory (binary units), --temp-dir and the timeouts reach SortOptions", () => {
    const o = options([
      "--partition",
      "sample",
      "--memory",
      "1.5gb",
      "--temp-dir",
      "/scratch",
      "--retry-ms=100",
      "--validate",
      "--secret-file",
      secretFile,
    ]);
    expect(o.partition).toBe("sample");
    expect(o.memoryBytes).toBe(1.5 * 1024 ** 3);
    expect(o.tempDir).toBe("/scratch");
    expect(o.retryIntervalMs).toBe(100);
    expect(o.validate).toBe(true);
    expect(new TextDecoder().decode(o.secret ?? new Uint8Array())).toBe(secretText);
    expect(options(["--memory", "512mb"]).memoryBytes).toBe(512 * 1024 ** 2);
  });

  test("--rounds 1 to 64 reaches SortOptions.rounds, in either spelling", () => {
    expect(options(["--rounds", "1"]).rounds).toBe(1);
    expect(options(["--rounds", "4"]).rounds).toBe(4);
    expect(options(["--rounds=64"]).rounds).toBe(64);
    expect(options(["--rounds", " 7 "]).rounds).toBe(7);
  });

  test("--rounds outside 1..64 or not a number: one-line usage error naming the flag", () => {
    const refused = (value: string) => {
      let caught: unknown;
      try {
        options(["--rounds", value]);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(UsageError);
      const message = (caught as Error).message;
      expect(message).not.toContain("\n");
      return message;
    };
    expect(refused("0")).toBe("sort: --rounds: must be between 1 and 64, got 0");
    expect(refused("65")).toBe("sort: --rounds: must be between 1 and 64, got 65");
    expect(refused("-1")).toBe("sort: --rounds: must be between 1 and 64, got -1");
    for (const bad of ["x", "4x", "2.5", "1e1", "0x4"]) {
      expect(refused(bad)).toBe(`sort: --rounds: must be an integer, got "${bad}"`);
    }
    expect(refused("")).toBe("sort: --rounds: needs a value");
    expect(() => options(["--rounds"])).toThrow("sort: --rounds: needs a value");
  });

  test("bad values are usage errors naming the flag", () => {
    expect(() => options(["--partition", "hash"])).toThrow(UsageError);
    expect(() => options(["--memory", "1kb"])).toThrow("sort: --memory: must be between");
    expect(() => options(["--memory", "2tb"])).toThrow("sort: --memory: size 2tb is more than");
    expect(() => options(["--temp-dir"])).toThrow("sort: --temp-dir: needs a value");
    expect(() =>
      toSortOptions(parseCommandArgs("sort", sortArgs, ["x", "in.dat", "out.dat", config])),
    ).toThrow('sort: serverId: must be an integer, got "x"');
    // An id the config does not list is passed on: runPeer refuses it after telling the listed peers.
    expect(
      toSortOptions(parseCommandArgs("sort", sortArgs, ["2", "in.dat", "out.dat", config])).serverId,
    ).toBe(2);
  });
});

describe("--rounds refused by a real process", () => {
  test("sort, demo and bench: exit 2, one error line naming the flag, nothing on stdout", async () => {
    const cases: Array<[string[], string]> = [
      [
        ["sort", "0", "in.dat", "out.dat", config, "--rounds", "0"],
        "sort: --rounds: must be between 1 and 64, got 0",
      ],
      [
        ["sort", "0", "in.dat", "out.dat", config, "--rounds=abc"],
        'sort: --rounds: must be an integer, got "abc"',
      ],
      [
        ["demo", "--rounds", "65", "--dir", join(dir, "never")],
        "demo: --rounds: must be between 1 and 64, got 65",
      ],
      [
        ["bench", "--rounds", "0", "--dir", join(dir, "never")],
        "bench: --rounds: must be between 1 and 64, got 0",
      ],
    ];
    for (const [args, message] of cases) {
      const r = await runNetsort(args);
      expect({ args, ...r }).toEqual({ args, code: 2, stdout: "", stderr: `error: ${message}\n` });
    }
    expect(existsSync(join(dir, "never"))).toBe(false);
  }, 30_000);
});

describe("peerArgv: what demo and bench pass to every peer", () => {
  const parsePeerFlags = (raw: string[]) =>
    parseCommandArgs("demo", { positionals: [], flags: peerFlags }, raw);

  test("nothing given: nothing passed (the peers use their own defaults)", () => {
    expect(peerArgv(parsePeerFlags([]))).toEqual([]);
  });

  test("each given flag is passed once, in a form sort parses back to the same value", () => {
    const argv = peerArgv(
      parsePeerFlags([
        "--partition",
        "sample",
        "--memory",
        "2gb",
        "--rounds",
        "5",
        "--temp-dir",
        "/t",
        "--secret-file",
        secretFile,
      ]),
    );
    expect(argv).toEqual([
      "--partition",
      "sample",
      "--memory",
      String(2 * 1024 ** 3),
      "--rounds",
      "5",
      "--temp-dir",
      "/t",
      "--secret-file",
      secretFile,
    ]);
    const o = options(argv);
    expect([o.partition, o.memoryBytes, o.rounds, o.tempDir]).toEqual(["sample", 2 * 1024 ** 3, 5, "/t"]);
  });

  test("--rounds is checked where it is given: demo and bench refuse 0 and 65 as sort does", () => {
    expect(() => parsePeerFlags(["--rounds", "0"])).toThrow(
      "demo: --rounds: must be between 1 and 64, got 0",
    );
    expect(() => parsePeerFlags(["--rounds", "65"])).toThrow(
      "demo: --rounds: must be between 1 and 64, got 65",
    );
    expect(() => parsePeerFlags(["--rounds", "many"])).toThrow(
      'demo: --rounds: must be an integer, got "many"',
    );
    // 1 is passed on too: an explicit --rounds 1 overrides the peers' size-based default.
    expect(peerArgv(parsePeerFlags(["--rounds", "1"]))).toEqual(["--rounds", "1"]);
  });
});
