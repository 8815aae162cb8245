/**
 * How many peers of a config run on this host: they share its memory, so the
 * default --memory divides what is available among them. A host counts as
 * local when it is a loopback name or address, this machine's host name, or
 * one of its interface addresses. No name is looked up (no DNS traffic): any
 * other name counts as another machine.
 */
import { hostname, networkInterfaces } from "node:os";
import type { ClusterConfig } from "../types.ts";

function localNames(): Set<string> {
  const names = new Set(["localhost", "::1", hostname().toLowerCase()]);
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) names.add(a.address.toLowerCase());
  }
  return names;
}

export function isLocalHost(host: string, names: Set<string> = localNames()): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h.startsWith("127.") || names.has(h);
}

/** Peers of `config` on this host (at least 1: this peer). */
export function peersOnThisHost(config: ClusterConfig): number {
  const names = localNames();
  return Math.max(1, config.servers.filter((s) => isLocalHost(s.host, names)).length);
}
