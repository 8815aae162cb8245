/**
 * What a peer says about itself in HELLO, computed once: the config fingerprint,
 * the settings every peer must share, and the output tag that lets peers on one
 * host notice that two of them were given the same output file.
 */
import { createHash } from "node:crypto";
import { readFileSync, realpathSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { SortOptions } from "../types.ts";
import { FLAG_SECRET, type WireSettings } from "./protocol.ts";

/** Identifies this host (boot included), so equal paths on two machines do not collide. */
function hostIdentity(): string {
  for (const file of ["/etc/machine-id", "/proc/sys/kernel/random/boot_id"]) {
    try {
      const id = readFileSync(file, "utf8").trim();
      if (id !== "") return `${id}:${hostname()}`;
    } catch {
      // not on this system: try the next
    }
  }
  return hostname();
}

/** The output's path with its directory resolved (symlinks, `..`), as the kernel will see it. */
function resolvedOutputPath(outputFile: string): string {
  const absolute = resolve(outputFile);
  try {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  } catch {
    return absolute; // the directory is checked (and reported) by the writer
  }
}

export function outputTag(outputFile: string): Uint8Array {
  const digest = createHash("sha256")
    .update(`${hostIdentity()}\0${resolvedOutputPath(outputFile)}`)
    .digest();
  return new Uint8Array(digest);
}

export function wireSettings(options: SortOptions): WireSettings {
  return {
    validate: options.validate === true,
    partition: options.partition ?? "bits",
    idleTimeoutMs: options.idleTimeoutMs,
  };
}

export function helloFlags(options: SortOptions): number {
  return options.secret === null ? 0 : FLAG_SECRET;
}

export function fingerprintBytes(configFingerprint: string): Uint8Array {
  return Uint8Array.fromHex(configFingerprint);
}

/** Why two peers' settings cannot work together, naming the flag; null when they agree. */
export function settingsMismatch(
  ours: WireSettings,
  theirs: WireSettings,
  selfId: number,
  senderId: number,
): string | null {
  const flag = (name: string, mine: unknown, other: unknown) =>
    `peers disagree on ${name}: peer ${senderId} has ${other}, peer ${selfId} has ${mine} (give every peer the same value)`;
  if (ours.validate !== theirs.validate) {
    return flag("--validate", ours.validate ? "it" : "none", theirs.validate ? "it" : "none");
  }
  if (ours.partition !== theirs.partition) return flag("--partition", ours.partition, theirs.partition);
  if (ours.idleTimeoutMs !== theirs.idleTimeoutMs) {
    return flag("--idle-timeout-ms", ours.idleTimeoutMs, theirs.idleTimeoutMs);
  }
  return null;
}
