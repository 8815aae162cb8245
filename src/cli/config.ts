/**
 * `netsort config <configFile> [--lines]`: validate a cluster config and list its
 * peers. The table is for people; `--lines` is for scripts (scripts/launch.sh
 * reads it), so it prints exactly `<serverId> <host> <port>` per peer and nothing else.
 */
import { defineCommand } from "citty";
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { rangeEnd, rangeStart } from "../record.ts";
import type { ClusterConfig } from "../types.ts";
import { checkArgs, commonArgs } from "./args.ts";

/** Ownership prefixes are 48 bits: 12 hex digits. */
const prefixHexDigits = 12;

const args = {
  configFile: {
    type: "positional",
    required: true,
    description: "Cluster config (YAML: servers: [{serverId, host, port}])",
  },
  lines: { type: "boolean", description: "Print one `<serverId> <host> <port>` line per peer, nothing else" },
  ...commonArgs,
} as const;

function hexPrefix(prefix: number): string {
  return prefix.toString(16).padStart(prefixHexDigits, "0");
}

/** One line per peer. A host with whitespace would split into extra fields for a reader. */
function machineLines(config: ClusterConfig): string[] {
  return config.servers.map((s) => {
    if (/\s/.test(s.host)) {
      throw new UsageError(
        `config ${config.path}: serverId ${s.serverId}: host ${JSON.stringify(s.host)} contains whitespace`,
      );
    }
    return `${s.serverId} ${s.host} ${s.port}`;
  });
}

/** The human table: id, endpoint, and the inclusive range of 48-bit key prefixes each peer owns. */
function table(config: ClusterConfig): string[] {
  const peers = config.servers.length;
  const rows = config.servers.map((s) => {
    const first = hexPrefix(rangeStart(s.serverId, peers));
    const last = hexPrefix(rangeEnd(s.serverId, peers) - 1);
    return [String(s.serverId), `${s.host}:${s.port}`, `${first}..${last}`];
  });
  const header = ["id", "host:port", "key prefix range (48 bits, hex)"];
  const widths = header.map((h, column) => Math.max(h.length, ...rows.map((row) => row[column].length)));
  const format = (row: string[]) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]))
      .join("  ")
      .trimEnd();
  return [
    `${config.path}: ${peers} peer${peers === 1 ? "" : "s"}, valid`,
    format(header),
    ...rows.map(format),
    `fingerprint ${config.fingerprint}`,
  ];
}

export default defineCommand({
  meta: { name: "config", description: "Validate a cluster config and list its peers" },
  args,
  run({ args: parsed, rawArgs }) {
    checkArgs("config", rawArgs, args);
    const config = loadConfig(parsed.configFile);
    const out = parsed.lines ? machineLines(config) : table(config);
    console.log(out.join("\n"));
    return 0;
  },
});
