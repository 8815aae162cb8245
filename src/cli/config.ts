/**
 * `netsort config <configFile> [--lines | --json]`: validate a cluster config and
 * list its peers. The table is for people; `--lines` is for scripts
 * (scripts/launch.sh reads it), so it prints exactly `<serverId> <host> <port>`
 * per peer and nothing else; `--json` is the same facts as one JSON document.
 */
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { rangeEnd, rangeStart } from "../record.ts";
import type { ClusterConfig } from "../types.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";

/** Ownership prefixes are 48 bits: 12 hex digits. */
const prefixHexDigits = 12;

const args = {
  positionals: [
    { name: "configFile", description: "Cluster config (YAML: servers: [{serverId, host, port}])" },
  ],
  flags: {
    lines: {
      type: "boolean",
      description: "Print one `<serverId> <host> <port>` line per peer, nothing else",
    },
    json: { type: "boolean", description: "Print the peers, key ranges and fingerprint as JSON on stdout" },
    ...logFlags,
  },
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

/** Each peer with the inclusive range of 48-bit key prefixes it owns, in hex. */
function peerRanges(config: ClusterConfig) {
  const peers = config.servers.length;
  return config.servers.map((s) => ({
    serverId: s.serverId,
    host: s.host,
    port: s.port,
    firstPrefix: hexPrefix(rangeStart(s.serverId, peers)),
    lastPrefix: hexPrefix(rangeEnd(s.serverId, peers) - 1),
  }));
}

/** The JSON document of --json. */
function summary(config: ClusterConfig) {
  return { path: config.path, peers: peerRanges(config), fingerprint: config.fingerprint };
}

/** The human table: id, endpoint, and the key prefix range each peer owns. */
function table(config: ClusterConfig): string[] {
  const peers = config.servers.length;
  const rows = peerRanges(config).map((p) => [
    String(p.serverId),
    `${p.host}:${p.port}`,
    `${p.firstPrefix}..${p.lastPrefix}`,
  ]);
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

export default defineTableCommand({
  name: "config",
  summary: "Validate a cluster config and list its peers",
  args,
  run(a) {
    if (a.lines && a.json) throw new UsageError("config: --lines and --json exclude each other");
    const config = loadConfig(a.configFile);
    if (a.json) console.log(JSON.stringify(summary(config), null, 2));
    else console.log((a.lines ? machineLines(config) : table(config)).join("\n"));
    return 0;
  },
});
