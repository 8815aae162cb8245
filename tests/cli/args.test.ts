import { describe, expect, test } from "bun:test";
import {
  type ArgTable,
  logFlags,
  maxSizeBytes,
  parseCommandArgs,
  parseIntArg,
  parseSize,
  wantsHelp,
} from "../../src/cli/args.ts";
import { EXIT_USAGE, UsageError } from "../../src/errors.ts";

/** A table shaped like the real ones: required positionals, one optional, value flags, booleans. */
const table = {
  positionals: [
    { name: "serverId", description: "id" },
    { name: "inputFile", description: "in" },
    { name: "extra", description: "optional", required: false },
  ],
  flags: {
    port: {
      type: "string",
      valueHint: "n",
      description: "port",
      short: "p",
      parse: { kind: "int", min: 1, max: 65535 },
    },
    size: {
      type: "string",
      valueHint: "size",
      description: "size",
      default: "64kb",
      parse: { kind: "size", min: 100, max: 1024 ** 3 },
    },
    name: { type: "string", valueHint: "text", description: "free text" },
    mode: { type: "string", valueHint: "mode", description: "mode", choices: ["a", "b"], default: "a" },
    seed: { type: "string", valueHint: "n", description: "seed", singleDash: "-randseed" },
    inputs: { type: "string", valueHint: "file", description: "several", list: true },
    force: { type: "boolean", description: "force", short: "f" },
    ...logFlags,
  },
} as const satisfies ArgTable;

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

const parse = (raw: string[]) => parseCommandArgs("cmd", table, raw);
const rejects = (raw: string[]) => usageError(() => parse(raw));

