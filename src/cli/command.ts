/**
 * A netsort command is a citty command (`defineCommand` from citty) built from
 * one argument table (src/cli/args.ts). From the table come citty's `args`
 * (positional/string/boolean/enum with options, default, required, description,
 * valueHint), the strict parse that gives `run` typed values, and the help
 * (src/cli/help.ts).
 *
 * citty parses the arguments too, but its parser accepts unknown flags and
 * camelCase spellings, reads a forgotten value as "", and knows no integers,
 * sizes, ranges, flags that take several values or single-dash long names. So
 * `run` reads its values from `parseArgs`, which checks the raw arguments
 * against the table; the root command (src/cli/main.ts) calls the same
 * `parseArgs` before citty parses, so a usage error is always netsort's one
 * line, never citty's message.
 *
 * gensort and valsort must parse like the C tools: they are citty commands with
 * no citty args (citty's parse then never objects), whose `parseArgs` is their
 * own C-style parser.
 */
import { type ArgDef, type ArgsDef, type CommandDef, defineCommand } from "citty";
import { setLogLevel } from "../log.ts";
import { type ArgTable, type ParsedArgs, parseCommandArgs } from "./args.ts";

/** A citty command that also carries its table, for the strict parse and the help. */
export interface NetsortCommand extends CommandDef<ArgsDef> {
  readonly meta: { readonly name: string; readonly description: string };
  readonly args: ArgsDef;
  /** The argument table: citty's args, the help and (table commands) the parse come from it. */
  readonly table: ArgTable;
  /** Lines after the usage line in `netsort <command> --help`. */
  readonly notes: readonly string[];
  /** Another spelling of the usage line, shown under the generated one. */
  readonly alsoUsage: readonly string[];
  /** Checks the arguments after the command name; throws a UsageError (exit 2). */
  parseArgs(rawArgs: readonly string[]): unknown;
  /** citty calls this with the arguments after the command name; resolves to the exit code. */
  run(context: { rawArgs: string[] }): Promise<number>;
}

/** Whether a citty command is one of netsort's (it has a table for the help). */
export function isNetsortCommand(command: CommandDef<ArgsDef>): command is NetsortCommand {
  return Object.hasOwn(command, "table") && Object.hasOwn(command, "parseArgs");
}

/** citty's `args` for a table: the same names, kinds, defaults and choices. */
export function cittyArgs(table: ArgTable): ArgsDef {
  const args: Record<string, ArgDef> = {};
  for (const p of table.positionals) {
    args[p.name] = { type: "positional", description: p.description, required: p.required !== false };
  }
  for (const [name, spec] of Object.entries(table.flags)) {
    const alias = spec.short === undefined ? {} : { alias: spec.short };
    if (spec.type === "boolean") {
      args[name] = { type: "boolean", description: spec.description, ...alias };
      continue;
    }
    const common = {
      description: spec.description,
      valueHint: spec.valueHint,
      ...alias,
      ...(spec.default === undefined ? {} : { default: spec.default }),
    };
    args[name] =
      spec.choices === undefined
        ? { type: "string", ...common }
        : { type: "enum", options: [...spec.choices], ...common };
  }
  return args;
}

interface TableCommandDef<T extends ArgTable> {
  name: string;
  summary: string;
  notes?: readonly string[];
  alsoUsage?: readonly string[];
  args: T;
  run(args: ParsedArgs<T>): Promise<number> | number;
}

/** citty's defineCommand is its typing helper (it returns its argument): each command is a citty CommandDef. */
function asCitty(command: NetsortCommand): NetsortCommand {
  return defineCommand<ArgsDef>(command) as NetsortCommand;
}

/** A command whose arguments are parsed, checked and typed by its table. */
export function defineTableCommand<const T extends ArgTable>(def: TableCommandDef<T>): NetsortCommand {
  const parseArgs = (rawArgs: readonly string[]) => parseCommandArgs(def.name, def.args, rawArgs);
  return asCitty({
    meta: { name: def.name, description: def.summary },
    args: cittyArgs(def.args),
    table: def.args,
    notes: def.notes ?? [],
    alsoUsage: def.alsoUsage ?? [],
    parseArgs,
    async run({ rawArgs }) {
      const parsed = parseArgs(rawArgs);
      const flags = parsed as Record<string, unknown>;
      if (flags.verbose === true) setLogLevel("verbose");
      else if (flags.quiet === true) setLogLevel("quiet");
      return def.run(parsed);
    },
  });
}

interface RawCommandDef<V> {
  name: string;
  summary: string;
  notes?: readonly string[];
  alsoUsage?: readonly string[];
  /** For help only: the command parses its own arguments. */
  args: ArgTable;
  /** The C tool's own argument parser. */
  parseArgs(rawArgs: string[]): V;
  run(args: V): Promise<number> | number;
}

/** A command that parses its own arguments (gensort, valsort: the C tools' rules). */
export function defineRawCommand<V>(def: RawCommandDef<V>): NetsortCommand {
  const parseArgs = (rawArgs: readonly string[]) => def.parseArgs([...rawArgs]);
  return asCitty({
    meta: { name: def.name, description: def.summary },
    // No citty args: citty hands the raw arguments over and never objects to them.
    args: {},
    table: def.args,
    notes: def.notes ?? [],
    alsoUsage: def.alsoUsage ?? [],
    parseArgs,
    async run({ rawArgs }) {
      return def.run(parseArgs(rawArgs));
    },
  });
}
