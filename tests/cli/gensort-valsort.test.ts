/**
 * `netsort gensort` and `netsort valsort` as processes: the files they write,
 * their stderr text and exit codes, against the real tools' outputs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseGensortArgs } from "../../src/cli/gensort.ts";
import { parseValsortArgs } from "../../src/cli/valsort.ts";
import { UsageError } from "../../src/errors.ts";

const MAIN = join(import.meta.dir, "../../src/cli/main.ts");
const FIXTURES = join(import.meta.dir, "../fixtures/gensort-1.5");
const runTimeoutMs = 30_000;
let dir = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-gensort-cli-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  stdout: string;
  stderr: string;
  code: number;
}

async function netsort(...args: string[]): Promise<Run> {
  const proc = Bun.spawn([process.execPath, MAIN, ...args], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { stdout, stderr, code };
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}

const fixture = (name: string) => readFileSync(join(FIXTURES, name));
const outputsText = () => readFileSync(join(FIXTURES, "outputs.txt"), "utf8");
const tmp = (name: string) => join(dir, name);

/** out0.bin / out1.bin of the vectors: f1000.sorted.bin's records split at key[0] = 0x80 (VECTORS.md). */
function splitSorted(): { low: Buffer; high: Buffer } {
  const sorted = fixture("f1000.sorted.bin");
  const low: Buffer[] = [];
  const high: Buffer[] = [];
  for (let at = 0; at < sorted.length; at += 100)
    (sorted[at] < 0x80 ? low : high).push(sorted.subarray(at, at + 100));
  return { low: Buffer.concat(low), high: Buffer.concat(high) };
}

/** gensort -c checksums by flags, from outputs.txt. */
function gensortChecksum(flags: string): string {
  const m = new RegExp(`^gensort -c ${flags.replaceAll("-", "\\-")} -> ([0-9a-f]+)$`, "m").exec(
    outputsText(),
  );
  if (!m) throw new Error(`no gensort -c ${flags} line in outputs.txt`);
  return m[1];
}

describe("netsort gensort", () => {
  test(
    "all four modes: byte-identical files and gensort's -c line on stderr",
    async () => {
      const cases = [
        ["", "f1000.bin"],
        ["-a ", "a1000.txt"],
        ["-s ", "s1000.bin"],
        ["-a -s ", "as1000.txt"],
      ];
      const runs = await Promise.all(
        cases.map(([flags, file]) =>
          netsort("gensort", "-c", ...flags.split(" ").filter(Boolean), "-b0", "1000", tmp(file)),
        ),
      );
      cases.forEach(([flags, file], i) => {
        expect(runs[i]).toEqual({ stdout: "", stderr: `${gensortChecksum(`${flags}-b0 1000`)}\n`, code: 0 });
        expect(readFileSync(tmp(file)).equals(fixture(file))).toBe(true);
      });
    },
    runTimeoutMs,
  );

  test(
    "-b500 continues -b0; -c to /dev/null; glued -b only; zero records",
    async () => {
      const [first, second, c100k, zero] = await Promise.all([
        netsort("gensort", "-c", "-b0", "500", tmp("part0.bin")),
        netsort("gensort", "-c", "-b500", "500", tmp("part1.bin")),
        netsort("gensort", "-c", "-b0", "100000", "/dev/null"),
        netsort("gensort", "-c", "0", tmp("zero.bin")),
      ]);
      expect(first.stderr).toBe(`${gensortChecksum("-b0 500")}\n`);
      expect(second.stderr).toBe(`${gensortChecksum("-b500 500")}\n`);
      expect(
        Buffer.concat([readFileSync(tmp("part0.bin")), readFileSync(tmp("part1.bin"))]).equals(
          fixture("f1000.bin"),
        ),
      ).toBe(true);
      expect(c100k).toEqual({ stdout: "", stderr: "c3068574c6ff\n", code: 0 });
      expect(zero).toEqual({ stdout: "", stderr: "0\n", code: 0 });
      expect(statSync(tmp("zero.bin")).size).toBe(0);
    },
    runTimeoutMs,
  );

  test(
    "the largest start record, 2^128-1, wraps to record 0 like gensort's counter",
    async () => {
      const run = await netsort("gensort", "-a", `-b${(1n << 128n) - 1n}`, "3", tmp("wrap.txt"));
      expect(run.code).toBe(0);
      const text = readFileSync(tmp("wrap.txt"), "latin1");
      const numbers = [0, 1, 2].map((r) => text.slice(r * 100 + 12, r * 100 + 44));
      expect(numbers).toEqual(["F".repeat(32), "0".repeat(32), `${"0".repeat(31)}1`]);
      // Records 0 and 1 are the same as in a run from 0 (a1000.txt's first two).
      expect(Buffer.from(text.slice(100), "latin1").equals(fixture("a1000.txt").subarray(0, 200))).toBe(true);
    },
    runTimeoutMs,
  );

  test("argument rules: gensort.c's, strictly", () => {
    expect(parseGensortArgs(["-a", "-s", "-c", "-b77", "5", "f"])).toEqual({
      ascii: true,
      skew: true,
      checksum: true,
      start: 77n,
      records: 5,
      output: "f",
    });
    expect(parseGensortArgs(["--start", "9", "--ascii", "1", "f"])).toMatchObject({ start: 9n, ascii: true });
    expect(parseGensortArgs([`-b${(1n << 128n) - 1n}`, "0", "f"]).start).toBe((1n << 128n) - 1n);
    const bad = [
      ["-b", "500", "10", "f"], // gensort reads "-b" as 0 and then has too many operands
      ["-x", "10", "f"],
      ["-ac", "10", "f"], // gensort would read this as -a alone
      ["10"],
      ["10", "f", "extra"],
      ["ten", "f"],
      ["-5", "f"],
      ["10", "-a", "f"], // options must come first
      [`-b${1n << 128n}`, "1", "f"],
      ["-b12x", "1", "f"],
      [`${2 ** 53}`, "f"],
    ];
    for (const args of bad) expect(() => parseGensortArgs(args)).toThrow(UsageError);
  });

  test(
    "bad usage exits 2 and creates no file; an unwritable output exits 1 like perror",
    async () => {
      const missingDir = tmp("no-such-dir/out.bin");
      const [usage, unwritable] = await Promise.all([
        netsort("gensort", "-b", "500", "10", tmp("u1")),
        netsort("gensort", "1", missingDir),
      ]);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain("usage: gensort");
      expect(existsSync(tmp("u1"))).toBe(false);
      expect(unwritable).toEqual({
        stdout: "",
        stderr: `${missingDir}: No such file or directory\n`,
        code: 1,
      });
    },
    runTimeoutMs,
  );
});

