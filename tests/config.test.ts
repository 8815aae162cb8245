import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fingerprintOf, loadConfig, serverById, validateConfig } from "../src/config.ts";
import { EXIT_USAGE, UsageError } from "../src/errors.ts";
import { maxConfigBytes } from "../src/limits.ts";
import { MAX_PEERS } from "../src/record.ts";

let dir: string;
let fileCount = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-config-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function configFile(text: string): string {
  fileCount++;
  const file = path.join(dir, `c${fileCount}.yaml`);
  fs.writeFileSync(file, text);
  return file;
}

/** Block-style YAML for a list of [serverId, host, port] entries. */
function blockYaml(entries: Array<[unknown, unknown, unknown]>): string {
  const lines = ["servers:"];
  for (const [id, host, port] of entries) {
    lines.push(`  - serverId: ${id}`, `    host: ${host}`, `    port: ${port}`);
  }
  return `${lines.join("\n")}\n`;
}

/** `n` distinct loopback peers. */
function peers(n: number, basePort = 9000): Array<[number, string, number]> {
  return Array.from({ length: n }, (_, i) => [i, "127.0.0.1", basePort + i] as [number, string, number]);
}

/** Load a config that must be rejected; checks the error's kind, exit code and one-line shape. */
function rejected(text: string): string {
  const file = configFile(text);
  let caught: unknown;
  try {
    loadConfig(file);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(UsageError);
  const error = caught as UsageError;
  expect(error.exitCode).toBe(EXIT_USAGE);
  expect(error.message).not.toContain("\n");
  expect(error.message).toContain(file);
  return error.message;
}

describe("loadConfig: file and document errors", () => {
  test("missing file names the path", () => {
    const missing = path.join(dir, "no-such.yaml");
    expect(() => loadConfig(missing)).toThrow(UsageError);
    try {
      loadConfig(missing);
    } catch (error) {
      expect((error as UsageError).exitCode).toBe(EXIT_USAGE);
      expect((error as Error).message).toContain(missing);
      expect((error as Error).message).toContain("ENOENT");
    }
  });

  test("a directory is refused", () => {
    const sub = fs.mkdtempSync(path.join(dir, "d"));
    try {
      loadConfig(sub);
      throw new Error("expected a throw");
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).exitCode).toBe(EXIT_USAGE);
      expect((error as Error).message).toContain(sub);
      expect((error as Error).message).toContain("directory");
    }
  });

  test("a file larger than maxConfigBytes is refused before parsing", () => {
    const message = rejected(`# ${"x".repeat(maxConfigBytes)}\n${blockYaml(peers(1))}`);
    expect(message).toContain("too large");
  });

  test("invalid YAML", () => {
    expect(rejected("servers: [\n  {serverId: 0")).toContain("not valid YAML");
    expect(rejected("servers:\n\t- serverId: 0\n")).toContain("not valid YAML");
  });

  test("no servers key, empty file, scalar document, multi-document", () => {
    expect(rejected("peers: []\n")).toContain('missing "servers:"');
    expect(rejected("")).toContain('missing "servers:"');
    expect(rejected("42\n")).toContain('missing "servers:"');
    expect(rejected("- serverId: 0\n")).toContain('missing "servers:"');
    expect(rejected(`---\n${blockYaml(peers(1))}---\na: 1\n`)).toContain('missing "servers:"');
  });

  test("servers is not a list", () => {
    for (const body of ["servers: 5", "servers: hello", "servers: {serverId: 0}", "servers:"]) {
      expect(rejected(`${body}\n`)).toContain('"servers" must be a list');
    }
  });

  test("servers is an empty list", () => {
    expect(rejected("servers: []\n")).toContain('"servers" is empty');
  });

  test("more than MAX_PEERS servers", () => {
    const message = rejected(blockYaml(peers(MAX_PEERS + 1, 1)));
    expect(message).toContain(String(MAX_PEERS + 1));
    expect(message).toContain(String(MAX_PEERS));
  });
});

