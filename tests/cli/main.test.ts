/**
 * The root citty command: citty's runCommand picks the netsort command from the
 * root's subCommands, the command's exit code comes back, and the root checks
 * the command's arguments against its table before citty parses them. (The CLI
 * as users run it, help and errors included, is tested in tests/cli/help.test.ts
 * and tests/cli/streams.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "citty";
import { commandNames, type Outcome, rootCommand } from "../../src/cli/main.ts";
import { UsageError } from "../../src/errors.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-main-test-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Run `netsort <rawArgs>` through citty in this process; resolves to the exit code. */
async function dispatch(rawArgs: string[]): Promise<number> {
  const outcome: Outcome = { exitCode: -1 };
  await runCommand(rootCommand(outcome), { rawArgs });
  return outcome.exitCode;
}

describe("rootCommand", () => {
  test("its subCommands are every command, loaded lazily", async () => {
    const root = rootCommand({ exitCode: -1 });
    const subCommands = root.subCommands as Record<string, () => Promise<{ meta: { name: string } }>>;
    expect(Object.keys(subCommands)).toEqual([...commandNames]);
    for (const name of commandNames) {
      expect(typeof subCommands[name]).toBe("function");
      expect((await subCommands[name]()).meta.name).toBe(name);
    }
  });

  test("citty dispatches to the command, which runs and hands back its exit code", async () => {
    const file = join(dir, "via-root.key");
    expect(await dispatch(["secret", file, "-q"])).toBe(0);
    expect(existsSync(file)).toBe(true);
  });

  test("a non-zero exit code survives citty, which drops a subcommand's result", async () => {
    // Two records with descending keys: valsort says unordered, exit 1 (-q: no text).
    const records = new Uint8Array(200);
    records[0] = 2;
    records[100] = 1;
    const file = join(dir, "unordered.dat");
    writeFileSync(file, records);
    expect(await dispatch(["valsort", "-q", file])).toBe(1);
  });

  test("unknown commands and bad arguments are netsort's one-line usage errors, not citty's", async () => {
    const cases: Array<[string[], string]> = [
      [["bogus"], 'netsort: unknown command "bogus" (see netsort --help)'],
      [["--quiet", "show", "x"], 'netsort: unknown command "--quiet" (see netsort --help)'],
      // citty alone: "Missing required positional argument: FILE".
      [["show"], "show: missing argument <file>"],
      // citty alone: "Invalid value for argument: --partition ()", coloured.
      [["sort", "0", "in", "out", "c.yaml", "--partition"], "sort: --partition: needs a value"],
      [
        ["sort", "0", "in", "out", "c.yaml", "--partition", "x"],
        'sort: --partition: must be one of bits, sample, got "x"',
      ],
      // citty alone: accepted, as retryMs.
      [["sort", "0", "in", "out", "c.yaml", "--retryMs", "5"], "sort: unknown option --retryMs"],
    ];
    for (const [rawArgs, message] of cases) {
      let caught: unknown;
      await dispatch(rawArgs).catch((error) => {
        caught = error;
      });
      expect({ rawArgs, caught: caught instanceof UsageError, message: (caught as Error)?.message }).toEqual({
        rawArgs,
        caught: true,
        message,
      });
    }
  });
});
