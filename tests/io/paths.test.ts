import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT_USAGE, UsageError } from "../../src/errors.ts";
import { checkOutputPath } from "../../src/io/paths.ts";

let dir: string;
let input: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-paths-test-"));
  input = path.join(dir, "input.dat");
  fs.writeFileSync(input, "the input");
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function refusal(output: string, inputFile = input): UsageError {
  try {
    checkOutputPath(inputFile, output);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT_USAGE);
    expect(fs.readFileSync(input, "utf8")).toBe("the input");
    return error as UsageError;
  }
  throw new Error(`${output} was accepted as an output for ${inputFile}`);
}

describe("checkOutputPath", () => {
  test("the same path is refused, naming both paths", () => {
    expect(refusal(input).message).toBe(
      `output ${input} is the input ${input} (same file): the sort would replace its own input; choose another output path`,
    );
  });

  test("the same file by another spelling (relative, with ..) is refused", () => {
    const relative = path.relative(process.cwd(), input);
    expect(refusal(relative).message).toContain(`output ${relative} is the input ${input}`);
    fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
    expect(refusal(`${dir}/sub/../input.dat`).message).toContain(`output ${dir}/sub/../input.dat`);
  });

  test("a hard link to the input is refused", () => {
    const hard = path.join(dir, "hard.dat");
    fs.linkSync(input, hard);
    expect(refusal(hard).message).toContain(`output ${hard} is the input ${input}`);
  });

  test("a symlink to the input, or a path through a symlinked directory, is refused", () => {
    const link = path.join(dir, "link.dat");
    fs.symlinkSync(input, link);
    expect(refusal(link).message).toContain(`output ${link} is the input ${input}`);
    const linkedDir = path.join(dir, "linked-dir");
    fs.symlinkSync(dir, linkedDir);
    expect(refusal(path.join(linkedDir, "input.dat")).message).toContain("is the input");
    // And the other way round: the input given through a symlink, the output by its real path.
    expect(refusal(input, link).message).toContain(`is the input ${link}`);
  });

  test("other files are fine: a missing output, an existing other file, a copy of the input", () => {
    expect(() => checkOutputPath(input, path.join(dir, "output.dat"))).not.toThrow();
    const other = path.join(dir, "other.dat");
    fs.writeFileSync(other, "another file");
    expect(() => checkOutputPath(input, other)).not.toThrow();
    const copy = path.join(dir, "copy.dat");
    fs.copyFileSync(input, copy);
    expect(() => checkOutputPath(input, copy)).not.toThrow();
    expect(() => checkOutputPath(input, path.join(dir, "no-such-dir", "out.dat"))).not.toThrow();
    // A dangling symlink as output: it names no file, so it cannot be the input.
    const dangling = path.join(dir, "dangling.dat");
    fs.symlinkSync(path.join(dir, "nowhere"), dangling);
    expect(() => checkOutputPath(input, dangling)).not.toThrow();
  });

  test("a missing input is left to the reader (no refusal here)", () => {
    expect(() =>
      checkOutputPath(path.join(dir, "missing-input.dat"), path.join(dir, "missing-input.dat")),
    ).not.toThrow();
  });
});
