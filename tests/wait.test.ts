import { describe, expect, test } from "bun:test";
import { settledWithin } from "../src/wait.ts";

describe("settledWithin", () => {
  test("true when the promise resolves or rejects in time, false after the limit", async () => {
    expect(await settledWithin(Bun.sleep(5), 1_000)).toBe(true);
    expect(await settledWithin(Promise.reject(new Error("no")), 1_000)).toBe(true);
    const never = new Promise<void>(() => {});
    const fromMs = performance.now();
    expect(await settledWithin(never, 30)).toBe(false);
    const waitedMs = performance.now() - fromMs;
    expect(waitedMs).toBeGreaterThanOrEqual(25);
    expect(waitedMs).toBeLessThan(1_000);
  });

  test("a limit of 0 or less does not wait for a pending promise", async () => {
    expect(await settledWithin(new Promise<void>(() => {}), -5)).toBe(false);
  });
});
