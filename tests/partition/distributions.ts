/**
 * Key distributions for the partition tests (one process, tests/partition/) and
 * the mesh tests with real peers (tests/mesh/sample.test.ts): the same inputs in
 * both, and one independent whole-record reference sort.
 */
import { GensortGenerator } from "../../src/tools/gensort.ts";
import { prng } from "../helpers.ts";

const R = 100;

// ---------------------------------------------------------------------------
// Distributions. `peer` makes each peer's input different (as separate gensort
// -b ranges or seeds would), `count` records each.
// ---------------------------------------------------------------------------

export function randomBytes(count: number, seed: number): Uint8Array {
  const random = prng(seed);
  const data = new Uint8Array(count * R);
  const words = new Uint32Array(data.buffer);
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32;
  return data;
}

function gensort(count: number, peer: number, options: { ascii?: boolean; skew?: boolean }): Uint8Array {
  if (count === 0) return new Uint8Array(0);
  const g = new GensortGenerator({ ...options, start: BigInt(peer) * 1_000_000n, batchRecords: count });
  return g.next(count).slice();
}

export const distributions: Record<string, (count: number, peer: number) => Uint8Array> = {
  uniform: (count, peer) => randomBytes(count, 100 + peer),
  ascii: (count, peer) => gensort(count, peer, { ascii: true }),
  skewed: (count, peer) => gensort(count, peer, { skew: true }),
  /** 90% of the records share one 6-byte prefix (as `gen --kind skew`), the rest uniform. */
  oneHotPrefix: (count, peer) => {
    const data = randomBytes(count, 200 + peer);
    const random = prng(300 + peer);
    for (let o = 0; o < data.length; o += R)
      if (random() < 0.9) data.set([0x41, 0x42, 0x43, 0x44, 0x45, 0x46], o);
    return data;
  },
  /** Every key the same; values random. */
  allEqualKeys: (count, peer) => {
    const data = randomBytes(count, 400 + peer);
    for (let o = 0; o < data.length; o += R) data.fill(0x77, o, o + 10);
    return data;
  },
  /** Five distinct keys; values random. */
  fewDistinctKeys: (count, peer) => {
    const data = randomBytes(count, 500 + peer);
    const keys = randomBytes(5, 7);
    const random = prng(600 + peer);
    for (let o = 0; o < data.length; o += R) {
      const k = Math.floor(random() * 5);
      data.set(keys.subarray(k * R, k * R + 10), o);
    }
    return data;
  },
  /** Each input already sorted: where a sample's places fall matters. */
  presorted: (count, peer) => referenceSort(randomBytes(count, 700 + peer)),
};

/**
 * Independent reference: whole records in memcmp order (first 8 bytes as two
 * numbers, then byte by byte), written here without src/.
 */
export function referenceSort(data: Uint8Array): Buffer {
  const n = data.length / R;
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = view.getUint32(i * R);
    b[i] = view.getUint32(i * R + 4);
  }
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((x, y) => {
    if (a[x] !== a[y]) return a[x] - a[y];
    if (b[x] !== b[y]) return b[x] - b[y];
    for (let k = 8; k < R; k++) {
      const d = data[x * R + k] - data[y * R + k];
      if (d !== 0) return d;
    }
    return 0;
  });
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < n; i++) out.set(data.subarray(order[i] * R, order[i] * R + R), i * R);
  return out;
}
