import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  combineSummaries,
  decodeSummary,
  encodeSummary,
  firstUnorderedText,
  isOrdered,
  MSG_NO_RECORDS,
  MSG_PARTIAL_RECORD,
  MSG_PARTIAL_SUMMARY,
  RecordSummarizer,
  SUMMARY_BYTES,
  type Summary,
  summarizeFile,
  summarizeSummaryFile,
  ValsortError,
  verdictText,
} from "../../src/tools/valsort.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/gensort-1.5");
let dir = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "netsort-valsort-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function fixture(name: string): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(join(FIXTURES, name)).arrayBuffer());
}

function temp(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Run like the valsort CLI: the full stderr text and the exit status. */
function valsortText(run: (onFirstUnordered: (i: bigint) => void) => Summary): {
  text: string;
  exit: number;
} {
  let text = "";
  try {
    const summary = run((i) => {
      text += firstUnorderedText(i);
    });
    return { text: text + verdictText(summary), exit: isOrdered(summary) ? 0 : 1 };
  } catch (error) {
    if (!(error instanceof ValsortError)) throw error;
    return { text: `${text}${error.message}\n`, exit: 1 };
  }
}

/** outputs.txt blocks: "$ valsort [-s] FILE", its stderr lines, "[exit N]". */
async function expectedRuns(): Promise<{ summaries: boolean; file: string; text: string; exit: number }[]> {
  const outputs = await Bun.file(join(FIXTURES, "outputs.txt")).text();
  const runs = [];
  for (const m of outputs.matchAll(/^\$ valsort (-s )?(\S+)\n([\s\S]*?)\[exit (\d)\]$/gm)) {
    runs.push({ summaries: m[1] !== undefined, file: m[2], text: m[3], exit: Number(m[4]) });
  }
  return runs;
}

/** The records valsort's partitions were made of (VECTORS.md): md5s checked, so they are the same bytes. */
async function derived(): Promise<{ out0: Uint8Array; out1: Uint8Array; part0: Uint8Array }> {
  const sorted = await fixture("f1000.sorted.bin");
  const low: Uint8Array[] = [];
  const high: Uint8Array[] = [];
  for (let at = 0; at < sorted.length; at += 100)
    (sorted[at] < 0x80 ? low : high).push(sorted.subarray(at, at + 100));
  const out0 = Buffer.concat(low);
  const out1 = Buffer.concat(high);
  const part0 = (await fixture("f1000.bin")).slice(0, 50_000);
  const md5 = (b: Uint8Array) => new Bun.CryptoHasher("md5").update(b).digest("hex");
  expect(md5(out0)).toBe("6848c7df2232c4fcf147daa8954ef14f");
  expect(md5(out1)).toBe("fd179479aaff26d7d32d588ab2c3d0b6");
  expect(md5(part0)).toBe("a7711f803bb0b2fb5cfc39ac954413fa");
  return { out0, out1, part0 };
}

/** Independent reference: valsort's rules applied with Buffer.compare on key slices. */
function reference(records: Uint8Array): { firstUnordered: bigint; unordered: bigint; dups: bigint } {
  const buf = Buffer.from(records.buffer, records.byteOffset, records.length);
  let firstUnordered = 0n;
  let unordered = 0n;
  let dups = 0n;
  for (let i = 1; i < records.length / 100; i++) {
    const c = buf.compare(buf, i * 100, i * 100 + 10, (i - 1) * 100, (i - 1) * 100 + 10);
    if (c === 0) dups++;
    if (c > 0) {
      unordered++;
      if (firstUnordered === 0n) firstUnordered = BigInt(i);
    }
  }
  return { firstUnordered, unordered, dups };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

function records(bytes: Uint8Array): Uint8Array[] {
  const list = [];
  for (let at = 0; at < bytes.length; at += 100) list.push(bytes.subarray(at, at + 100));
  return list;
}

describe("valsort on the reference files (outputs.txt)", () => {
  test("text and exit status of every run, single files and -s", async () => {
    const runs = await expectedRuns();
    expect(runs.length).toBe(13);
    const { out0, out1 } = await derived();
    const paths: Record<string, string> = {
      "out0.bin": temp("out0.bin", out0),
      "out1.bin": temp("out1.bin", out1),
    };
    for (const run of runs) {
      const path = paths[run.file] ?? join(FIXTURES, run.file);
      const got = valsortText((onFirstUnordered) =>
        run.summaries
          ? summarizeSummaryFile(path, { onFirstUnordered })
          : summarizeFile(path, { onFirstUnordered }),
      );
      expect(`${run.summaries ? "-s " : ""}${run.file}\n${got.text}`).toBe(
        `${run.summaries ? "-s " : ""}${run.file}\n${run.text}`,
      );
      expect(got.exit).toBe(run.exit);
    }
  });

  test("-o summaries are byte-identical to valsort's", async () => {
    const { out0, out1, part0 } = await derived();
    for (const [bytes, name] of [
      [out0, "out0.sum"],
      [out1, "out1.sum"],
      [part0, "bad0.sum"],
    ] as const) {
      const path = temp(`for-${name}.bin`, bytes);
      expect(Buffer.from(encodeSummary(summarizeFile(path)))).toEqual(Buffer.from(await fixture(name)));
    }
  });

  test("decodeSummary reads valsort's layout; encode/decode round-trip", async () => {
    const out0 = decodeSummary(await fixture("out0.sum"));
    expect(out0.records).toBe(529n);
    expect(out0.checksum).toBe(0xfda549b06cn);
    expect(out0.unordered).toBe(0n);
    expect(out0.firstUnordered).toBe(0n);
    const sorted = await fixture("f1000.sorted.bin");
    expect(Buffer.from(out0.firstRecord)).toEqual(Buffer.from(sorted.subarray(0, 100)));
    const bad0 = decodeSummary(await fixture("bad0.sum"));
    expect(bad0.firstUnordered).toBe(2n);
    expect(encodeSummary(decodeSummary(encodeSummary(bad0)))).toEqual(encodeSummary(bad0));
    const huge = { ...bad0, checksum: (1n << 128n) - 1n, records: (1n << 64n) + 7n };
    expect(decodeSummary(encodeSummary(huge))).toEqual(huge);
    expect(SUMMARY_BYTES).toBe(280);
  });

  test("combineSummaries equals -s over the concatenated file", async () => {
    for (const name of ["all.sum", "bad.sum", "dupsum.sum", "wrongorder.sum"]) {
      const bytes = await fixture(name);
      const parts = [0, 280].map((at) => decodeSummary(bytes, at));
      expect(combineSummaries(parts)).toEqual(summarizeSummaryFile(join(FIXTURES, name)));
    }
  });
});

describe("valsort on made-up files", () => {
  test("shuffled, with duplicates: counts match a reference, and any chunk size gives the same", async () => {
    const sorted = await fixture("f1000.sorted.bin");
    for (let trial = 0; trial < 5; trial++) {
      const list = records(sorted);
      const picked = trial === 0 ? list : shuffle(list.slice());
      // Duplicates: copies of some records right after themselves or anywhere.
      for (let d = 0; d < trial * 7; d++)
        picked.splice(Math.floor(Math.random() * picked.length), 0, list[d]);
      const bytes = Buffer.concat(picked);
      const path = temp(`made-${trial}.bin`, bytes);
      const expected = reference(bytes);
      const whole = summarizeFile(path);
      expect(whole.firstUnordered).toBe(expected.firstUnordered);
      expect(whole.unordered).toBe(expected.unordered);
      expect(whole.dups).toBe(expected.dups);
      expect(whole.records).toBe(BigInt(picked.length));
      expect(Buffer.from(whole.firstRecord)).toEqual(Buffer.from(picked[0]));
      expect(Buffer.from(whole.lastRecord)).toEqual(Buffer.from(picked[picked.length - 1]));
      for (const chunkBytes of [100, 300, 700, 12_300])
        expect(summarizeFile(path, { chunkBytes })).toEqual(whole);
    }
  });

  test("summaries of any split into partitions combine to the whole file's summary", async () => {
    const sources = [
      await fixture("f1000.sorted.bin"),
      await fixture("f1000.bin"),
      await fixture("dup1011.sorted.bin"),
    ];
    for (const bytes of sources) {
      const whole = summarizeFile(temp("whole.bin", bytes));
      for (let trial = 0; trial < 5; trial++) {
        const parts: Summary[] = [];
        const n = bytes.length / 100;
        for (let done = 0; done < n; ) {
          const take = Math.min(n - done, 1 + Math.floor(Math.random() * 300));
          const summarizer = new RecordSummarizer();
          summarizer.add(bytes, done * 100, take * 100);
          parts.push(summarizer.summary());
          done += take;
        }
        expect(combineSummaries(parts)).toEqual(whole);
        const concatenated = temp("parts.sum", Buffer.concat(parts.map(encodeSummary)));
        expect(summarizeSummaryFile(concatenated)).toEqual(whole);
      }
    }
  });

  test("a trailing partial record is an error after the whole records were checked", async () => {
    const f1000 = await fixture("f1000.bin");
    const path = temp("partial.bin", f1000.subarray(0, 350));
    const got = valsortText((onFirstUnordered) => summarizeFile(path, { onFirstUnordered }));
    expect(got).toEqual({ text: `First unordered record is record 2\n${MSG_PARTIAL_RECORD}\n`, exit: 1 });
    expect(MSG_PARTIAL_RECORD).toBe("partial record found at end");
    for (const size of [1, 99, 150, 101]) {
      expect(() => summarizeFile(temp("p.bin", f1000.subarray(0, size)), { chunkBytes: 200 })).toThrow(
        MSG_PARTIAL_RECORD,
      );
    }
  });

  test("empty files, missing files, partial summaries", async () => {
    const empty = temp("empty.bin", new Uint8Array(0));
    expect(valsortText(() => summarizeFile(empty))).toEqual({ text: `${MSG_NO_RECORDS}\n`, exit: 1 });
    expect(MSG_NO_RECORDS).toBe("there must be at least one record to be validated");
    expect(() => summarizeSummaryFile(empty)).toThrow(MSG_NO_RECORDS);
    expect(() => new RecordSummarizer().summary()).toThrow(MSG_NO_RECORDS);
    expect(() => combineSummaries([])).toThrow(MSG_NO_RECORDS);
    const missing = join(dir, "no-such-file");
    expect(() => summarizeFile(missing)).toThrow(`${missing}: No such file or directory`);
    const all = await fixture("all.sum");
    expect(() => summarizeSummaryFile(temp("cut.sum", all.subarray(0, 400)))).toThrow(MSG_PARTIAL_SUMMARY);
    expect(MSG_PARTIAL_SUMMARY).toBe("partial partition summary found at end");
  });

  test("-i compares like strcasecmp: case folded, past the key, up to a NUL", () => {
    const record = (text: string, fill = 0x41) => {
      const r = new Uint8Array(100).fill(fill);
      for (let i = 0; i < text.length; i++) r[i] = text.charCodeAt(i);
      return r;
    };
    const run = (list: Uint8Array[], caseInsensitive: boolean) => {
      const s = new RecordSummarizer({ caseInsensitive });
      s.add(Buffer.concat(list));
      return s.summary();
    };
    // "abc" vs "ABD": case-insensitively in order; by memcmp 'a' (0x61) > 'A' (0x41).
    const mixed = [record("abcdefghij"), record("ABDDEFGHIJ")];
    expect(run(mixed, true).unordered).toBe(0n);
    expect(run(mixed, false).unordered).toBe(1n);
    // Equal keys ignoring case, equal values: a duplicate.
    expect(run([record("KEYKEYKEYK"), record("keykeykeyk")], true).dups).toBe(1n);
    // Equal keys ignoring case, but the value decides (strcasecmp reads on): unordered.
    expect(run([record("KEYKEYKEYKz"), record("keykeykeykb")], true)).toMatchObject({
      dups: 0n,
      unordered: 1n,
    });
    // A NUL ends the comparison: bytes after it do not count.
    expect(run([record("ab\0zzzz", 0x7a), record("AB\0aaaa", 0x61)], true).dups).toBe(1n);
  });
});
