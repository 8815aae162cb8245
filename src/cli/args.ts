/**
 * One argument table per command drives citty's args (src/cli/command.ts),
 * parsing, defaults, choices, number and size checks, and `--help`
 * (src/cli/help.ts). Tokens come from node:util parseArgs; this file adds what
 * it and citty lack: typed values, choices, integers and
 * sizes with ranges, a flag that takes several values (`--inputs a b c`), a
 * single-dash long spelling (the course gensort's `-randseed N`), and one-line
 * errors that name the command and the flag.
 */
import { parseArgs as tokenize } from "node:util";
import { UsageError } from "../errors.ts";

export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  /** Default true: a missing one is a usage error. */
  readonly required?: boolean;
  /** Takes every remaining positional (the last positional only). */
  readonly variadic?: boolean;
}

export interface BooleanFlag {
  readonly type: "boolean";
  readonly description: string;
  readonly short?: string;
}

/** How a string flag's text becomes its value: a bounded integer or a size in bytes. */
export type ValueParser =
  | { readonly kind: "int"; readonly min: number; readonly max: number }
  | { readonly kind: "size"; readonly min: number; readonly max: number };

export interface StringFlag {
  readonly type: "string";
  readonly description: string;
  /** The placeholder in help: `--seed <n>`. */
  readonly valueHint: string;
  readonly short?: string;
  /** Used when the flag is absent; shown in help. Parsed like a given value. */
  readonly default?: string;
  readonly choices?: readonly string[];
  readonly parse?: ValueParser;
  /** Takes every following argument up to the next flag: `--inputs a b c`. */
  readonly list?: boolean;
  /** Also accepted with one dash, as the course tools spell it (`-randseed`). */
  readonly singleDash?: string;
}

export type FlagSpec = BooleanFlag | StringFlag;

export interface ArgTable {
  readonly positionals: readonly PositionalSpec[];
  readonly flags: Readonly<Record<string, FlagSpec>>;
}

type FlagValue<F> = F extends BooleanFlag
  ? boolean
  : F extends { list: true }
    ? string[] | undefined
    : F extends { parse: ValueParser }
      ? F extends { default: string }
        ? number
        : number | undefined
      : F extends { choices: readonly (infer C)[] }
        ? F extends { default: string }
          ? C
          : C | undefined
        : F extends { default: string }
          ? string
          : string | undefined;

type PositionalValue<P> = P extends { variadic: true }
  ? string[]
  : P extends { required: false }
    ? string | undefined
    : string;

/** What a command's run() receives: one typed field per flag and per positional. */
export type ParsedArgs<T extends ArgTable> = {
  -readonly [K in keyof T["flags"]]: FlagValue<T["flags"][K]>;
} & {
  -readonly [P in T["positionals"][number] as P["name"]]: PositionalValue<P>;
};

/** Flags every command that logs accepts. */
export const logFlags = {
  quiet: { type: "boolean", short: "q", description: "Only warnings and errors on stderr" },
  verbose: { type: "boolean", short: "v", description: "Also debug lines, and stack traces with errors" },
} as const satisfies Record<string, FlagSpec>;

/** `--help`/`-h` anywhere before `--`: the caller prints help instead of running. */
export function wantsHelp(rawArgs: readonly string[]): boolean {
  for (const raw of rawArgs) {
    if (raw === "--") return false;
    if (raw === "--help" || raw === "-h") return true;
  }
  return false;
}

/** A flag's value text: "" and an option-looking word mean the value was forgotten. */
function isMissingValue(value: string | undefined, inline: boolean): boolean {
  if (value === undefined || value === "") return true;
  return !inline && value.startsWith("-") && value !== "-" && !/^-\d/.test(value);
}

function parseValue(what: string, spec: StringFlag, text: string): string | number {
  if (spec.choices !== undefined && !spec.choices.includes(text)) {
    throw new UsageError(`${what}: must be one of ${spec.choices.join(", ")}, got "${text}"`);
  }
  if (spec.parse === undefined) return text;
  const { kind, min, max } = spec.parse;
  const value = kind === "int" ? parseIntArg(what, text, min, max) : parseSize(what, text);
  if (kind === "size" && (value < min || value > max)) {
    throw new UsageError(`${what}: must be between ${min} and ${max} bytes, got ${value}`);
  }
  return value;
}

