/**
 * Every command is a citty command built from its argument table: citty's args
 * mirror the table, citty's own parser reads them, and citty's runCommand runs
 * a command directly from raw arguments, with the table's strict checks.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ArgsDef, parseArgs as cittyParseArgs, runCommand } from "citty";
import type { ArgTable } from "../../src/cli/args.ts";
import { cittyArgs, isNetsortCommand, type NetsortCommand } from "../../src/cli/command.ts";
import { commandNames, loadCommand } from "../../src/cli/main.ts";
import { UsageError } from "../../src/errors.ts";
import { defaultRetryIntervalMs } from "../../src/limits.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-command-test-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function command(name: string): Promise<NetsortCommand> {
  const loaded = await loadCommand(name);
  if (loaded === null) throw new Error(`no command ${name}`);
  return loaded;
}

/** The C tools' clones parse their own arguments: citty gets none to check. */
const rawCommands = ["gensort", "valsort"];

/** What citty's args must say for one table, written out independently of cittyArgs. */
function expectedArgs(table: ArgTable): ArgsDef {
  const out: ArgsDef = {};
  for (const p of table.positionals) {
    out[p.name] = { type: "positional", description: p.description, required: p.required !== false };
  }
  for (const [name, f] of Object.entries(table.flags)) {
    const alias = f.short === undefined ? {} : { alias: f.short };
    if (f.type === "boolean") out[name] = { type: "boolean", description: f.description, ...alias };
    else {
      const base = { description: f.description, valueHint: f.valueHint, ...alias };
      const withDefault = f.default === undefined ? base : { ...base, default: f.default };
      out[name] =
        f.choices === undefined
          ? { type: "string", ...withDefault }
          : { type: "enum", options: [...f.choices], ...withDefault };
    }
  }
  return out;
}

describe("each command is a citty CommandDef", () => {
  for (const name of commandNames) {
    test(`${name}: meta and citty args come from its table`, async () => {
      const cmd = await command(name);
      expect(isNetsortCommand(cmd)).toBe(true);
      expect(cmd.meta.name).toBe(name);
      expect(typeof cmd.meta.description).toBe("string");
      expect(typeof cmd.run).toBe("function");
      if (rawCommands.includes(name)) expect(cmd.args).toEqual({});
      else expect(cmd.args).toEqual(expectedArgs(cmd.table));
    });
  }

  test("a plain citty command is not a netsort command", () => {
    expect(isNetsortCommand({ meta: { name: "x" }, run() {} })).toBe(false);
  });
});

describe("cittyArgs", () => {
  test("kinds, aliases, defaults, choices and required positionals", () => {
    const table = {
      positionals: [
        { name: "in", description: "input" },
        { name: "more", description: "optional", required: false },
      ],
      flags: {
        mode: { type: "string", valueHint: "m", description: "mode", choices: ["a", "b"], default: "a" },
        port: { type: "string", valueHint: "n", description: "port", short: "p" },
        force: { type: "boolean", description: "force", short: "f" },
      },
    } as const satisfies ArgTable;
    expect(cittyArgs(table)).toEqual({
      in: { type: "positional", description: "input", required: true },
      more: { type: "positional", description: "optional", required: false },
      mode: { type: "enum", description: "mode", valueHint: "m", options: ["a", "b"], default: "a" },
      port: { type: "string", description: "port", valueHint: "n", alias: "p" },
      force: { type: "boolean", description: "force", alias: "f" },
    });
  });

  test("citty's own parser reads a command's generated args", async () => {
    const sort = await command("sort");
    const raw = ["0", "in.dat", "out.dat", "c.yaml", "--partition", "sample", "-q"];
    const parsed: Record<string, unknown> = cittyParseArgs(raw, sort.args);
    expect(parsed.serverId).toBe("0");
    expect(parsed.configFile).toBe("c.yaml");
    expect(parsed.partition).toBe("sample");
    expect(parsed.quiet).toBe(true);
    expect(parsed["retry-ms"]).toBe(String(defaultRetryIntervalMs)); // the table's default
    // The choices reached citty: it refuses a value outside them by itself.
    expect(() => cittyParseArgs([...raw.slice(0, 4), "--partition", "zzz"], sort.args)).toThrow();
  });
});

describe("citty's runCommand on one command, with raw arguments", () => {
  test("runs it: typed values from the table, the exit code as citty's result", async () => {
    const secret = await command("secret");
    const file = join(dir, "s.key");
    const { result } = await runCommand(secret, { rawArgs: [file, "--quiet"] });
    expect(result).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8").trim()).toMatch(/^[0-9a-f]{64}$/);
  });

  test("the table's strict checks run inside the command: citty alone accepts unknown flags", async () => {
    const secret = await command("secret");
    const file = join(dir, "never.key");
    const seen: Record<string, unknown> = cittyParseArgs([file, "--bogus"], secret.args);
    expect(seen.bogus).toBe(true);
    const run = runCommand(secret, { rawArgs: [file, "--bogus"] });
    await expect(run).rejects.toBeInstanceOf(UsageError);
    await expect(run).rejects.toThrow("secret: unknown option --bogus");
    expect(existsSync(file)).toBe(false);
  });

  test("citty parses first: run alone, a missing positional is citty's objection", async () => {
    // src/cli/main.ts's root checks the table before citty parses (tests/cli/main.test.ts);
    // a direct runCommand skips it, which shows that citty's parser is in the path.
    const show = await command("show");
    await expect(runCommand(show, { rawArgs: [] })).rejects.toThrow("Missing required positional argument");
  });

  test("a raw command hands citty's rawArgs to its own parser", async () => {
    const gensort = await command("gensort");
    const file = join(dir, "g.dat");
    const { result } = await runCommand(gensort, { rawArgs: ["-b10", "3", file] });
    expect(result).toBe(0);
    expect(statSync(file).size).toBe(300);
    await expect(runCommand(gensort, { rawArgs: ["-x", "3", file] })).rejects.toThrow(
      'gensort: unknown option "-x"',
    );
  });
});