describe("netsort valsort", () => {
  test(
    "every valsort run in outputs.txt: the same stderr text and exit code, nothing on stdout",
    async () => {
      const { low, high } = splitSorted();
      writeFileSync(tmp("out0.bin"), low);
      writeFileSync(tmp("out1.bin"), high);
      const runs = [...outputsText().matchAll(/^\$ valsort (-s )?(\S+)\n([\s\S]*?)\[exit (\d)\]$/gm)];
      expect(runs.length).toBe(13);
      const results = await Promise.all(
        runs.map(([, s, file]) => {
          const path = existsSync(tmp(file)) ? tmp(file) : join(FIXTURES, file);
          return netsort("valsort", ...(s ? ["-s"] : []), path);
        }),
      );
      runs.forEach(([, s, file, text, exit], i) => {
        const what = `valsort ${s ?? ""}${file}`;
        expect({ what, ...results[i] }).toEqual({ what, stdout: "", stderr: text, code: Number(exit) });
      });
    },
    runTimeoutMs,
  );

  test(
    "-q prints nothing but keeps the exit code; -o writes valsort's summary, even with -q",
    async () => {
      writeFileSync(tmp("o0.bin"), splitSorted().low);
      const [unordered, ordered, withSummary, quietSummary] = await Promise.all([
        netsort("valsort", "-q", join(FIXTURES, "f1000.bin")),
        netsort("valsort", "-q", join(FIXTURES, "f1000.sorted.bin")),
        netsort("valsort", "-o", tmp("o0.sum"), tmp("o0.bin")),
        netsort("valsort", "-q", "-o", tmp("f1000.sum"), join(FIXTURES, "f1000.bin")),
      ]);
      expect(unordered).toEqual({ stdout: "", stderr: "", code: 1 });
      expect(ordered).toEqual({ stdout: "", stderr: "", code: 0 });
      expect(withSummary.code).toBe(0);
      expect(readFileSync(tmp("o0.sum")).equals(fixture("out0.sum"))).toBe(true);
      expect(quietSummary).toEqual({ stdout: "", stderr: "", code: 1 });
      expect(readFileSync(tmp("f1000.sum")).length).toBe(280); // written even though unordered
    },
    runTimeoutMs,
  );

  test(
    "errors: missing, empty (leaving an empty -o file) and partial input exit 1 with valsort's words",
    async () => {
      writeFileSync(tmp("empty.bin"), "");
      writeFileSync(tmp("partial.bin"), fixture("f1000.bin").subarray(0, 350));
      const missing = tmp("missing.bin");
      const [gone, goneQuiet, empty, partial] = await Promise.all([
        netsort("valsort", missing),
        netsort("valsort", "-q", missing),
        netsort("valsort", "-o", tmp("empty.sum"), tmp("empty.bin")),
        netsort("valsort", tmp("partial.bin")),
      ]);
      expect(gone).toEqual({ stdout: "", stderr: `${missing}: No such file or directory\n`, code: 1 });
      expect(goneQuiet).toEqual(gone); // valsort.c prints errors even with -q
      expect(empty).toEqual({
        stdout: "",
        stderr: "there must be at least one record to be validated\n",
        code: 1,
      });
      expect(statSync(tmp("empty.sum")).size).toBe(0);
      expect(partial).toEqual({
        stdout: "",
        stderr: "First unordered record is record 2\npartial record found at end\n",
        code: 1,
      });
    },
    runTimeoutMs,
  );

  test("argument rules: valsort.c's, strictly", () => {
    expect(parseValsortArgs(["-i", "-q", "-o", "x.sum", "-s", "in"])).toEqual({
      caseInsensitive: true,
      quiet: true,
      summaries: true,
      summaryFile: "x.sum",
      input: "in",
    });
    expect(parseValsortArgs(["in"]).summaryFile).toBeNull();
    const bad = [
      ["-x", "in"],
      [],
      ["in", "in"],
      ["-o", "in"],
      ["-o", "-q", "in"],
      ["-qi", "in"],
      ["in", "-q"],
    ];
    for (const args of bad) expect(() => parseValsortArgs(args)).toThrow(UsageError);
  });

  test(
    "bad usage exits 2 and creates no summary file",
    async () => {
      const run = await netsort("valsort", "-o", tmp("x.sum"));
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("usage: valsort");
      expect(existsSync(tmp("x.sum"))).toBe(false);
    },
    runTimeoutMs,
  );
});