/** `-randseed` -> `--seed`, for the flags that declare a single-dash spelling. */
function respell(table: ArgTable, rawArgs: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i];
    if (raw === "--") return out.concat(rawArgs.slice(i));
    let replaced = raw;
    for (const [name, spec] of Object.entries(table.flags)) {
      if (spec.type !== "string" || spec.singleDash === undefined) continue;
      if (raw === spec.singleDash) replaced = `--${name}`;
      else if (raw.startsWith(`${spec.singleDash}=`))
        replaced = `--${name}${raw.slice(spec.singleDash.length)}`;
    }
    out.push(replaced);
  }
  return out;
}

/**
 * Parse `rawArgs` (the arguments after the command name) against `table`.
 * Every problem is a UsageError "<command>: <why>" (exit 2).
 */
export function parseCommandArgs<T extends ArgTable>(
  command: string,
  table: T,
  rawArgs: readonly string[],
): ParsedArgs<T> {
  const options: Record<string, { type: "boolean" | "string"; short?: string }> = {};
  for (const [name, spec] of Object.entries(table.flags)) {
    options[name] = spec.short === undefined ? { type: spec.type } : { type: spec.type, short: spec.short };
  }
  const { tokens } = tokenize({
    args: respell(table, rawArgs),
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, unknown> = {};
  const positionals: string[] = [];
  let listOf: string | null = null;
  for (const token of tokens) {
    if (token.kind === "option-terminator") {
      listOf = null;
      continue;
    }
    if (token.kind === "positional") {
      if (listOf !== null) (values[listOf] as string[]).push(token.value);
      else positionals.push(token.value);
      continue;
    }
    listOf = null;
    const spec = table.flags[token.name];
    if (spec === undefined || !Object.hasOwn(table.flags, token.name)) {
      throw new UsageError(`${command}: unknown option ${token.rawName}`);
    }
    const what = `${command}: --${token.name}`;
    if (spec.type === "boolean") {
      if (token.value !== undefined) throw new UsageError(`${what}: takes no value`);
      values[token.name] = true;
      continue;
    }
    if (isMissingValue(token.value, token.inlineValue === true))
      throw new UsageError(`${what}: needs a value`);
    if (values[token.name] !== undefined) throw new UsageError(`${what}: given twice`);
    const text = token.value as string;
    if (spec.list) {
      values[token.name] = [text];
      listOf = token.name;
    } else {
      values[token.name] = parseValue(what, spec, text);
    }
  }
  for (const [name, spec] of Object.entries(table.flags)) {
    if (values[name] !== undefined) continue;
    if (spec.type === "boolean") values[name] = false;
    else if (spec.default !== undefined)
      values[name] = parseValue(`${command}: --${name}`, spec, spec.default);
  }
  let next = 0;
  for (const spec of table.positionals) {
    if (spec.variadic) {
      values[spec.name] = positionals.slice(next);
      next = positionals.length;
      if (spec.required !== false && (values[spec.name] as string[]).length === 0) {
        throw new UsageError(`${command}: missing argument <${spec.name}...>`);
      }
      continue;
    }
    const value = positionals[next++];
    if (value === undefined && spec.required !== false) {
      throw new UsageError(`${command}: missing argument <${spec.name}>`);
    }
    values[spec.name] = value;
  }
  if (next < positionals.length) {
    throw new UsageError(
      `${command}: unexpected argument "${positionals[next]}" (takes at most ${table.positionals.length})`,
    );
  }
  return values as ParsedArgs<T>;
}

/** Parse a decimal integer flag or argument and check its range. */
export function parseIntArg(
  name: string,
  value: string | number | undefined,
  min: number,
  max: number,
): number {
  const text = String(value ?? "").trim();
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${name}: must be an integer, got "${value ?? ""}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name}: must be between ${min} and ${max}, got ${text}`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Largest size accepted anywhere: 1 TiB. */
export const maxSizeBytes = 1024 ** 4;

/**
 * A size as bytes or human text: "1000", "10 mb", "1gb", "256 kb", "1.5GiB".
 * Units are binary (1 mb = 1024 * 1024 bytes), as the course's gensort reads them.
 */
export function parseSize(name: string, text: string | undefined): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text ?? "");
  const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new UsageError(`${name}: cannot read size "${text ?? ""}" (try 1000, "64 kb", "10mb", "1gb")`);
  }
  const bytes = Math.ceil(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes > maxSizeBytes) {
    throw new UsageError(`${name}: size ${text} is more than the ${maxSizeBytes} bytes allowed`);
  }
  return bytes;
}
