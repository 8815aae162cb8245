/**
 * The shared secret: loaded from a file or NETSORT_SECRET, refused when short,
 * guessable or readable by others (all exit 2), and generated fresh by
 * `netsort secret <file>`. docs/security.md explains the rules.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { UsageError } from "./errors.ts";

/** A secret shorter than this is refused outright. */
export const minSecretBytes = 16;
/** A longer secret is refused: it is not a secret file (and the read is bounded). */
export const maxSecretBytes = 4096;
/** netsort's conservative estimate of a secret's entropy must reach this (docs/security.md). */
export const minSecretEntropyBits = 128;
/** A secret made of fewer distinct characters is refused, whatever its length. */
export const minSecretDistinctSymbols = 8;
/** `generateSecret` draws this many random bytes (256 bits) and writes them as hex. */
export const generatedSecretBytes = 32;
/** Group and other permission bits: any of them set on a secret file is refused, as ssh does for keys. */
const groupOtherModeBits = 0o077;
/** A line break after the secret is not part of it: read this many bytes past the limit to see one. */
const trailingNewlineBytes = 2;

const modeText = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;

/**
 * The secret from `file` (when given) or else from NETSORT_SECRET; null when
 * neither is set. Throws UsageError (exit 2) for an unreadable or exposed file
 * and for a secret that is short or guessable.
 */
export function loadSecret(
  file: string | undefined,
  env: Record<string, string | undefined> = process.env,
): Uint8Array | null {
  let raw: Uint8Array;
  let source: string;
  if (file !== undefined) {
    source = `secret file ${file}`;
    raw = readSecretFile(file, source);
  } else {
    source = "NETSORT_SECRET";
    const text = env.NETSORT_SECRET;
    if (text === undefined || text === "") return null;
    raw = new TextEncoder().encode(text);
  }
  const secret = stripNewline(raw);
  checkSecret(secret, source);
  return secret;
}

function readSecretFile(file: string, source: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    throw new UsageError(`${source}: cannot read (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  try {
    // Checked on the open file, so the file checked is the file read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new UsageError(`${source}: not a regular file`);
    if ((stat.mode & groupOtherModeBits) !== 0) {
      throw new UsageError(
        `${source}: mode ${modeText(stat.mode)} lets group or others read or change it; run chmod 600 ${file}`,
      );
    }
    const buf = new Uint8Array(maxSecretBytes + trailingNewlineBytes + 1);
    let fill = 0;
    while (fill < buf.length) {
      const n = readSync(fd, buf, fill, buf.length - fill, null);
      if (n === 0) break;
      fill += n;
    }
    return buf.subarray(0, fill);
  } finally {
    closeSync(fd);
  }
}

/** One trailing "\n" or "\r\n" (an editor's or `echo`'s) is not part of the secret. */
function stripNewline(raw: Uint8Array): Uint8Array {
  let end = raw.length;
  if (end > 0 && raw[end - 1] === 0x0a) {
    end--;
    if (end > 0 && raw[end - 1] === 0x0d) end--;
  }
  return raw.slice(0, end);
}

/** Throws UsageError naming `source` when the secret is too short, too long or guessable. */
export function checkSecret(secret: Uint8Array, source: string): void {
  const hint = "generate one with `netsort secret <file>`";
  if (secret.length < minSecretBytes || secret.length > maxSecretBytes) {
    throw new UsageError(
      `${source}: the secret must be ${minSecretBytes} to ${maxSecretBytes} bytes, got ${secret.length} (${hint})`,
    );
  }
  const symbols = secretSymbols(secret);
  const distinct = new Set(symbols).size;
  if (distinct < minSecretDistinctSymbols) {
    throw new UsageError(
      `${source}: the secret has only ${distinct} distinct character${distinct === 1 ? "" : "s"}; at least ${minSecretDistinctSymbols} are needed (${hint})`,
    );
  }
  const bits = estimateSecretBits(secret);
  if (bits < minSecretEntropyBits) {
    throw new UsageError(
      `${source}: the secret looks guessable (about ${Math.floor(bits)} bits of entropy by netsort's conservative estimate; at least ${minSecretEntropyBits} are needed: longer, random, no words, repeats or sequences) (${hint})`,
    );
  }
}

/** Code points when the secret is UTF-8 text, else its bytes. */
function secretSymbols(secret: Uint8Array): number[] {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(secret);
    return Array.from(text, (ch) => ch.codePointAt(0)!);
  } catch {
    return Array.from(secret);
  }
}

/** The smallest common alphabet holding every symbol: a guesser who knows the format searches only it. */
function alphabetSize(symbols: number[]): number {
  const all = (re: RegExp) => symbols.every((s) => re.test(String.fromCodePoint(s)));
  if (all(/[0-9]/)) return 10;
  if (all(/[0-9a-f]/) || all(/[0-9A-F]/)) return 16;
  if (all(/[a-z]/) || all(/[A-Z]/)) return 26;
  if (all(/[a-z0-9]/) || all(/[A-Z0-9]/)) return 36;
  if (all(/[a-zA-Z]/)) return 52;
  if (all(/[a-zA-Z0-9]/)) return 62;
  if (all(/[a-zA-Z0-9+/=_-]/)) return 64;
  if (all(/[\x20-\x7e]/)) return 95;
  return 256;
}

