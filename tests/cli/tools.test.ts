/** The gen / show / check commands as users run them: real processes, exit codes, output. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dir, "../..");
const main = path.join(root, "src/cli/main.ts");
const RECORD = 100;
const KEY = 10;
/** One CLI run must finish within this long. */
const runTimeoutMs = 20_000;
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-cli-tools-test-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], cwd = root): Promise<Run> {
  const proc = Bun.spawn(cmd, {
    cwd,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const timer = setTimeout(() => proc.kill(), runTimeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    proc.kill();
  }
}

function netsort(...args: string[]): Promise<Run> {
  return run(["bun", main, ...args]);
}

function file(name: string): string {
  return path.join(dir, name);
}

/** Random records made by the test itself, sorted by key when asked. */
function writeRecords(name: string, n: number, sorted: boolean): Buffer {
  const data = Buffer.alloc(n * RECORD);
  crypto.getRandomValues(data);
  const recs = Array.from({ length: n }, (_, i) => data.subarray(i * RECORD, (i + 1) * RECORD));
  if (sorted) recs.sort((a, b) => Buffer.compare(a.subarray(0, KEY), b.subarray(0, KEY)));
  const out = Buffer.concat(recs);
  fs.writeFileSync(file(name), out);
  return out;
}

describe("netsort gen", () => {
  test("human size, rounded up; -randseed before the positionals equals --seed", async () => {
    const a = await netsort("gen", file("g1"), "10 kb", "--seed", "7");
    expect(a.code).toBe(0);
    expect(fs.statSync(file("g1")).size).toBe(10_300);
    // The summary is a log line: stderr, with stdout left empty.
    expect(a.stdout).toBe("");
    expect(a.stderr).toContain("103 records");
    expect(a.stderr).toMatch(/MB\/s/);
    const b = await netsort("gen", "-randseed", "7", file("g2"), "10240");
    expect(b.code).toBe(0);
    expect(fs.readFileSync(file("g1")).equals(fs.readFileSync(file("g2")))).toBe(true);
    const c = await netsort("gen", file("g3"), "10240", "-randseed=8", "--quiet");
    expect(c.code).toBe(0);
    expect(c.stdout).toBe("");
    expect(c.stderr).toBe("");
    expect(fs.readFileSync(file("g1")).equals(fs.readFileSync(file("g3")))).toBe(false);
  }, 30_000);

  test("bad usage exits 2", async () => {
    expect((await netsort("gen", file("bad"), "100", "--kind", "zipf")).code).toBe(2);
    expect((await netsort("gen", file("bad"), "ten")).code).toBe(2);
    expect((await netsort("gen", "-randseed", "1", file("bad"))).code).toBe(2);
    expect(fs.existsSync(file("bad"))).toBe(false);
  }, 30_000);

  test('"-" as the file is refused (exit 2), with no file named "-" created', async () => {
    const r = await run(["bun", main, "gen", "-", "1kb"], dir);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("error: gen: -: records are not written to stdout; give a file name\n");
    expect(fs.existsSync(path.join(dir, "-"))).toBe(false);
  }, 30_000);
});

describe("netsort show", () => {
  test("prints the layout; a ragged file exits 2 after the whole records", async () => {
    const data = writeRecords("s1", 3, false);
    const full = Buffer.concat([data, Buffer.alloc(42)]);
    fs.writeFileSync(file("s2"), full);
    const r = await netsort("show", file("s2"));
    expect(r.code).toBe(2);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe(
      `${data.toString("hex", 200, 210)}\t${data.toString("hex", 210, 220)}...${data.toString("hex", 290, 300)}`,
    );
    expect(r.stderr).toContain(`${file("s2")} is 342 bytes`);
  }, 30_000);

  test("a reader that closes early (| head) is not an error", async () => {
    writeRecords("s3", 50_000, false);
    const r = await run([
      "bash",
      "-c",
      `bun ${main} show ${file("s3")} | head -n 2; echo "rc=\${PIPESTATUS[0]}"`,
    ]);
    expect(
      r.stdout
        .split("\n")
        .slice(0, 2)
        .every((l) => /^[0-9a-f]{20}\t[0-9a-f]{20}\.\.\.[0-9a-f]{20}$/.test(l)),
    ).toBe(true);
    expect(r.stdout).toContain("rc=0");
    expect(r.stderr).toBe("");
  }, 30_000);
});

describe("netsort check", () => {
  test("exit codes: 0 sorted, 1 unsorted or different records, 2 missing file or bad size", async () => {
    const sorted = writeRecords("c1", 500, true);
    fs.writeFileSync(file("c1a"), sorted.subarray(0, 200 * RECORD));
    fs.writeFileSync(file("c1b"), sorted.subarray(200 * RECORD));
    // Inputs: the same records shuffled over three files.
    const recs = Array.from({ length: 500 }, (_, i) =>
      sorted.subarray(i * RECORD, (i + 1) * RECORD),
    ).reverse();
    fs.writeFileSync(file("in1"), Buffer.concat(recs.slice(0, 100)));
    fs.writeFileSync(file("in2"), Buffer.concat(recs.slice(100, 300)));
    fs.writeFileSync(file("in3"), Buffer.concat(recs.slice(300)));
    writeRecords("c2", 500, false);
    fs.writeFileSync(file("c3"), Buffer.alloc(150));

    const ok = await netsort(
      "check",
      file("c1a"),
      file("c1b"),
      "--inputs",
      file("in1"),
      file("in2"),
      file("in3"),
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("OK: 500 records in 2 files");

    const swapped = await netsort("check", file("c1b"), file("c1a"));
    expect(swapped.code).toBe(1);
    expect(swapped.stdout).toContain(`${file("c1a")} record 0`);

    const fewer = await netsort(
      "check",
      file("c1a"),
      "--inputs",
      file("in1"),
      file("in2"),
      file("in3"),
      "--json",
    );
    expect(fewer.code).toBe(1);
    const json = JSON.parse(fewer.stdout);
    expect(json).toMatchObject({
      records: 200,
      inputRecords: 500,
      sorted: true,
      inputsMatch: false,
      valid: false,
    });

    expect((await netsort("check", file("c2"))).code).toBe(1);
    const ragged = await netsort("check", file("c1"), file("c3"));
    expect(ragged.code).toBe(2);
    expect(ragged.stderr).toContain(`${file("c3")} is 150 bytes`);
    expect((await netsort("check", file("missing"))).code).toBe(2);
    expect((await netsort("check", "--inputs", file("in1"))).code).toBe(2);
  }, 60_000);
});
