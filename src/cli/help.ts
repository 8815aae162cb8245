/**
 * Help text, generated from the argument tables so it cannot drift from what is
 * parsed. Plain text, no colour, no trailing spaces: required positionals are
 * `<name>`, optional ones `[name]`, repeated ones `<name...>`. main.ts hands it
 * to citty as the usage renderer, in place of citty's coloured one.
 */
import type { ArgTable, FlagSpec, PositionalSpec } from "./args.ts";
import type { NetsortCommand } from "./command.ts";

function positionalLabel(p: PositionalSpec): string {
  const name = p.variadic ? `${p.name}...` : p.name;
  return p.required === false ? `[${name}]` : `<${name}>`;
}

function flagLabel(name: string, spec: FlagSpec): string {
  const short = spec.short === undefined ? "" : `-${spec.short}, `;
  const value = spec.type === "string" ? ` <${spec.valueHint}>${spec.list ? "..." : ""}` : "";
  return `${short}--${name}${value}`;
}

function flagDescription(spec: FlagSpec): string {
  if (spec.type === "boolean") return spec.description;
  const extras: string[] = [];
  if (spec.choices !== undefined) extras.push(`one of ${spec.choices.join(", ")}`);
  if (spec.default !== undefined) extras.push(`default ${spec.default}`);
  if (spec.singleDash !== undefined) extras.push(`also ${spec.singleDash} <${spec.valueHint}>`);
  return extras.length === 0 ? spec.description : `${spec.description} (${extras.join("; ")})`;
}

/** Two columns, the left padded to its widest entry. */
function columns(rows: Array<[string, string]>): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`.trimEnd());
}

export function usageLine(name: string, args: ArgTable): string {
  const positionals = args.positionals.map(positionalLabel);
  return ["Usage: netsort", name, ...positionals, "[flags]"].join(" ");
}

/** `netsort <command> --help`. */
export function commandHelp(command: NetsortCommand): string {
  const { name, description } = command.meta;
  const args = command.table;
  const lines = [`netsort ${name}: ${description}`, "", usageLine(name, args)];
  for (const also of command.alsoUsage) lines.push(`       ${also}`);
  if (command.notes.length > 0) lines.push("", ...command.notes);
  if (args.positionals.length > 0) {
    lines.push("", "Arguments:");
    lines.push(...columns(args.positionals.map((p) => [positionalLabel(p), p.description])));
  }
  const flags: Array<[string, string]> = Object.entries(args.flags).map(([name, spec]) => [
    flagLabel(name, spec),
    flagDescription(spec),
  ]);
  flags.push(["-h, --help", "Print this help on stdout"]);
  lines.push("", "Flags:", ...columns(flags));
  return lines.map((line) => line.trimEnd()).join("\n");
}

/** `netsort --help`: the command list. */
export function mainHelp(commands: ReadonlyArray<[name: string, summary: string]>, version: string): string {
  return [
    `netsort ${version}: distributed sort of 100-byte records over a TCP mesh`,
    "",
    "Usage: netsort <serverId> <inputFile> <outputFile> <configFile> [flags]",
    "       netsort <command> [arguments] [flags]",
    "",
    "Commands:",
    ...columns([...commands]),
    "",
    "`netsort help <command>` or `netsort <command> --help` describes a command.",
    "`netsort --version` names the version, commit, build date, target and Bun.",
    "Data and JSON go to stdout; logs and errors go to stderr.",
    "Exit codes: 0 success, 1 run-time failure, 2 bad usage, config or input.",
  ].join("\n");
}