/** A letter run that reads like a word (all lower, all upper, or Capitalized) of at least this many letters. */
const minWordLetters = 4;
/** Bits charged per letter of a word-like run: NIST SP 800-63 (2004) Appendix A's rate for user-chosen characters. */
const wordLetterBits = 2;
/** A substring seen before counts as a repeat from this many symbols on. */
const minRepeatSymbols = 3;

/** Marks the symbols that sit in word-like letter runs. */
function wordLike(symbols: number[]): boolean[] {
  const marks = new Array<boolean>(symbols.length).fill(false);
  const isLetter = (s: number) => /\p{L}/u.test(String.fromCodePoint(s));
  let i = 0;
  while (i < symbols.length) {
    if (!isLetter(symbols[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j < symbols.length && isLetter(symbols[j])) j++;
    const run = String.fromCodePoint(...symbols.slice(i, j));
    const rest = run.slice(1);
    const word =
      run === run.toLowerCase() ||
      run === run.toUpperCase() ||
      (run[0] !== run[0].toLowerCase() && rest === rest.toLowerCase());
    if (j - i >= minWordLetters && word) marks.fill(true, i, j);
    i = j;
  }
  return marks;
}

/**
 * A deliberately low estimate of the secret's entropy in bits (docs/security.md):
 * each symbol is worth log2 of the smallest common alphabet holding the whole
 * secret, except that a symbol equal to or next to its predecessor (aaaa, 1234,
 * cba) is worth nothing, a letter in a word-like run of 4 or more is worth 2
 * bits, and a repeat of an earlier substring of 3 or more symbols is worth only
 * log2(where it starts) + log2(its length).
 */
export function estimateSecretBits(secret: Uint8Array): number {
  const symbols = secretSymbols(secret);
  const symbolBits = Math.log2(alphabetSize(symbols));
  const words = wordLike(symbols);
  const firstSeen = new Map<string, number>(); // 3-gram -> first position
  const gram = (i: number) => symbols.slice(i, i + minRepeatSymbols).join(",");
  let bits = 0;
  let i = 0;
  while (i < symbols.length) {
    const earlier = i + minRepeatSymbols <= symbols.length ? firstSeen.get(gram(i)) : undefined;
    if (earlier !== undefined) {
      let length = 0;
      while (i + length < symbols.length && symbols[earlier + length] === symbols[i + length]) length++;
      bits += Math.log2(i) + Math.log2(length);
      for (let k = i; k < i + length; k++) if (!firstSeen.has(gram(k))) firstSeen.set(gram(k), k);
      i += length;
      continue;
    }
    if (i + minRepeatSymbols <= symbols.length) firstSeen.set(gram(i), i);
    const step = i > 0 ? Math.abs(symbols[i] - symbols[i - 1]) : Number.POSITIVE_INFINITY;
    if (step <= 1) bits += 0;
    else if (words[i]) bits += wordLetterBits;
    else bits += symbolBits;
    i++;
  }
  return bits;
}

/** A fresh random secret: 32 bytes from the system CSPRNG, as 64 hex characters. */
export function generateSecret(): string {
  return randomBytes(generatedSecretBytes).toString("hex");
}

/**
 * Write a fresh secret to `path` with mode 0600. Never overwrites: an existing
 * file is a UsageError (it may be the secret a running cluster uses).
 */
export function writeSecretFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new UsageError(`${path} exists; netsort secret never overwrites a file`);
    throw new UsageError(`${path}: cannot create (${code ?? error})`);
  }
  try {
    fchmodSync(fd, 0o600); // the umask may have taken bits away; make it exactly 0600
    const bytes = new TextEncoder().encode(`${generateSecret()}\n`);
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(path);
    throw new UsageError(`${path}: cannot write (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  closeSync(fd);
}

/** True for names and addresses that stay on this machine: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice("::ffff:".length) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * The one warning a peer without a secret logs when its cluster reaches beyond
 * this machine, or null when every host is loopback (or a secret is set).
 */
export function noSecretWarning(hosts: readonly string[], secret: Uint8Array | null): string | null {
  if (secret !== null) return null;
  const remote = [...new Set(hosts.filter((h) => !isLoopbackHost(h)))];
  if (remote.length === 0) return null;
  const shown = remote.slice(0, 3).join(", ") + (remote.length > 3 ? `, and ${remote.length - 3} more` : "");
  return `no shared secret, and the config names hosts beyond this machine (${shown}): anyone who can reach the peers' ports can read the records, inject records or abort the sort. Create a secret with \`netsort secret <file>\`, copy it to every peer (mode 0600) and pass --secret-file`;
}