describe("parseCommandArgs", () => {
  test("defaults: booleans false, defaults parsed like given values, the rest undefined", () => {
    expect(parse(["0", "in"])).toEqual({
      serverId: "0",
      inputFile: "in",
      extra: undefined,
      port: undefined,
      size: 64 * 1024,
      name: undefined,
      mode: "a",
      seed: undefined,
      inputs: undefined,
      force: false,
      quiet: false,
      verbose: false,
    });
  });

  /** Accepted argument lists, with the values the command then sees. */
  const accepted: Array<[string[], Record<string, unknown>]> = [
    [["0", "in", "extra"], { extra: "extra" }],
    [["0", "in", "--port=9000"], { port: 9000 }],
    [["0", "in", "--port", "9000"], { port: 9000 }],
    [["--port", "9000", "0", "in"], { serverId: "0", inputFile: "in", port: 9000 }],
    [["0", "in", "-p", "9000"], { port: 9000 }],
    [["0", "in", "--size", "10 kb"], { size: 10 * 1024 }],
    [["0", "in", "--mode", "b"], { mode: "b" }],
    [["0", "in", "--force"], { force: true }],
    [["0", "in", "-f"], { force: true }],
    [["0", "in", "-fq"], { force: true, quiet: true }],
    [["0", "in", "--quiet", "-v"], { quiet: true, verbose: true }],
    // A negative number is a value, "-" is a positional, and "=" keeps a dash value.
    [["0", "in", "--name", "-5"], { name: "-5" }],
    [["0", "-"], { inputFile: "-" }],
    [["0", "in", "--name=--weird"], { name: "--weird" }],
    // The single-dash spelling of a long flag, both forms.
    [["-randseed", "7", "0", "in"], { seed: "7", serverId: "0", inputFile: "in" }],
    [["0", "in", "-randseed=8"], { seed: "8" }],
    // A list flag takes every argument up to the next flag or `--`.
    [["0", "--inputs", "a", "b", "c", "--force", "in"], { inputs: ["a", "b", "c"], inputFile: "in" }],
    [["--inputs=a", "b", "--", "0", "in"], { inputs: ["a", "b"], serverId: "0", inputFile: "in" }],
    // `--` ends the flags: what follows are positionals.
    [["0", "--", "--in"], { inputFile: "--in" }],
  ];

  for (const [raw, expected] of accepted) {
    test(`accepts ${JSON.stringify(raw)}`, () => {
      expect(parse(raw)).toMatchObject(expected);
    });
  }

  test("rejects unknown flags, naming them as typed", () => {
    expect(rejects(["0", "in", "--bogus"])).toBe("cmd: unknown option --bogus");
    expect(rejects(["0", "in", "--bogus=3"])).toBe("cmd: unknown option --bogus");
    expect(rejects(["0", "in", "-x"])).toBe("cmd: unknown option -x");
    expect(rejects(["0", "in", "--retryMs", "5"])).toBe("cmd: unknown option --retryMs");
    // An own property of every object is still not a flag.
    expect(rejects(["0", "in", "--constructor"])).toBe("cmd: unknown option --constructor");
    // A negative number where a positional is expected reads as a flag: refused, not dropped.
    expect(rejects(["-1", "in"])).toBe("cmd: unknown option -1");
    // -randseed is only the seed's spelling; other single-dash words are refused.
    expect(rejects(["0", "in", "-seed", "3"])).toContain("cmd: unknown option -");
  });

  test("rejects extra positionals, naming the first", () => {
    expect(rejects(["0", "in", "x", "y"])).toBe('cmd: unexpected argument "y" (takes at most 3)');
    expect(rejects(["0", "in", "x", "--", "y"])).toBe('cmd: unexpected argument "y" (takes at most 3)');
  });

  test("rejects missing required positionals, naming the first missing one", () => {
    expect(rejects([])).toBe("cmd: missing argument <serverId>");
    expect(rejects(["0"])).toBe("cmd: missing argument <inputFile>");
    // Flags and their values do not count as positionals.
    expect(rejects(["--port", "9000", "0"])).toBe("cmd: missing argument <inputFile>");
    expect(rejects(["0", "--"])).toBe("cmd: missing argument <inputFile>");
  });

  test("rejects a value flag with no value, an empty one, or one given twice", () => {
    expect(rejects(["0", "in", "--port"])).toBe("cmd: --port: needs a value");
    expect(rejects(["0", "in", "--port="])).toBe("cmd: --port: needs a value");
    expect(rejects(["0", "in", "--port", ""])).toBe("cmd: --port: needs a value");
    expect(rejects(["0", "in", "--port", "--force"])).toBe("cmd: --port: needs a value");
    expect(rejects(["0", "in", "-p"])).toBe("cmd: --port: needs a value");
    expect(rejects(["0", "in", "--inputs"])).toBe("cmd: --inputs: needs a value");
    expect(rejects(["0", "in", "--port", "1", "--port", "2"])).toBe("cmd: --port: given twice");
    expect(rejects(["0", "in", "--seed", "1", "-randseed", "2"])).toBe("cmd: --seed: given twice");
  });

  test("rejects a value for a boolean flag", () => {
    expect(rejects(["0", "in", "--force=yes"])).toBe("cmd: --force: takes no value");
  });

  test("checks choices, integers and sizes from the table, defaults included", () => {
    expect(rejects(["0", "in", "--mode", "c"])).toBe('cmd: --mode: must be one of a, b, got "c"');
    expect(rejects(["0", "in", "--port", "0"])).toBe("cmd: --port: must be between 1 and 65535, got 0");
    expect(rejects(["0", "in", "--port", "x"])).toBe('cmd: --port: must be an integer, got "x"');
    expect(rejects(["0", "in", "--size", "lots"])).toContain('cmd: --size: cannot read size "lots"');
    expect(rejects(["0", "in", "--size", "99"])).toBe(
      "cmd: --size: must be between 100 and 1073741824 bytes, got 99",
    );
    const badDefault = {
      positionals: [],
      flags: {
        n: {
          type: "string",
          valueHint: "n",
          description: "n",
          default: "0",
          parse: { kind: "int", min: 1, max: 2 },
        },
      },
    } as const satisfies ArgTable;
    expect(usageError(() => parseCommandArgs("cmd", badDefault, []))).toBe(
      "cmd: --n: must be between 1 and 2, got 0",
    );
  });

  test("a variadic positional takes the rest, and a required one needs at least one", () => {
    const variadic = {
      positionals: [{ name: "files", description: "files", variadic: true }],
      flags: {},
    } as const satisfies ArgTable;
    expect(parseCommandArgs("v", variadic, ["a", "b", "c"])).toEqual({ files: ["a", "b", "c"] });
    expect(usageError(() => parseCommandArgs("v", variadic, []))).toBe("v: missing argument <files...>");
  });
});

describe("wantsHelp", () => {
  test("--help or -h anywhere before --", () => {
    expect(wantsHelp(["0", "--help"])).toBe(true);
    expect(wantsHelp(["-h", "0"])).toBe(true);
    expect(wantsHelp(["0", "--", "--help"])).toBe(false);
    expect(wantsHelp(["0", "--helpful"])).toBe(false);
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
      "--port: must be between 1 and 65535, got 0",
    );
    expect(usageError(() => parseIntArg("--port", "65536", 1, 65535))).toBe(
      "--port: must be between 1 and 65535, got 65536",
    );
    expect(usageError(() => parseIntArg("n", "-1", 0, 10))).toContain("between 0 and 10");
    expect(usageError(() => parseIntArg("n", "99999999999999999999", 0, Number.MAX_SAFE_INTEGER))).toContain(
      "between",
    );
  });

  test("rejects junk, naming the flag and the text", () => {
    for (const junk of ["", " ", "abc", "1.5", "1e3", "0x10", "+5", "5x", "1 000", "--", "NaN", "Infinity"]) {
      expect(usageError(() => parseIntArg("serverId", junk, 0, 1000))).toBe(
        `serverId: must be an integer, got "${junk}"`,
      );
    }
    expect(usageError(() => parseIntArg("serverId", undefined, 0, 1000))).toBe(
      'serverId: must be an integer, got ""',
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
