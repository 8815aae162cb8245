import { describe, expect, test } from "bun:test";
import { LCG_A, LCG_C, Lcg128, lcgAt, MASK_128 } from "../../src/tools/rand128.ts";

/** The LCG step written straight from rand16.c's comment, in BigInt. */
function stepRef(x: bigint): bigint {
  return (
    (0x2360ed051fc65da44385df649fccf645n * x + 0x4a696d47726179524950202020202001n) & ((1n << 128n) - 1n)
  );
}

function randomBig128(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(4));
  return words.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n);
}

describe("lcgAt (jump ahead)", () => {
  test("constants are gensort's", () => {
    expect(LCG_A).toBe(0x2360ed051fc65da44385df649fccf645n);
    expect(LCG_C).toBe(0x4a696d47726179524950202020202001n);
    expect(MASK_128).toBe((1n << 128n) - 1n);
  });

  test("matches stepping one by one from 0", () => {
    let x = 0n;
    for (let n = 0; n <= 3000; n++) {
      if (n % 97 === 0 || n < 20) expect(lcgAt(BigInt(n))).toBe(x);
      x = stepRef(x);
    }
  });

  test("matches the powers-of-two table in rand16.c (Gen[i].c = X(2^i))", () => {
    // Gen[1].c, Gen[2].c, Gen[64].c and Gen[127].c as printed in rand16.c.
    expect(lcgAt(2n)).toBe(0x95e0e48262b3edfe04479485c755b646n);
    expect(lcgAt(4n)).toBe(0x882a02c315362b60765f100068b33a1cn);
    expect(lcgAt(1n << 64n)).toBe(0xf0b1944bfd71a97f0000000000000000n);
    expect(lcgAt(1n << 127n)).toBe(0x80000000000000000000000000000000n);
  });

  test("jumps compose: X(a + b) is b single steps after X(a), for random a", () => {
    for (let i = 0; i < 20; i++) {
      const a = randomBig128() >> BigInt(i * 6); // sizes from 128 bits down
      const b = BigInt(Math.floor(Math.random() * 50));
      let x = lcgAt(a);
      for (let k = 0n; k < b; k++) x = stepRef(x);
      expect(lcgAt((a + b) & MASK_128)).toBe(x);
    }
  });

  test("the period is 2^128: the step after X(2^128 - 1) is X(0) = 0", () => {
    expect(stepRef(lcgAt(MASK_128))).toBe(0n);
  });

  test("rejects numbers outside [0, 2^128)", () => {
    expect(() => lcgAt(-1n)).toThrow();
    expect(() => lcgAt(1n << 128n)).toThrow();
  });
});

describe("Lcg128 (limb arithmetic)", () => {
  const edges = [0n, 1n, MASK_128, 1n << 127n, (1n << 64n) - 1n, 1n << 64n, 0xffffffn, 0x1000000n];

  test("set/value round-trip", () => {
    for (const x of [...edges, randomBig128(), randomBig128()]) expect(new Lcg128(x).value).toBe(x);
  });

  test("step equals the BigInt step, from edge and random states", () => {
    for (const start of [...edges, randomBig128(), randomBig128(), randomBig128()]) {
      const lcg = new Lcg128(start);
      let x = start;
      for (let i = 0; i < 2000; i++) {
        lcg.step();
        x = stepRef(x);
        if (lcg.value !== x)
          throw new Error(`step ${i} from ${start.toString(16)}: ${lcg.value.toString(16)}`);
      }
    }
  });

  test("32-bit word getters", () => {
    for (const x of [...edges, randomBig128(), randomBig128()]) {
      const lcg = new Lcg128(x);
      expect(lcg.hiHigh).toBe(Number((x >> 96n) & 0xffffffffn));
      expect(lcg.hiLow).toBe(Number((x >> 64n) & 0xffffffffn));
      expect(lcg.loHigh).toBe(Number((x >> 32n) & 0xffffffffn));
      expect(lcg.loLow).toBe(Number(x & 0xffffffffn));
    }
  });
});
