import { describe, expect, test } from "bun:test";
import { RecordChecksum } from "../../src/tools/checksum.ts";
import {
  decodePart,
  encodePart,
  globalVerdict,
  type PeerPart,
  PeerValidation,
} from "../../src/validate/validation.ts";

function records(keys: number[][], seed = 1): Uint8Array {
  const out = new Uint8Array(keys.length * 100);
  let s = seed;
  keys.forEach((key, r) => {
    for (let i = 0; i < 100; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      out[r * 100 + i] = i < 10 ? (key[i] ?? 0) : s >>> 24; // keys padded with zeros
    }
  });
  return out;
}

/** A peer's part when its input is `input` and its (already sorted) output is `output`. */
function part(input: Uint8Array, output: Uint8Array): PeerPart {
  const v = new PeerValidation();
  v.addInput(input);
  if (output.length > 0) v.addOutput(output);
  return decodePart(v.encode()); // through the wire format, as peers see it
}

const low = records([[1], [2], [2], [3]]);
const high = records([[200], [201], [250]]);

describe("globalVerdict", () => {
  test("sorted outputs holding exactly the inputs are valid; counts and checksum are the inputs'", () => {
    // Inputs are split differently from outputs: only the totals must agree.
    const v = globalVerdict([part(high, low), part(low, high)]);
    expect(v.ok).toBe(true);
    expect(v.summary?.records).toBe(7n);
    expect(v.summary?.dups).toBe(1n);
    const c = new RecordChecksum();
    c.add(low);
    c.add(high);
    expect(v.inputChecksum).toBe(c.value);
    expect(v.lines.at(-1)).toStartWith("VALID");
  });

  test("outputs out of order across peers are invalid, naming the first unordered record", () => {
    const v = globalVerdict([part(low, high), part(high, low)]);
    expect(v.ok).toBe(false);
    expect(v.problem).toContain("1 unordered records, the first at record 3");
  });

  test("a lost record or a changed value is found", () => {
    const lost = globalVerdict([part(low, low.subarray(0, 300)), part(high, high)]);
    expect(lost.problem).toBe("outputs hold 6 records, inputs 7");
    const changed = high.slice();
    changed[50] ^= 1;
    const v = globalVerdict([part(low, low), part(high, changed)]);
    expect(v.problem).toContain("differs from input checksum");
  });

  test("empty partitions are skipped; all empty is valid with 0 records", () => {
    expect(globalVerdict([part(low, new Uint8Array(0)), part(new Uint8Array(0), low)]).ok).toBe(true);
    const none = globalVerdict([
      part(new Uint8Array(0), new Uint8Array(0)),
      part(new Uint8Array(0), new Uint8Array(0)),
    ]);
    expect(none.ok).toBe(true);
    expect(none.lines[0]).toBe("Records: 0");
  });

  test("a part survives the wire format", () => {
    const p = part(low, high);
    expect(decodePart(encodePart(p))).toEqual(p);
  });
});