describe("loadConfig: entry rules name the entry and the field", () => {
  test("an entry that is not a mapping", () => {
    expect(rejected("servers: [5]\n")).toContain("servers[0]: must be a mapping");
    expect(rejected(`${blockYaml(peers(1))}  - just-a-string\n`)).toContain("servers[1]: must be a mapping");
    expect(rejected("servers:\n  - [0, 127.0.0.1, 9000]\n")).toContain("servers[0]: must be a mapping");
  });

  test("an unknown field", () => {
    const message = rejected(`${blockYaml(peers(2))}    weight: 3\n`);
    expect(message).toContain("servers[1]");
    expect(message).toContain('unknown field "weight"');
  });

  test("each missing field", () => {
    for (const field of ["serverId", "host", "port"]) {
      const entry = { serverId: 1, host: "127.0.0.1", port: 9001 } as Record<string, unknown>;
      delete entry[field];
      const message = rejected(`servers: [{serverId: 0, host: a, port: 1}, ${JSON.stringify(entry)}]\n`);
      expect(message).toContain("servers[1]");
      expect(message).toContain(`missing field "${field}"`);
    }
    // An explicit null is missing too.
    expect(rejected(blockYaml([[0, "~", 9000]]))).toContain('servers[0]: missing field "host"');
  });

  test("serverId must be an integer", () => {
    for (const bad of ["0.5", '"0"', "true", "[0]", "zero"]) {
      const message = rejected(blockYaml([[bad, "127.0.0.1", 9000]]));
      expect(message).toContain("servers[0]");
      expect(message).toContain("serverId must be an integer");
    }
  });

  test("ids must be exactly 0..N-1", () => {
    let message = rejected(blockYaml([peers(2)[0], [2, "127.0.0.1", 9002]]));
    expect(message).toContain("servers[1]");
    expect(message).toContain("serverId 2 is outside 0..1");
    message = rejected(blockYaml([[-1, "127.0.0.1", 9000]]));
    expect(message).toContain("serverId -1 is outside 0..0");
    message = rejected(blockYaml([[1, "127.0.0.1", 9000]]));
    expect(message).toContain("servers[0]");
  });

  test("a duplicate id names both the entry and the id", () => {
    const message = rejected(blockYaml([peers(3)[0], peers(3)[1], [0, "127.0.0.1", 9002]]));
    expect(message).toContain("servers[2]");
    expect(message).toContain("serverId 0 is listed twice");
  });

  test("host must be a non-empty string", () => {
    for (const bad of ['""', '"   "', "123", "[a]"]) {
      const message = rejected(blockYaml([peers(2)[0], [1, bad, 9001]]));
      expect(message).toContain("servers[1]");
      expect(message).toContain("host must be a non-empty string");
    }
  });

  test("bad ports", () => {
    for (const [bad, expected] of [
      ["0", "port 0 is outside 1-65535"],
      ["65536", "port 65536 is outside 1-65535"],
      ['"65536"', "port 65536 is outside 1-65535"],
      ['"0"', "port 0 is outside 1-65535"],
      ["abc", "port must be an integer"],
      ['"abc"', "port must be an integer"],
      ["1.5", "port must be an integer"],
      ['"1.5"', "port must be an integer"],
      ["-1", "port must be an integer"],
      ['""', "port must be an integer"],
      ["true", "port must be an integer"],
      ["[80]", "port must be an integer"],
    ] as const) {
      const message = rejected(blockYaml([peers(2)[0], [1, "127.0.0.1", bad]]));
      expect(message).toContain("servers[1]");
      expect(message).toContain(expected);
    }
  });

  test("two peers on the same host:port (host compared case-insensitively)", () => {
    let message = rejected(blockYaml([peers(2)[0], [1, "127.0.0.1", 9000]]));
    expect(message).toContain("servers[1]");
    expect(message).toContain("serverId 1 and serverId 0 are both on 127.0.0.1:9000");
    message = rejected(
      blockYaml([
        [0, "LocalHost", 9000],
        [1, "localhost", '"9000"'],
      ]),
    );
    expect(message).toContain("are both on");
  });
});

