import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runNetsort } from "../helpers.ts";

let dir = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-config-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const run = (args: string[]) => runNetsort(["config", ...args]);

/** Independent reference for the first 48-bit prefix peer i owns: ceil(i * 2^48 / n). */
function firstPrefixHex(i: number, n: number): string {
  const start = ((BigInt(i) << 48n) + BigInt(n) - 1n) / BigInt(n);
  return start.toString(16).padStart(12, "0");
}

const servers = [
  { serverId: 2, host: "node-c.example", port: 7002 },
  { serverId: 0, host: "127.0.0.1", port: 7000 },
  { serverId: 1, host: "localhost", port: "7001" },
];
const yaml = `servers:\n${servers.map((s) => `  - {serverId: ${s.serverId}, host: ${s.host}, port: ${JSON.stringify(s.port)}}`).join("\n")}\n`;

describe("netsort config", () => {
  test("--lines prints exactly one `<id> <host> <port>` line per peer, in id order", async () => {
    const path = writeConfig("good.yaml", yaml);
    const { code, stdout, stderr } = await run([path, "--lines"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const expected = [...servers]
      .sort((a, b) => a.serverId - b.serverId)
      .map((s) => `${s.serverId} ${s.host} ${Number(s.port)}`);
    expect(stdout).toBe(`${expected.join("\n")}\n`);
  }, 10_000);

  test("the table names every peer, its endpoint, its key range and the fingerprint", async () => {
    const path = writeConfig("good-table.yaml", yaml);
    const { code, stdout } = await run([path]);
    expect(code).toBe(0);
    const n = servers.length;
    for (const s of servers) {
      const first = firstPrefixHex(s.serverId, n);
      const last = (BigInt(`0x${firstPrefixHex(s.serverId + 1, n)}`) - 1n).toString(16).padStart(12, "0");
      const row = stdout.split("\n").find((line) => line.startsWith(`${s.serverId} `));
      expect(row).toBeDefined();
      expect(row).toContain(`${s.host}:${Number(s.port)}`);
      expect(row).toContain(`${first}..${last}`);
    }
    expect(stdout).toMatch(/fingerprint [0-9a-f]{64}\n/);
  }, 10_000);

  test("the fingerprint ignores key order and YAML style but changes with the server list", async () => {
    const a = writeConfig("fp-a.yaml", yaml);
    const b = writeConfig(
      "fp-b.yaml",
      `servers:\n${servers.map((s) => `  - port: ${Number(s.port)}\n    host: "${s.host}"\n    serverId: ${s.serverId}`).join("\n")}\n`,
    );
    const c = writeConfig("fp-c.yaml", yaml.replace("7002", "7003"));
    const fp = async (path: string) => /fingerprint ([0-9a-f]{64})/.exec((await run([path])).stdout)?.[1];
    const [fa, fb, fc] = await Promise.all([fp(a), fp(b), fp(c)]);
    expect(fa).toBeDefined();
    expect(fb).toBe(fa);
    expect(fc).not.toBe(fa);
  }, 10_000);

  const bad: [string, string, string][] = [
    ["missing servers", "peers: []\n", 'missing "servers:"'],
    [
      "duplicate id",
      "servers:\n  - {serverId: 0, host: a, port: 1}\n  - {serverId: 0, host: b, port: 2}\n",
      "listed twice",
    ],
    ["port out of range", "servers:\n  - {serverId: 0, host: a, port: 70000}\n", "outside 1-65535"],
    ["not YAML", "servers: [\n", "not valid YAML"],
  ];
  for (const [name, text, message] of bad) {
    test(`a bad config (${name}) exits 2 with one line naming it, and prints nothing on stdout`, async () => {
      const path = writeConfig(`bad-${name.replace(/\W+/g, "-")}.yaml`, text);
      for (const args of [[path], [path, "--lines"]]) {
        const { code, stdout, stderr } = await run(args);
        expect(code).toBe(2);
        expect(stdout).toBe("");
        expect(stderr).toContain(message);
        expect(stderr).toContain(path);
      }
    }, 10_000);
  }

  test("a missing file and an unknown flag exit 2", async () => {
    const missing = await run([join(dir, "nope.yaml"), "--lines"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("cannot read");
    const path = writeConfig("good-flag.yaml", yaml);
    const flag = await run([path, "--line"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--line");
  }, 10_000);

  test("--lines refuses a host with whitespace, which a line reader would split", async () => {
    const path = writeConfig("space.yaml", 'servers:\n  - {serverId: 0, host: "a b", port: 1}\n');
    const lines = await run([path, "--lines"]);
    expect(lines.code).toBe(2);
    expect(lines.stdout).toBe("");
    expect(lines.stderr).toContain("whitespace");
  }, 10_000);
});
