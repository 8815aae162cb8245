import { describe, expect, test } from "bun:test";
import { type ArgsDef, parseArgs } from "citty";
import { checkArgs, commonArgs, maxSizeBytes, parseIntArg, parseSize } from "../../src/cli/args.ts";
import { EXIT_USAGE, UsageError } from "../../src/errors.ts";

/** A command shaped like the real ones: required positionals, one optional, value flags, booleans. */
const def = {
  serverId: { type: "positional", description: "id", required: true },
  inputFile: { type: "positional", description: "in", required: true },
  extra: { type: "positional", description: "optional", required: false },
  port: { type: "string", description: "port", alias: "p" },
  size: { type: "string", description: "size", alias: ["s", "bytes"] },
  "retry-ms": { type: "string", description: "ms" },
  mode: { type: "enum", description: "mode", options: ["a", "b"] },
  force: { type: "boolean", description: "force", alias: "f" },
  ...commonArgs,
} as const satisfies ArgsDef;

function usageError(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(UsageError);
  expect((caught as UsageError).exitCode).toBe(EXIT_USAGE);
  expect((caught as Error).message).not.toContain("\n");
  return (caught as Error).message;
}

const rejects = (raw: string[]) => usageError(() => checkArgs("cmd", raw, def));

describe("checkArgs", () => {
  test("rejects unknown flags, naming them", () => {
    expect(rejects(["0", "in", "--bogus"])).toBe("cmd: unknown option --bogus");
    expect(rejects(["0", "in", "--bogus=3"])).toBe("cmd: unknown option --bogus");
    expect(rejects(["0", "in", "-x"])).toBe("cmd: unknown option -x");
    // --no-x only exists for booleans.
    expect(rejects(["0", "in", "--no-port"])).toBe("cmd: unknown option --no-port");
    // citty's automatic camelCase spelling is not part of our interface.
    expect(rejects(["0", "in", "--retryMs", "5"])).toBe("cmd: unknown option --retryMs");
  });

  test("rejects extra positionals", () => {
    expect(rejects(["0", "in", "x", "y"])).toContain("too many arguments (expected at most 3)");
    expect(rejects(["0", "in", "x", "--", "y"])).toContain("too many arguments");
  });

  test("rejects missing required positionals, naming the first missing one", () => {
    expect(rejects([])).toBe("cmd: missing argument <serverId>");
    expect(rejects(["0"])).toBe("cmd: missing argument <inputFile>");
    // Flags and their values do not count as positionals.
    expect(rejects(["--port", "9000", "0"])).toBe("cmd: missing argument <inputFile>");
  });

  test("rejects a value flag with no value, or an empty one", () => {
    expect(rejects(["0", "in", "--port"])).toBe("cmd: option --port needs a value");
    expect(rejects(["0", "in", "--port="])).toBe("cmd: option --port needs a value");
    expect(rejects(["0", "in", "--port", ""])).toBe("cmd: option --port needs a value");
    expect(rejects(["0", "in", "--port", "--force"])).toBe("cmd: option --port needs a value");
    expect(rejects(["0", "in", "-p"])).toBe("cmd: option --p needs a value");
    expect(rejects(["0", "in", "--mode"])).toBe("cmd: option --mode needs a value");
  });

  /** Accepted argument lists, with what citty then reads for them (the command sees those values). */
  const accepted: Array<[string[], Record<string, unknown>]> = [
    [["0", "in"], { serverId: "0", inputFile: "in" }],
    [["0", "in", "extra"], { extra: "extra" }],
    [["0", "in", "--port=9000"], { port: "9000" }],
    [["0", "in", "--port", "9000"], { port: "9000" }],
    [["--port", "9000", "0", "in"], { serverId: "0", inputFile: "in", port: "9000" }],
    [["0", "in", "-p", "9000"], { port: "9000" }],
    [["0", "in", "--bytes", "10 mb"], { size: "10 mb" }],
    [["0", "in", "-s", "1gb"], { size: "1gb" }],
    [["0", "in", "--retry-ms=250"], { "retry-ms": "250" }],
    [["0", "in", "--mode", "b"], { mode: "b" }],
    [["0", "in", "--force"], { force: true }],
    [["0", "in", "-f"], { force: true }],
    [["0", "in", "--no-force"], { force: false }],
    [["0", "in", "--quiet", "-v"], { quiet: true, verbose: true }],
    [["0", "in", "--no-quiet"], { quiet: false }],
    [["0", "in", "--help"], {}],
    [["0", "in", "-h"], {}],
    // Negative numbers are values and "-" is a positional, not a flag.
    [["0", "in", "--port", "-5"], { port: "-5" }],
    [["0", "-"], { inputFile: "-" }],
    [["0", "in", "--port=--weird"], { port: "--weird" }],
  ];

  for (const [raw, expected] of accepted) {
    test(`accepts ${JSON.stringify(raw)}`, () => {
      expect(() => checkArgs("cmd", raw, def)).not.toThrow();
      const parsed = parseArgs(raw, def) as Record<string, unknown>;
      for (const [key, value] of Object.entries(expected)) expect(parsed[key]).toEqual(value);
    });
  }

  // citty reads these differently from what a user means, so checkArgs refuses them.
  test('-p=9000 (short flag with =) is refused with a hint, since citty would read "=9000"', () => {
    expect(() => checkArgs("cmd", ["0", "in", "-p=9000"], def)).toThrow("-p <value>");
    expect(() => checkArgs("cmd", ["0", "in", "-p", "9000"], def)).not.toThrow();
  });
  test("a negative-number positional is refused (citty would drop it as a flag)", () => {
    expect(() => checkArgs("cmd", ["-1", "in"], def)).toThrow("negative numbers");
  });

  test("forms citty would read but checkArgs refuses (stricter is fine)", () => {
    expect(rejects(["0", "in", "-fq"])).toBe("cmd: unknown option -fq");
    expect(rejects(["0", "in", "-p9000"])).toBe("cmd: unknown option -p9000");
  });

  test("`--` ends the flags: what follows counts as positionals", () => {
    expect(() => checkArgs("cmd", ["0", "--", "--in"], def)).not.toThrow();
    expect(rejects(["0", "--"])).toBe("cmd: missing argument <inputFile>");
  });

  test("a definition with _variadic allows any number of positionals", () => {
    const variadic = {
      first: { type: "positional", required: true },
      _variadic: { type: "boolean" },
    } as const;
    expect(() => checkArgs("v", ["a", "b", "c", "d"], variadic)).not.toThrow();
    expect(usageError(() => checkArgs("v", [], variadic))).toBe("v: missing argument <first>");
  });
});