describe("loadConfig: valid configs", () => {
  test("port as a number and as a quoted string are the same config", () => {
    const a = loadConfig(configFile(blockYaml([[0, "127.0.0.1", 9000]])));
    const b = loadConfig(configFile(blockYaml([[0, "127.0.0.1", '"9000"']])));
    const c = loadConfig(configFile(blockYaml([[0, "127.0.0.1", '" 9000 "']])));
    for (const cfg of [a, b, c])
      expect(cfg.servers).toEqual([{ serverId: 0, host: "127.0.0.1", port: 9000 }]);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(c.fingerprint).toBe(a.fingerprint);
  });

  test("port bounds 1 and 65535 are valid", () => {
    const cfg = loadConfig(
      configFile(
        blockYaml([
          [0, "127.0.0.1", 1],
          [1, "127.0.0.1", 65535],
        ]),
      ),
    );
    expect(cfg.servers.map((s) => s.port)).toEqual([1, 65535]);
  });

  for (const n of [1, 2, 3, 64, 100]) {
    test(`N = ${n}, listed in shuffled order, comes back indexed by id`, () => {
      const entries = peers(n);
      // Deterministic shuffle: reverse and rotate, so no entry sits at its own index when n > 1.
      const shuffled = entries.slice().reverse();
      shuffled.push(shuffled.shift()!);
      const file = configFile(blockYaml(shuffled));
      const cfg = loadConfig(file);
      expect(cfg.path).toBe(file);
      expect(cfg.servers.length).toBe(n);
      cfg.servers.forEach((s, i) => {
        expect(s).toEqual({ serverId: i, host: "127.0.0.1", port: 9000 + i });
      });
      expect(cfg.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(fingerprintOf(cfg.servers)).toBe(cfg.fingerprint);
      // Order of listing does not matter.
      expect(loadConfig(configFile(blockYaml(entries))).fingerprint).toBe(cfg.fingerprint);
    });
  }

  test("flow style, block style, key order, comments and host case give the same fingerprint", () => {
    const block = loadConfig(
      configFile(
        "# cluster\nservers:\n  - serverId: 0\n    host: node-a\n    port: 7000\n  - serverId: 1\n    host: node-b\n    port: 7001 # second\n",
      ),
    );
    const flow = loadConfig(
      configFile(
        '{servers: [{port: "7001", host: NODE-B, serverId: 1}, {host: node-a, serverId: 0, port: 7000}]}',
      ),
    );
    const json = loadConfig(
      configFile(
        JSON.stringify({
          servers: [
            { serverId: 0, host: " node-a ", port: 7000 },
            { serverId: 1, host: "node-b", port: 7001 },
          ],
        }),
      ),
    );
    expect(flow.fingerprint).toBe(block.fingerprint);
    expect(json.fingerprint).toBe(block.fingerprint);
  });

  test("a changed port, host, id assignment or peer count changes the fingerprint", () => {
    const base = loadConfig(configFile(blockYaml(peers(3)))).fingerprint;
    const variants = [
      blockYaml([peers(3)[0], peers(3)[1], [2, "127.0.0.1", 9003]]),
      blockYaml([peers(3)[0], peers(3)[1], [2, "127.0.0.2", 9002]]),
      blockYaml([
        [0, "127.0.0.1", 9001],
        [1, "127.0.0.1", 9000],
        [2, "127.0.0.1", 9002],
      ]),
      blockYaml(peers(2)),
      blockYaml(peers(4)),
    ];
    const seen = new Set([base]);
    for (const text of variants) seen.add(loadConfig(configFile(text)).fingerprint);
    expect(seen.size).toBe(variants.length + 1);
  });

  test("fingerprintOf depends only on content, not key order or host case", () => {
    const servers = peers(2).map(([serverId, host, port]) => ({ serverId, host, port }));
    const fp = fingerprintOf(servers);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    // Independent check that it is a function of content only (not object identity / key order).
    const reordered = servers.map((s) => ({
      port: s.port,
      host: s.host.toUpperCase(),
      serverId: s.serverId,
    }));
    expect(fingerprintOf(reordered)).toBe(fp);
    expect(fingerprintOf(servers.slice(0, 1))).not.toBe(fp);
  });
});

describe("validateConfig and serverById", () => {
  test("validateConfig rejects non-mapping documents", () => {
    for (const doc of [null, undefined, 5, "servers", [], [{ servers: [] }]]) {
      expect(() => validateConfig("x.yaml", doc)).toThrow('config x.yaml: missing "servers:" list');
    }
  });

  test("serverById returns the entry and refuses ids not in the config", () => {
    const file = configFile(blockYaml(peers(3)));
    const cfg = loadConfig(file);
    for (let id = 0; id < 3; id++)
      expect(serverById(cfg, id)).toEqual({ serverId: id, host: "127.0.0.1", port: 9000 + id });
    for (const bad of [3, 4, -1, 1.5, 1024]) {
      let caught: unknown;
      try {
        serverById(cfg, bad);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(UsageError);
      expect((caught as UsageError).exitCode).toBe(EXIT_USAGE);
      expect((caught as Error).message).toContain(`serverId ${bad}`);
      expect((caught as Error).message).toContain(file);
      expect((caught as Error).message).toContain("0..2");
    }
  });
});
