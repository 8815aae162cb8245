#!/usr/bin/env bun
/**
 * Entry point: wires the commands together with citty and turns every failure
 * into one line and an exit code (0 ok, 1 run-time failure, 2 bad usage/input).
 *
 * The course's form `netsort <serverId> <in> <out> <config>` has no command name;
 * citty would call "0" an unknown command, so a numeric first argument is routed
 * to `sort` here.
 */
import type { CommandDef } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { EXIT_RUNTIME, EXIT_USAGE, errorMessage, NetsortError } from "../errors.ts";

// citty and consola are loaded only when a command runs: `--version` and `--help`
// stay fast (startup is mostly module loading).

// biome-ignore lint/suspicious/noExplicitAny: commands have differing arg shapes
type AnyCommand = CommandDef<any>;

const commands: Record<string, () => Promise<AnyCommand>> = {
  sort: () => import("./sort.ts").then((m) => m.default),
  gen: () => import("./gen.ts").then((m) => m.default),
  show: () => import("./show.ts").then((m) => m.default),
  check: () => import("./check.ts").then((m) => m.default),
  demo: () => import("./demo.ts").then((m) => m.default),
  bench: () => import("./bench.ts").then((m) => m.default),
  gensort: () => import("./gensort.ts").then((m) => m.default),
  valsort: () => import("./valsort.ts").then((m) => m.default),
  config: () => import("./config.ts").then((m) => m.default),
};

const commandSummaries: Record<string, string> = {
  sort: "Run one peer of a distributed sort (also: netsort <serverId> <in> <out> <config>)",
  gen: "Generate random 100-byte records",
  show: "Print records one per line: key in hex, then the value",
  check: "Check that files are sorted, in order, and hold exactly the input records",
  demo: "Sort generated data with several local peers and verify the result",
  bench: "Measure the sort with local peers: per-phase timings, MB/s, peak memory",
  gensort: "Sort Benchmark gensort 1.5, byte-identical output",
  valsort: "Sort Benchmark valsort 1.5, same messages and exit codes",
  config: "Validate a cluster config and list its peers",
};

const mainMeta = {
  name: "netsort",
  version: pkg.version,
  description: "Distributed sort of 100-byte records over a TCP mesh",
};

function mainUsage(): string {
  const width = Math.max(...Object.keys(commandSummaries).map((c) => c.length));
  const lines = Object.entries(commandSummaries).map(([c, d]) => `  ${c.padEnd(width)}  ${d}`);
  return [
    `${mainMeta.description} (netsort v${mainMeta.version})`,
    "",
    "USAGE",
    "  netsort <serverId> <inputFile> <outputFile> <configFile> [flags]",
    "  netsort <command> [args] [flags]",
    "",
    "COMMANDS",
    ...lines,
    "",
    "Use `netsort <command> --help` for a command's arguments and flags.",
    "Exit codes: 0 success, 1 run-time failure, 2 bad usage, config or input.",
  ].join("\n");
}

/** Run the CLI with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let rawArgs = argv;
  const first = rawArgs[0];
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(mainUsage());
    return first === undefined ? EXIT_USAGE : 0;
  }
  if (first === "--version" || first === "-V") {
    console.log(mainMeta.version);
    return 0;
  }
  const { isVerbose, log, setLogLevel } = await import("../log.ts");
  if (rawArgs.includes("--verbose") || rawArgs.includes("-v")) setLogLevel("verbose");
  else if (rawArgs.includes("--quiet") || rawArgs.includes("-q")) setLogLevel("quiet");
  const { renderUsage, runCommand } = await import("citty");
  if (/^\d+$/.test(first)) rawArgs = ["sort", ...rawArgs];
  const name = rawArgs[0];
  const load = commands[name];
  if (load === undefined) {
    log.error(`unknown command "${name}" (see netsort --help)`);
    return EXIT_USAGE;
  }
  const command = await load();
  const rest = rawArgs.slice(1);
  if (rest.includes("--help") || rest.includes("-h")) {
    const usage = await renderUsage(command, { meta: { name: "netsort" } });
    // citty colours its usage text even into a pipe or a file: plain text there.
    const plain = !process.stdout.isTTY || process.env.NO_COLOR !== undefined;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences
    console.log(plain ? usage.replace(/\u001b\[[0-9;]*m/g, "") : usage);
    return 0;
  }
  try {
    const { result } = await runCommand(command, { rawArgs: rest });
    return typeof result === "number" ? result : 0;
  } catch (error) {
    // citty's own argument errors (missing positional, bad enum) are usage errors.
    const cittyUsage = error instanceof Error && error.name === "CLIError";
    const code = error instanceof NetsortError ? error.exitCode : cittyUsage ? EXIT_USAGE : EXIT_RUNTIME;
    if (isVerbose() && error instanceof Error) log.error(error);
    else log.error(errorMessage(error));
    if (cittyUsage) log.info(`see netsort ${name} --help`);
    return code;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
