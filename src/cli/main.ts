#!/usr/bin/env bun
/**
 * Entry point. citty dispatches: `rootCommand` is a citty command whose
 * subCommands are the netsort commands (each a citty command built from its
 * argument table, src/cli/command.ts), run with citty's runCommand; `--help`
 * goes through citty's runMain with netsort's own renderer (src/cli/help.ts).
 * Every failure becomes one line on stderr ("error: <what>: <why>") and an exit
 * code (0 ok, 1 run-time failure, 2 bad usage/input). runMain is not used to
 * run commands because it exits 1 for every error and prints the usage with it.
 *
 * The course's form `netsort <serverId> <in> <out> <config>` has no command
 * name: a numeric first argument is routed to `sort`.
 */
import type { ArgsDef, CommandDef } from "citty";
import { EXIT_RUNTIME, EXIT_USAGE, NetsortError, UsageError } from "../errors.ts";
import type { NetsortCommand } from "./command.ts";
import { mainHelp } from "./help.ts";
import { packageVersion, versionLine } from "./version.ts";

// Commands, and citty with them, are loaded only when one runs: `--version`
// and `--help` stay fast (startup is mostly module loading; citty and the
// node:util it loads cost about 8 ms). The summaries are here for the same
// reason; tests/cli/help.test.ts checks they match each command's own.
const commands: Record<string, { summary: string; load: () => Promise<NetsortCommand> }> = {
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
export async function loadCommand(name: string | undefined): Promise<NetsortCommand | null> {
  return name !== undefined && Object.hasOwn(commands, name) ? commands[name].load() : null;
}

const topHelp = () => mainHelp(commandSummaries(), packageVersion);

function unknownCommand(name: string | undefined): UsageError {
  return new UsageError(`netsort: unknown command "${name ?? ""}" (see netsort --help)`);
}

/** How a run through the root command ended. */
export interface Outcome {
  exitCode: number;
}

/**
 * The top-level citty command. Its subCommands load each command lazily and
 * keep its exit code in `outcome` (citty drops what a subcommand's run
 * returns). Its setup runs before citty parses the command's arguments: it
 * refuses an unknown command and checks the arguments with the command's own
 * parser, so a usage error is netsort's one line, never citty's message.
 */
export function rootCommand(outcome: Outcome): CommandDef<ArgsDef> {
  const subCommands: Record<string, () => Promise<CommandDef<ArgsDef>>> = {};
  for (const [name, entry] of Object.entries(commands)) {
    subCommands[name] = async () => {
      const command = await entry.load();
      const run: NetsortCommand["run"] = async (context) => {
        outcome.exitCode = await command.run(context);
        return outcome.exitCode;
      };
      return { ...command, run };
    };
  }
  return {
    meta: { name: "netsort", version: packageVersion, description: "distributed sort of 100-byte records" },
    subCommands,
    async setup({ rawArgs }) {
      const command = await loadCommand(rawArgs[0]);
      if (command === null) throw unknownCommand(rawArgs[0]);
      command.parseArgs(rawArgs.slice(1));
    },
  };
}

/** citty's usage renderer (runMain's showUsage): netsort's plain help, never citty's coloured one. */
async function showUsage<T extends ArgsDef = ArgsDef>(command: CommandDef<T>): Promise<void> {
  const { isNetsortCommand } = await import("./command.ts");
  const { commandHelp } = await import("./help.ts");
  const def = command as CommandDef<ArgsDef>;
  console.log(isNetsortCommand(def) ? commandHelp(def) : topHelp());
}

/** One line on stderr; --verbose (already applied to the logger) adds the stack. */
async function report(error: unknown): Promise<number> {
  const { log } = await import("../log.ts");
  log.error(error instanceof Error ? error : String(error));
  return error instanceof NetsortError ? error.exitCode : EXIT_RUNTIME;
}

/** The arguments citty sees: `<command> ...`. */
function commandLine(argv: string[]): string[] {
  const [first, ...rest] = argv;
  if (/^\d+$/.test(first)) return ["sort", ...argv];
  if (first !== "help") return argv;
  if (rest.length !== 1 || !Object.hasOwn(commands, rest[0])) {
    throw new UsageError(`help: no command "${rest.join(" ")}" (see netsort --help)`);
  }
  return [rest[0], "--help"];
}

/**
 * Run the CLI with `argv` (without the program name); resolves to the exit
 * code, except for a command's `--help`, where citty's runMain exits 0 itself.
 */
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
    const rawArgs = commandLine(argv);
    if (!Object.hasOwn(commands, rawArgs[0])) throw unknownCommand(rawArgs[0]);
    const outcome: Outcome = { exitCode: 0 };
    const root = rootCommand(outcome);
    const [{ runCommand, runMain }, { wantsHelp }] = await Promise.all([
      import("citty"),
      import("./args.ts"),
    ]);
    if (wantsHelp(rawArgs.slice(1))) {
      // citty finds the command and calls showUsage with it.
      await runMain(root, { rawArgs, showUsage });
      return 0;
    }
    await runCommand(root, { rawArgs });
    return outcome.exitCode;
  } catch (error) {
    return report(error);
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
