/**
 * The 128-bit linear congruential generator of gensort 1.5 (rand16.c):
 * X(k+1) = (A * X(k) + C) mod 2^128, X(0) = 0. Record n of gensort's stream is
 * built from X(n+1) (and, for binary records, the nine numbers after it).
 *
 * BigInt is used only to jump to a start record (once per run); the per-record
 * step works on six 24-bit limbs held in doubles, because BigInt arithmetic costs
 * microseconds per operation and the step runs millions of times per second.
 */
import { assert } from "../errors.ts";

export const LCG_A = 0x2360ed051fc65da44385df649fccf645n;
export const LCG_C = 0x4a696d47726179524950202020202001n;
export const MASK_128 = (1n << 128n) - 1n;

/**
 * X(n): the generator's value after n steps from 0, by composing the affine map
 * f(x) = A x + C with itself (repeated squaring), so any n up to 2^128 - 1 takes
 * at most 128 squarings. The period is exactly 2^128 (A = 1 mod 4, C odd).
 */
export function lcgAt(n: bigint): bigint {
  assert(n >= 0n && n <= MASK_128, "lcgAt: n must be in [0, 2^128)");
  let resultA = 1n;
  let resultC = 0n;
  let powA = LCG_A;
  let powC = LCG_C;
  let rest = n;
  while (rest > 0n) {
    if ((rest & 1n) === 1n) {
      // result = pow o result; powers of one map commute, so the order is free.
      resultC = (powA * resultC + powC) & MASK_128;
      resultA = (powA * resultA) & MASK_128;
    }
    powC = (powA * powC + powC) & MASK_128;
    powA = (powA * powA) & MASK_128;
    rest >>= 1n;
  }
  return resultC; // f^n(0) = resultA * 0 + resultC
}

// Hot-path constants are plain literals: JSC did not fold `2 ** 24` here and the
// step ran 10x slower (~200 ns instead of ~20 ns).
const LIMB_BITS = 24;
const LIMB = 16777216;
const LIMB_MASK = 0xffffff;

function limbsOf(x: bigint): number[] {
  const limbs: number[] = [];
  for (let i = 0; i < 6; i++) limbs.push(Number((x >> BigInt(LIMB_BITS * i)) & BigInt(LIMB_MASK)));
  return limbs;
}

// The limbs of A and C as literals (checked against the BigInt constants below).
const A0 = 0xccf645;
const A1 = 0xdf649f;
const A2 = 0xa44385;
const A3 = 0x1fc65d;
const A4 = 0x60ed05;
const A5 = 0x23;
const C0 = 0x202001;
const C1 = 0x202020;
const C2 = 0x524950;
const C3 = 0x726179;
const C4 = 0x696d47;
const C5 = 0x4a;
assert(limbsOf(LCG_A).join() === [A0, A1, A2, A3, A4, A5].join(), "limbs of LCG_A");
assert(limbsOf(LCG_C).join() === [C0, C1, C2, C3, C4, C5].join(), "limbs of LCG_C");

/**
 * One generator state as six 24-bit limbs: l0 holds bits 0..23, ..., l5 bits
 * 120..127. Column sums of at most six 48-bit products stay below 2^53, so plain
 * double arithmetic is exact. The byte layout of the limbs suits gensort: the
 * "top 80 bits" (key bytes) are l5 (8 bits), l4, l3, l2 (24 bits each).
 */
export class Lcg128 {
  l0 = 0;
  l1 = 0;
  l2 = 0;
  l3 = 0;
  l4 = 0;
  l5 = 0;

  constructor(x: bigint = 0n) {
    this.set(x);
  }

  set(x: bigint): void {
    assert(x >= 0n && x <= MASK_128, "Lcg128: value must be in [0, 2^128)");
    const limbs = limbsOf(x);
    this.l0 = limbs[0] | 0;
    this.l1 = limbs[1] | 0;
    this.l2 = limbs[2] | 0;
    this.l3 = limbs[3] | 0;
    this.l4 = limbs[4] | 0;
    this.l5 = limbs[5] | 0;
  }

  get value(): bigint {
    let x = 0n;
    const limbs = [this.l0, this.l1, this.l2, this.l3, this.l4, this.l5];
    for (let i = 5; i >= 0; i--) x = (x << BigInt(LIMB_BITS)) | BigInt(limbs[i]);
    return x;
  }

  /** X <- (A X + C) mod 2^128. */
  step(): void {
    const x0 = this.l0;
    const x1 = this.l1;
    const x2 = this.l2;
    const x3 = this.l3;
    const x4 = this.l4;
    const x5 = this.l5;
    let col = A0 * x0 + C0;
    let carry = Math.floor(col / LIMB);
    this.l0 = col - carry * LIMB;
    col = A0 * x1 + A1 * x0 + C1 + carry;
    carry = Math.floor(col / LIMB);
    this.l1 = col - carry * LIMB;
    col = A0 * x2 + A1 * x1 + A2 * x0 + C2 + carry;
    carry = Math.floor(col / LIMB);
    this.l2 = col - carry * LIMB;
    col = A0 * x3 + A1 * x2 + A2 * x1 + A3 * x0 + C3 + carry;
    carry = Math.floor(col / LIMB);
    this.l3 = col - carry * LIMB;
    col = A0 * x4 + A1 * x3 + A2 * x2 + A3 * x1 + A4 * x0 + C4 + carry;
    carry = Math.floor(col / LIMB);
    this.l4 = col - carry * LIMB;
    // Only the low 8 bits of the top column survive mod 2^128, so 32-bit
    // wrapping products (Math.imul) are enough there.
    this.l5 =
      (Math.imul(A0, x5) +
        Math.imul(A1, x4) +
        Math.imul(A2, x3) +
        Math.imul(A3, x2) +
        Math.imul(A4, x1) +
        Math.imul(A5, x0) +
        C5 +
        carry) &
      0xff;
  }

  /** Upper 32 bits of the upper 64-bit half (bits 96..127). */
  get hiHigh(): number {
    return this.l5 * LIMB + this.l4;
  }

  /** Lower 32 bits of the upper 64-bit half (bits 64..95). */
  get hiLow(): number {
    return this.l3 * 256 + (this.l2 >>> 16);
  }

  /** Upper 32 bits of the lower 64-bit half (bits 32..63). */
  get loHigh(): number {
    return (this.l2 & 0xffff) * 65536 + (this.l1 >>> 8);
  }

  /** Lower 32 bits of the lower 64-bit half (bits 0..31). */
  get loLow(): number {
    return (this.l1 & 0xff) * LIMB + this.l0;
  }
}
