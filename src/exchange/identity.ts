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
import type { HelloRefusal, LocalIdentity } from "./handshake.ts";
import { FLAG_SECRET, type Hello, type WireSettings } from "./protocol.ts";

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
function settingsMismatch(
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

/** What the listener knows when it judges a hello, besides its own identity. */
export interface HelloContext {
  configPath: string;
  outputFile: string;
  /** Our host:port, for messages. */
  endpoint: string;
  /** A stream from the hello's sender is open already. */
  alreadyConnected: boolean;
}

/**
 * Why a hello must be refused, and what it says about the cluster (see
 * HelloRefusal), or null to go on. Checked in this order: config, membership,
 * receiver, settings, output file, a second stream.
 */
export function helloRefusal(local: LocalIdentity, h: Hello, c: HelloContext): HelloRefusal | null {
  const selfId = local.serverId;
  const ours = local.hello;
  if (h.fingerprint.toHex() !== ours.fingerprint.toHex()) {
    return {
      reason: `configs differ: peer ${h.senderId} has config fingerprint ${h.fingerprint.toHex().slice(0, 16)}, peer ${selfId} has ${ours.fingerprint.toHex().slice(0, 16)} (${c.configPath}); give every peer the same config file`,
      mismatch: "unless-up",
    };
  }
  if (h.peers !== local.peers || h.senderId >= local.peers) {
    // The same config, but an id it does not list: a peer of ours started with a wrong id.
    return {
      reason: `a peer was started as peer ${h.senderId}, which is not in the config (${c.configPath} lists peers 0..${local.peers - 1})`,
      mismatch: "unless-up",
    };
  }
  if (h.receiverId !== selfId) {
    return {
      reason: `peer ${h.senderId} dialed ${c.endpoint} for peer ${h.receiverId}, but this is peer ${selfId}`,
      mismatch: "no",
    };
  }
  if (h.senderId === selfId) return { reason: `sender id ${h.senderId} is this peer's own`, mismatch: "no" };
  const settings = settingsMismatch(ours.settings, h.settings, selfId, h.senderId);
  if (settings !== null) return { reason: settings, mismatch: "now" };
  if (h.outputTag.toHex() === ours.outputTag.toHex()) {
    return {
      reason: `peers ${h.senderId} and ${selfId} were given the same output file (${c.outputFile}) on one host: each peer needs its own`,
      mismatch: "now",
    };
  }
  if (c.alreadyConnected) return { reason: `peer ${h.senderId} is already connected`, mismatch: "no" };
  return null;
}
