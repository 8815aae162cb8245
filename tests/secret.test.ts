import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_USAGE, UsageError } from "../src/errors.ts";
import {
  checkSecret,
  estimateSecretBits,
  generateSecret,
  isLoopbackHost,
  loadSecret,
  minSecretEntropyBits,
  noSecretWarning,
  writeSecretFile,
} from "../src/secret.ts";
import { runNetsort } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "netsort-secret-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function secretFile(content: string | Uint8Array, mode: number): string {
  const path = join(dir, `s${fileCount++}`);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

const enc = (s: string) => new TextEncoder().encode(s);
const strong = "3f9c2b7e4a1d8f6053c7e92ab4d1f08e67a5c3b9d2e4f1a08c6b7d3e5f9a2c41";

/** The UsageError `f` throws (failing the test when it throws nothing or something else). */
function usageError(f: () => unknown): UsageError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(EXIT_USAGE);
    return error as UsageError;
  }
  throw new Error("expected a UsageError, nothing was thrown");
}

describe("checkSecret refuses weak secrets with exit 2", () => {
  const weak: Array<[string, string, RegExp]> = [
    ["short", "sunshine2024", /the secret must be 16 to 4096 bytes, got 12 \(/],
    ["15 random bytes", "x7Qp2Lk9Zr4Tm8W", /must be 16 to 4096 bytes, got 15 /],
    ["one repeated character", "a".repeat(40), /only 1 distinct character\b/],
    ["eight spaces, repeated", " ".repeat(32), /only 1 distinct/],
    ["few distinct bytes", "abcabcabcabcabcabcabcabcabcab1", /only 4 distinct characters/],
    ["a dictionary word, repeated", "sunshine2024sunshine2024", /looks guessable \(about \d+ bits/],
    ["a passphrase", "correct horse battery staple", /looks guessable/],
    ["capitalised words", "Correct-Horse-Battery-Staple-2024", /looks guessable/],
    ["a word and a sequence", "Password123456789!", /looks guessable/],
    ["the alphabet", "abcdefghijklmnopqrstuvwxyz", /looks guessable/],
    ["a keyboard row", "qwertyuiopasdfghjklzxcvbnm", /looks guessable/],
    ["a period", "aXbXcXdXeXfXgXhXiXjX", /looks guessable/],
    ["non-ASCII words", "пароль-пароль-пароль-123", /looks guessable/],
    [
      "128-bit hex: no margin under a conservative estimate",
      "d2e07855e5fc966ea134923ca074b646",
      /looks guessable/,
    ],
  ];
  for (const [what, secret, message] of weak) {
    test(what, () => {
      const error = usageError(() => checkSecret(enc(secret), "secret file x"));
      expect(error.message).toMatch(/^secret file x: /);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain(secret); // the secret itself is never echoed
    });
  }

  test("random secrets in common formats pass, never estimated above their format's capacity", () => {
    // Fixed samples (drawn once from a CSPRNG), so the test is the same on every run.
    const raw = new Uint8Array(32).map((_, i) => (i * 167 + 89) % 251);
    const cases: Array<[string, Uint8Array, number]> = [
      ["netsort secret (hex)", enc(strong), 64 * 4],
      ["openssl rand -base64 32", enc("sUbrbWYym9LK80OjqCJfF3B8q6MsI99/nyMr9rnppwE="), 44 * 6],
      ["base64url of 24 bytes", enc("tAisg2cEkKO9W7LeuAqmY3lmhXscjFIJ"), 32 * 6],
      ["32 binary bytes", raw, 32 * 8],
      ["20 printable characters", enc("Xk9#mP2$vL5@nQ8!wZ3^"), 20 * Math.log2(95)],
    ];
    for (const [what, secret, capacity] of cases) {
      expect(`${what}: ${(() => checkSecret(secret, "x"))() ?? "accepted"}`).toBe(`${what}: accepted`);
      const bits = estimateSecretBits(secret);
      expect(bits).toBeGreaterThanOrEqual(minSecretEntropyBits);
      expect(bits).toBeLessThanOrEqual(capacity + 1e-9);
    }
  });

  test("every generated secret passes with margin, and they differ", () => {
    const seen = new Set<string>();
    let lowest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 500; i++) {
      const s = generateSecret();
      expect(s).toMatch(/^[0-9a-f]{64}$/);
      checkSecret(enc(s), "generated");
      lowest = Math.min(lowest, estimateSecretBits(enc(s)));
      seen.add(s);
    }
    expect(seen.size).toBe(500);
    expect(lowest).toBeGreaterThan(minSecretEntropyBits + 10);
  });

  test("the longest secret is estimated quickly even when it is one repeated pattern", () => {
    const started = performance.now();
    for (const s of ["a".repeat(4096), "ab".repeat(2048), "abcdefgh".repeat(512)]) {
      expect(estimateSecretBits(enc(s))).toBeLessThan(64);
    }
    expect(estimateSecretBits(randomBytes(4096))).toBeGreaterThan(4096 * 7);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("loadSecret", () => {
  test("a 0600 file is read, without its trailing newline", () => {
    expect(Buffer.from(loadSecret(secretFile(`${strong}\n`, 0o600), {})!).toString()).toBe(strong);
    expect(Buffer.from(loadSecret(secretFile(`${strong}\r\n`, 0o600), {})!).toString()).toBe(strong);
    expect(Buffer.from(loadSecret(secretFile(strong, 0o400), {})!).toString()).toBe(strong);
  });

  test("a binary secret file is taken byte for byte", () => {
    const raw = Buffer.from(new Uint8Array(32).map((_, i) => (i * 167 + 89) % 251)); // last byte not a newline
    expect(Buffer.from(loadSecret(secretFile(raw, 0o600), {})!).equals(raw)).toBe(true);
  });

  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o620, 0o601]) {
    test(`a ${mode.toString(8)} file is refused, naming the mode`, () => {
      const file = secretFile(strong, mode);
      const error = usageError(() => loadSecret(file, {}));
      expect(error.message).toContain(`secret file ${file}: mode 0${mode.toString(8)}`);
      expect(error.message).toContain(`chmod 600 ${file}`);
    });
  }

  test("a missing file, a directory and an oversized file are exit 2", () => {
    expect(usageError(() => loadSecret(join(dir, "absent"), {})).message).toMatch(/cannot read \(ENOENT\)/);
    const sub = join(dir, "adir");
    mkdirSync(sub, { mode: 0o700 });
    expect(usageError(() => loadSecret(sub, {})).message).toMatch(/not a regular file/);
    const big = secretFile(randomBytes(2500).toString("hex"), 0o600);
    expect(usageError(() => loadSecret(big, {})).message).toMatch(/must be 16 to 4096 bytes, got 4099 /);
  });

  test("a weak secret in a 0600 file is still refused", () => {
    expect(usageError(() => loadSecret(secretFile("aaaaaaaaaaaaaaaaaaaa\n", 0o600), {})).message).toMatch(
      /only 1 distinct/,
    );
  });

  test("NETSORT_SECRET works, is checked the same way, and the file wins when both are given", () => {
    expect(Buffer.from(loadSecret(undefined, { NETSORT_SECRET: strong })!).toString()).toBe(strong);
    expect(loadSecret(undefined, {})).toBeNull();
    expect(loadSecret(undefined, { NETSORT_SECRET: "" })).toBeNull();
    expect(
      usageError(() => loadSecret(undefined, { NETSORT_SECRET: "hunter2hunter2hunter2" })).message,
    ).toMatch(/^NETSORT_SECRET: /);
    const other = generateSecret();
    const file = secretFile(other, 0o600);
    expect(Buffer.from(loadSecret(file, { NETSORT_SECRET: strong })!).toString()).toBe(other);
  });
});

describe("writeSecretFile and `netsort secret`", () => {
  test("creates a 0600 file holding a fresh secret that loadSecret accepts, whatever the umask", () => {
    const old = process.umask(0o000);
    try {
      const file = join(dir, "new-secret");
      writeSecretFile(file);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
      expect(loadSecret(file, {})!.length).toBe(64);
    } finally {
      process.umask(old);
    }
  });

  test("never overwrites an existing file", () => {
    const file = secretFile("keep me", 0o600);
    expect(usageError(() => writeSecretFile(file)).message).toMatch(
      /exists; netsort secret never overwrites/,
    );
    expect(readFileSync(file, "utf8")).toBe("keep me");
  });

  test("`netsort secret` writes the file, two runs give different secrets, and it never overwrites", async () => {
    const a = join(dir, "cmd-a");
    const b = join(dir, "cmd-b");
    expect((await runNetsort(["secret", a, "--quiet"])).code).toBe(0);
    expect((await runNetsort(["secret", b, "--quiet"])).code).toBe(0);
    expect(statSync(a).mode & 0o777).toBe(0o600);
    expect(readFileSync(a, "utf8")).not.toBe(readFileSync(b, "utf8"));
    const again = await runNetsort(["secret", a]);
    expect(again.code).toBe(EXIT_USAGE);
    expect(again.stderr).toMatch(/^error: .*cmd-a/m);
  });
});

describe("the no-secret warning", () => {
  test("loopback names and addresses are recognised, others are not", () => {
    for (const h of [
      "localhost",
      "LOCALHOST",
      "127.0.0.1",
      "127.1.2.3",
      "::1",
      "[::1]",
      "::ffff:127.0.0.1",
      "a.localhost",
    ]) {
      expect(`${h}: ${isLoopbackHost(h)}`).toBe(`${h}: true`);
    }
    for (const h of [
      "10.0.0.1",
      "128.0.0.1",
      "127.0.0.1.example.com",
      "example.com",
      "::2",
      "0.0.0.0",
      "host-127.0.0.1",
    ]) {
      expect(`${h}: ${isLoopbackHost(h)}`).toBe(`${h}: false`);
    }
  });

  test("warns once, naming remote hosts, only without a secret", () => {
    expect(noSecretWarning(["127.0.0.1", "localhost"], null)).toBeNull();
    expect(noSecretWarning(["10.0.0.1", "10.0.0.2"], enc(strong))).toBeNull();
    const warning = noSecretWarning(["127.0.0.1", "10.0.0.1", "10.0.0.1", "b", "c", "d"], null)!;
    expect(warning).toContain("(10.0.0.1, b, c, and 1 more)");
    expect(warning).toContain("read the records, inject records or abort the sort");
    expect(warning).toContain("netsort secret <file>");
    expect(warning.includes("\n")).toBe(false);
  });
});
