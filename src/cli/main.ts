#!/usr/bin/env bun
/**
 * Entry point: finds the command, prints help or the version, and turns every
 * failure into one line on stderr ("error: <what>: <why>") and an exit code
 * (0 ok, 1 run-time failure, 2 bad usage/input).
 *
 * The course's form `netsort <serverId> <in> <out> <config>` has no command
 * name: a numeric first argument is routed to `sort`.
 */
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError } from "../errors.ts";
import type { Command } from "./command.ts";
import { mainHelp } from "./help.ts";
import { packageVersion, versionLine } from "./version.ts";

// Commands are loaded only when one runs: `--version` and `--help` stay fast
// (startup is mostly module loading). The summaries are here for the same
// reason; tests/cli/help.test.ts checks they match each command's own.
const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  sort: {
    summary: "Run one peer of a distributed sort (also: netsort <serverId> ...)",
    load: () => import("./sort.ts").then((m) => m.default),
  },
  gen: {
    summary: "Generate random 100-byte records (deterministic per seed)",
    load: () => import("./gen.ts").then((m) => m.default),
  },
  show: {
    summary: "Print records one per line: key in hex, a tab, then the value",
    load: () => import("./show.ts").then((m) => m.default),
  },
  check: {
    summary: "Check that files are sorted, in order, and hold exactly the input records",
    load: () => import("./check.ts").then((m) => m.default),
  },
  demo: {
    summary: "Sort generated data with several local peers and verify the result",
    load: () => import("./demo.ts").then((m) => m.default),
  },
  bench: {
    summary: "Measure the sort with local peers: per-phase timings, MB/s, peak memory",
    load: () => import("./bench.ts").then((m) => m.default),
  },
  gensort: {
    summary: "Sort Benchmark gensort 1.5, byte-identical output",
    load: () => import("./gensort.ts").then((m) => m.default),
  },
  valsort: {
    summary: "Sort Benchmark valsort 1.5, same messages and exit codes",
    load: () => import("./valsort.ts").then((m) => m.default),
  },
  config: {
    summary: "Validate a cluster config and list its peers",
    load: () => import("./config.ts").then((m) => m.default),
  },
  secret: {
    summary: "Write a fresh random shared secret to a new file (mode 0600)",
    load: () => import("./secret.ts").then((m) => m.default),
  },
};

export const commandNames: readonly string[] = Object.keys(commands);

/** The command list, as `netsort --help` shows it. */
export function commandSummaries(): Array<[string, string]> {
  return Object.entries(commands).map(([name, c]) => [name, c.summary]);
}

/** Load a command by name (tests walk every command's table and help). */
export async function loadCommand(name: string): Promise<Command | null> {
  return Object.hasOwn(commands, name) ? commands[name].load() : null;
}

const topHelp = () => mainHelp(commandSummaries(), packageVersion);

/** One line on stderr; --verbose (already applied to the logger) adds the stack. */
async function report(error: unknown): Promise<number> {
  const { log } = await import("../log.ts");
  log.error(error instanceof Error ? error : String(error));
  return error instanceof NetsortError ? error.exitCode : EXIT_RUNTIME;
}

/** Run the CLI with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    // Bare `netsort` is a usage error: the help goes where errors go.
    console.error(topHelp());
    return EXIT_USAGE;
  }
  if (first === "--help" || first === "-h" || (first === "help" && argv.length === 1)) {
    console.log(topHelp());
    return 0;
  }
  if (first === "--version" || first === "-V") {
    console.log(versionLine());
    return 0;
  }
  try {
    const { commandHelp } = await import("./help.ts");
    const { wantsHelp } = await import("./args.ts");
    if (first === "help") {
      const command = await loadCommand(argv[1]);
      if (command === null || argv.length > 2) {
        return report(
          new NetsortError(`help: no command "${argv.slice(1).join(" ")}" (see netsort --help)`, 2),
        );
      }
      console.log(commandHelp(command));
      return 0;
    }
    const rawArgs = /^\d+$/.test(first) ? ["sort", ...argv] : argv;
    const command = await loadCommand(rawArgs[0]);
    if (command === null) {
      return report(new NetsortError(`netsort: unknown command "${rawArgs[0]}" (see netsort --help)`, 2));
    }
    const rest = rawArgs.slice(1);
    if (wantsHelp(rest)) {
      console.log(commandHelp(command));
      return 0;
    }
    return await command.invoke(rest);
  } catch (error) {
    return report(error);
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
