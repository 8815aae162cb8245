/**
 * A command: its argument table, its help text and its run function. `invoke`
 * parses the arguments against the table (or hands them over raw, for the
 * gensort/valsort clones that must parse like the C tools), sets the log level
 * and runs. See src/cli/args.ts for the table and src/cli/help.ts for the help.
 */
import { setLogLevel } from "../log.ts";
import { type ArgTable, type ParsedArgs, parseCommandArgs } from "./args.ts";

export interface Command {
  readonly name: string;
  /** One line, for the command list of `netsort --help`. */
  readonly summary: string;
  /** Lines after the usage line in `netsort <command> --help`. */
  readonly notes: readonly string[];
  readonly args: ArgTable;
  /** Another spelling of the usage line, shown under the generated one. */
  readonly alsoUsage: readonly string[];
  /** Runs with the arguments after the command name; resolves to the exit code. */
  invoke(rawArgs: readonly string[]): Promise<number>;
}

interface CommandDef<T extends ArgTable> {
  name: string;
  summary: string;
  notes?: readonly string[];
  alsoUsage?: readonly string[];
  args: T;
  run(args: ParsedArgs<T>): Promise<number> | number;
}

export function defineCommand<const T extends ArgTable>(def: CommandDef<T>): Command {
  return {
    name: def.name,
    summary: def.summary,
    notes: def.notes ?? [],
    alsoUsage: def.alsoUsage ?? [],
    args: def.args,
    async invoke(rawArgs) {
      const parsed = parseCommandArgs(def.name, def.args, rawArgs) as Record<string, unknown>;
      if (parsed.verbose === true) setLogLevel("verbose");
      else if (parsed.quiet === true) setLogLevel("quiet");
      return def.run(parsed as ParsedArgs<T>);
    },
  };
}

interface RawCommandDef {
  name: string;
  summary: string;
  notes?: readonly string[];
  alsoUsage?: readonly string[];
  /** For help only: the command parses its own arguments. */
  args: ArgTable;
  run(rawArgs: readonly string[]): Promise<number> | number;
}

/** A command that parses its own arguments (gensort, valsort: the C tools' rules). */
export function defineRawCommand(def: RawCommandDef): Command {
  return {
    name: def.name,
    summary: def.summary,
    notes: def.notes ?? [],
    alsoUsage: def.alsoUsage ?? [],
    args: def.args,
    async invoke(rawArgs) {
      return def.run(rawArgs);
    },
  };
}