describe("parseIntArg", () => {
  test("accepts integers inside the range, including the bounds and surrounding spaces", () => {
    expect(parseIntArg("n", "0", 0, 10)).toBe(0);
    expect(parseIntArg("n", "10", 0, 10)).toBe(10);
    expect(parseIntArg("n", " 7 ", 0, 10)).toBe(7);
    expect(parseIntArg("n", "-5", -10, 10)).toBe(-5);
    expect(parseIntArg("n", 42, 0, 100)).toBe(42);
    expect(parseIntArg("n", "007", 0, 10)).toBe(7);
    expect(parseIntArg("n", String(Number.MAX_SAFE_INTEGER), 0, Number.MAX_SAFE_INTEGER)).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  test("rejects values outside the range, naming the flag and the range", () => {
    expect(usageError(() => parseIntArg("--port", "0", 1, 65535))).toBe(
      "--port must be between 1 and 65535, got 0",
    );
    expect(usageError(() => parseIntArg("--port", "65536", 1, 65535))).toBe(
      "--port must be between 1 and 65535, got 65536",
    );
    expect(usageError(() => parseIntArg("n", "-1", 0, 10))).toContain("between 0 and 10");
    expect(usageError(() => parseIntArg("n", "99999999999999999999", 0, Number.MAX_SAFE_INTEGER))).toContain(
      "between",
    );
  });

  test("rejects junk, naming the flag and the text", () => {
    for (const junk of ["", " ", "abc", "1.5", "1e3", "0x10", "+5", "5x", "1 000", "--", "NaN", "Infinity"]) {
      expect(usageError(() => parseIntArg("serverId", junk, 0, 1000))).toBe(
        `serverId must be an integer, got "${junk}"`,
      );
    }
    expect(usageError(() => parseIntArg("serverId", undefined, 0, 1000))).toBe(
      'serverId must be an integer, got ""',
    );
  });
});

describe("parseSize", () => {
  const KiB = 1024;
  const MiB = 1024 * KiB;
  const GiB = 1024 * MiB;

  test("plain numbers and binary units, any case and spacing", () => {
    const cases: Array<[string, number]> = [
      ["1000", 1000],
      ["0", 0],
      ["100b", 100],
      ["10 mb", 10 * MiB],
      ["10MB", 10 * MiB],
      ["1gb", GiB],
      ["1g", GiB],
      ["256 kb", 256 * KiB],
      ["256k", 256 * KiB],
      ["64 KiB", 64 * KiB],
      ["1.5GiB", 1.5 * GiB],
      ["0.5 mib", MiB / 2],
      ["  3m  ", 3 * MiB],
      ["1tb", 1024 * GiB],
    ];
    for (const [text, bytes] of cases) expect(parseSize("--size", text)).toBe(bytes);
  });

  test("fractions of a byte round up", () => {
    expect(parseSize("--size", "1.5")).toBe(2);
    expect(parseSize("--size", "0.001 kb")).toBe(2);
  });

  test("junk is refused with the text in the message", () => {
    for (const junk of [
      "",
      "abc",
      "mb",
      "10 zb",
      "-5",
      "1.",
      ".5",
      "1,000",
      "1e6",
      "10 m b",
      "0x10",
      "ten mb",
    ]) {
      const message = usageError(() => parseSize("--size", junk));
      expect(message).toContain(`--size: cannot read size "${junk}"`);
    }
    expect(usageError(() => parseSize("--size", undefined))).toContain('cannot read size ""');
  });

  test("more than maxSizeBytes (1 TiB) is refused", () => {
    expect(maxSizeBytes).toBe(1024 ** 4);
    expect(parseSize("--size", String(maxSizeBytes))).toBe(maxSizeBytes);
    for (const big of [String(maxSizeBytes + 1), "1.0001 tb", "2tb", "1025 gb", "9".repeat(400)]) {
      expect(usageError(() => parseSize("--size", big))).toContain("is more than the");
    }
  });
});
