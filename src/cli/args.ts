/**
 * Strict argument checks that citty does not do: citty has no number type,
 * accepts unknown flags and extra positionals silently, and lets `--flag` with
 * no value through as "". Every command calls `checkArgs` first.
 */
import type { ArgsDef } from "citty";
import { UsageError } from "../errors.ts";

/** Flags every command accepts. */
export const commonArgs = {
  quiet: { type: "boolean", description: "Only warnings and errors", alias: "q" },
  verbose: { type: "boolean", description: "Debug output and stack traces", alias: "v" },
} as const satisfies ArgsDef;

function toArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/**
 * Reject unknown flags, missing or extra positionals and empty string values.
 * `rawArgs` are the arguments after the command name.
 */
export function checkArgs(command: string, rawArgs: string[], def: ArgsDef): void {
  const known = new Map<string, "boolean" | "value">();
  const positionals: string[] = [];
  let variadic = false;
  for (const [name, arg] of Object.entries(def)) {
    if (arg.type === "positional") {
      positionals.push(name);
      continue;
    }
    const kind = arg.type === "boolean" ? "boolean" : "value";
    for (const n of [name, ...toArray((arg as { alias?: string | string[] }).alias)]) {
      known.set(n, kind);
      if (kind === "boolean") known.set(`no-${n}`, kind);
    }
    if (name === "_variadic") variadic = true;
  }
  known.set("help", "boolean");
  known.set("h", "boolean");
  let positionalCount = 0;
  for (let i = 0; i < rawArgs.length; i++) {
    const raw = rawArgs[i];
    if (raw === "--") {
      positionalCount += rawArgs.length - i - 1;
      break;
    }
    if (/^-\d/.test(raw)) {
      // citty reads "-1" as an unknown short flag and drops it: refuse it here instead.
      throw new UsageError(`${command}: negative numbers are not valid here: ${raw}`);
    }
    if (/^-[^-].*=/.test(raw)) {
      // citty would hand the command "=value" for "-x=value".
      throw new UsageError(`${command}: write ${raw.split("=")[0]} <value> or --name=<value>, not ${raw}`);
    }
    if (raw.startsWith("-") && raw.length > 1) {
      const body = raw.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const name = eq >= 0 ? body.slice(0, eq) : body;
      const kind = known.get(name);
      if (kind === undefined) throw new UsageError(`${command}: unknown option ${raw.split("=")[0]}`);
      if (kind === "value") {
        const value = eq >= 0 ? body.slice(eq + 1) : rawArgs[i + 1];
        if (eq < 0) i++;
        if (value === undefined || value === "" || (eq < 0 && value.startsWith("--"))) {
          throw new UsageError(`${command}: option --${name} needs a value`);
        }
      }
      continue;
    }
    positionalCount++;
  }
  if (!variadic && positionalCount > positionals.length) {
    throw new UsageError(`${command}: too many arguments (expected at most ${positionals.length})`);
  }
  for (const [name, arg] of Object.entries(def)) {
    if (arg.type === "positional" && arg.required !== false && positionals.indexOf(name) >= positionalCount) {
      throw new UsageError(`${command}: missing argument <${name}>`);
    }
  }
}

/** Parse a decimal integer flag or argument and check its range. */
export function parseIntArg(
  name: string,
  value: string | number | undefined,
  min: number,
  max: number,
): number {
  const text = String(value ?? "").trim();
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${name} must be an integer, got "${value ?? ""}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name} must be between ${min} and ${max}, got ${text}`);
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
