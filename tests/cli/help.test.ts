/**
 * Help as users see it: every command's `--help` walked through a real process,
 * checked against the command's own argument table, so a flag cannot be parsed
 * without showing in the help (or the other way round).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ArgTable } from "../../src/cli/args.ts";
import { commandNames, commandSummaries, loadCommand } from "../../src/cli/main.ts";
import { peerFlags } from "../../src/cli/peer-flags.ts";

const MAIN = join(import.meta.dir, "../../src/cli/main.ts");
/** One CLI run must finish within this long. */
const runTimeoutMs = 20_000;

function netsort(args: string[]) {
  const r = Bun.spawnSync([process.execPath, MAIN, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: runTimeoutMs,
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Layout rules every help text keeps. */
function expectTidy(text: string): void {
  const lines = text.split("\n");
  expect(lines.filter((l) => /\s$/.test(l))).toEqual([]); // no trailing spaces
  expect(text).not.toContain("\t");
  expect(text).not.toContain("\u001b"); // no colour codes, even on a terminal
  expect(text.endsWith("\n")).toBe(true);
  expect(text.endsWith("\n\n")).toBe(false);
}

/** The usage line's words for the positionals: <required>, [optional], <many...>. */
function expectedPositionals(args: ArgTable): string[] {
  return args.positionals.map((p) => {
    const name = p.variadic ? `${p.name}...` : p.name;
    return p.required === false ? `[${name}]` : `<${name}>`;
  });
}

/** Commands that print data or a report: each takes --json. The others refuse it. */
const jsonCommands = ["sort", "check", "demo", "bench", "config"];
/** gen and secret write a file and show prints records: no summary to put in JSON. */
const noJsonCommands = ["gen", "show", "secret"];
/** The C tools' clones keep the C tools' options. */
const cToolCommands = ["gensort", "valsort"];

describe("netsort <command> --help", () => {
  test("the command list is complete and sorted into the three kinds above", () => {
    expect([...commandNames].sort()).toEqual([...jsonCommands, ...noJsonCommands, ...cToolCommands].sort());
  });

  for (const name of commandNames) {
    test(`${name}: tidy, matches its table, same as \`netsort help ${name}\``, async () => {
      const command = await loadCommand(name);
      if (command === null) throw new Error(`no command ${name}`);
      const r = netsort([name, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expectTidy(r.stdout);
      const lines = r.stdout.split("\n");
      const summary = commandSummaries().find(([n]) => n === name)?.[1];
      expect(summary).toBe(command.meta.description);
      expect(lines[0]).toBe(`netsort ${name}: ${command.meta.description}`);
      const usage = lines.find((l) => l.startsWith("Usage: "));
      expect(usage).toBe(
        ["Usage: netsort", name, ...expectedPositionals(command.table), "[flags]"].join(" "),
      );
      // Every positional and every flag of the table is described, with its placeholder.
      for (const p of expectedPositionals(command.table)) {
        expect(lines.some((l) => l.startsWith(`  ${p}  `))).toBe(true);
      }
      for (const [flag, spec] of Object.entries(command.table.flags)) {
        const value = spec.type === "string" ? ` <${spec.valueHint}>` : "";
        const short = spec.short === undefined ? "" : `-${spec.short}, `;
        expect({ flag, found: lines.some((l) => l.startsWith(`  ${short}--${flag}${value}`)) }).toEqual({
          flag,
          found: true,
        });
        if (spec.type === "string" && spec.default !== undefined) {
          const line = lines.find((l) => l.startsWith(`  ${short}--${flag}`)) ?? "";
          expect(line).toContain(`default ${spec.default}`);
        }
      }
      expect(lines.some((l) => l.startsWith("  -h, --help  "))).toBe(true);
      expect(netsort(["help", name])).toEqual(r);
    });
  }

  test("--rounds is in the help of sort, demo and bench, and the notes of demo and bench name every flag they pass on", () => {
    for (const name of ["sort", "demo", "bench"]) {
      const help = netsort([name, "--help"]).stdout;
      expect({ name, line: help.split("\n").find((l) => l.startsWith("  --rounds <n>  ")) }).toEqual({
        name,
        line: expect.stringContaining("Key-range rounds: read the input n times"),
      });
      if (name === "sort") continue;
      // The paragraph before "Flags:" says which flags go on to every peer.
      const notes = help.slice(0, help.indexOf("\nFlags:")).replace(/\s+/g, " ");
      for (const flag of Object.keys(peerFlags)) {
        expect({ name, flag, named: notes.includes(`--${flag}`) }).toEqual({ name, flag, named: true });
      }
      expect(notes).toContain("passed on to every peer");
    }
  });

  test("--json: accepted by every command that reports, refused by the others with one line", async () => {
    for (const name of jsonCommands) {
      const command = await loadCommand(name);
      expect({ name, json: command?.table.flags.json?.type }).toEqual({ name, json: "boolean" });
    }
    const refused = netsort(["gen", "/nonexistent-dir/x", "1kb", "--json"]);
    expect(refused).toEqual({ code: 2, stdout: "", stderr: "error: gen: unknown option --json\n" });
    const show = netsort(["show", "/nonexistent", "--json"]);
    expect(show).toEqual({ code: 2, stdout: "", stderr: "error: show: unknown option --json\n" });
  });
});

describe("netsort with no command", () => {
  test("bare `netsort` is a usage error: the help on stderr, nothing on stdout, exit 2", () => {
    const r = netsort([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expectTidy(r.stderr);
    expect(r.stderr).toContain("Usage: netsort <serverId> <inputFile> <outputFile> <configFile> [flags]");
  });

  test("`netsort --help`, `-h` and `help` print the same help on stdout with exit 0, naming every command", () => {
    const r = netsort(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expectTidy(r.stdout);
    for (const [name, summary] of commandSummaries()) {
      expect(r.stdout).toMatch(new RegExp(`^  ${name} +${summary.replace(/[.()]/g, "\\$&")}$`, "m"));
    }
    expect(netsort(["-h"])).toEqual(r);
    expect(netsort(["help"])).toEqual(r);
    expect(netsort([])).toEqual({ code: 2, stdout: "", stderr: r.stdout });
  });

  test("an unknown command or help topic is one error line, exit 2", () => {
    expect(netsort(["bogus"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'error: netsort: unknown command "bogus" (see netsort --help)\n',
    });
    expect(netsort(["help", "bogus"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'error: help: no command "bogus" (see netsort --help)\n',
    });
  });
});
