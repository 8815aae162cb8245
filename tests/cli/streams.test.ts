/**
 * Streams: data and JSON on stdout, every log line on stderr, and every error
 * one line "error: <what>: <why>" on stderr (a stack trace only with --verbose).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runNetsort } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "netsort-streams-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** A free loopback port for a one-peer config. */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** Independent records: 10-byte keys from crypto, not from src/. */
function records(n: number): Uint8Array {
  const data = new Uint8Array(n * 100);
  crypto.getRandomValues(data);
  return data;
}

/** One error line: "error: <what>: <why>", nothing before or after it, no blank line. */
const oneErrorLine = /^error: [^\n:]+(: [^\n]+)+\n$/;

describe("stdout is data, stderr is logs", () => {
  test("sort --json: stdout is exactly one JSON line; the phase log lines are on stderr", async () => {
    const config = file("one.yaml", `servers:\n  - { serverId: 0, host: 127.0.0.1, port: ${freePort()} }\n`);
    const input = file("in-0.dat", records(500));
    const r = await runNetsort(["0", input, join(dir, "out-0.dat"), config, "--json"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe("");
    expect(JSON.parse(lines[0])).toMatchObject({ serverId: 0, outputRecords: 500 });
    expect(r.stderr).toMatch(/sorted 500 records/);
    const stderrLines = r.stderr.trimEnd().split("\n");
    expect(stderrLines.filter((l) => l.trim() === "")).toEqual([]);
    expect(stderrLines.filter((l) => /^(error|warning): /.test(l))).toEqual([]);
  }, 30_000);

  test("config --json: stdout is one JSON document with every peer and the fingerprint", async () => {
    const config = file(
      "two.yaml",
      "servers:\n  - { serverId: 0, host: a.example, port: 5000 }\n  - { serverId: 1, host: b.example, port: 5001 }\n",
    );
    const r = await runNetsort(["config", config, "--json"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const doc = JSON.parse(r.stdout);
    expect(doc.path).toBe(config);
    expect(doc.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    // Two peers split the 48-bit prefixes in halves (independent arithmetic).
    expect(doc.peers).toEqual([
      { serverId: 0, host: "a.example", port: 5000, firstPrefix: "000000000000", lastPrefix: "7fffffffffff" },
      { serverId: 1, host: "b.example", port: 5001, firstPrefix: "800000000000", lastPrefix: "ffffffffffff" },
    ]);
    const both = await runNetsort(["config", config, "--json", "--lines"]);
    expect(both).toEqual({
      code: 2,
      stdout: "",
      stderr: "error: config: --lines and --json exclude each other\n",
    });
  });
});

describe("errors are one line on stderr", () => {
  const goodConfig = () => file("good.yaml", "servers:\n  - { serverId: 0, host: 127.0.0.1, port: 5999 }\n");
  /** [arguments, the start of the message after "error: "] */
  const cases: Array<[() => string[], string]> = [
    [() => ["gen", join(dir, "g.dat")], "gen: missing argument <size>"],
    [
      () => ["gen", join(dir, "g.dat"), "1kb", "--kind", "zipf"],
      'gen: --kind: must be one of uniform, skew, dups, got "zipf"',
    ],
    [() => ["gen", join(dir, "g.dat"), "lots"], 'gen: size: cannot read size "lots"'],
    [() => ["show", join(dir, "missing.dat")], `show: cannot read ${join(dir, "missing.dat")}: ENOENT`],
    [() => ["show", join(dir, "x"), "--limit", "-1"], "show: --limit: must be between 0 and"],
    [() => ["check"], "check: missing argument <files...>"],
    [() => ["check", join(dir, "missing.dat")], ""],
    [() => ["config", join(dir, "missing.yaml")], `config ${join(dir, "missing.yaml")}: cannot read`],
    [() => ["sort", "0", "in", "out"], "sort: missing argument <configFile>"],
    [() => ["7", "in", "out", goodConfig()], `config ${join(dir, "good.yaml")}: serverId 7 is not listed`],
    [
      () => ["0", "in", "out", goodConfig(), "--partition", "range"],
      'sort: --partition: must be one of bits, sample, got "range"',
    ],
    [() => ["0", "in", "out", goodConfig(), "--memory", "1kb"], "sort: --memory: must be between"],
    [
      () => ["0", "in", "out", goodConfig(), "--retry-ms", "soon"],
      'sort: --retry-ms: must be an integer, got "soon"',
    ],
    [() => ["demo", "--peers", "0"], "demo: --peers: must be between 1 and 64, got 0"],
    [() => ["demo", "--bogus"], "demo: unknown option --bogus"],
    [() => ["bench", "--runs", "0"], "bench: --runs: 0 measures nothing without --startup"],
    [() => ["bench", "--kind"], "bench: --kind: needs a value"],
  ];
  for (const [args, start] of cases) {
    test(`${args().join(" ")}`, async () => {
      const r = await runNetsort(args());
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(oneErrorLine);
      expect(r.stderr.startsWith(`error: ${start}`)).toBe(true);
    });
  }

  test("--verbose adds the stack trace after the one line", async () => {
    const missing = join(dir, "missing.yaml");
    const r = await runNetsort(["config", missing, "--verbose"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.split("\n");
    expect(lines[0]).toMatch(
      new RegExp(`^error: UsageError: config ${missing}: cannot read|^error: config ${missing}: cannot read`),
    );
    expect(lines.slice(1).some((l) => /^\s+at /.test(l))).toBe(true);
  });
});
