/**
 * `netsort sort <serverId> <inputFile> <outputFile> <configFile>`: run one peer.
 * Also reached as plain `netsort <serverId> ...` (the course's form; see main.ts).
 */

import { loadConfig } from "../config.ts";
import { runPeer } from "../job.ts";
import {
  defaultConnectTimeoutMs,
  defaultHelloTimeoutMs,
  defaultIdleTimeoutMs,
  defaultRetryIntervalMs,
  maxTimeoutMs,
  minRetryIntervalMs,
} from "../limits.ts";
import { MAX_PEERS } from "../record.ts";
import { loadSecret } from "../secret.ts";
import type { SortOptions } from "../types.ts";
import { logFlags, type ParsedArgs, parseIntArg } from "./args.ts";
import { defineTableCommand } from "./command.ts";
import { peerFlags } from "./peer-flags.ts";

export const sortArgs = {
  positionals: [
    { name: "serverId", description: "This peer's serverId in the config (0..N-1)" },
    { name: "inputFile", description: "Input file of 100-byte records" },
    { name: "outputFile", description: "Sorted output file (written atomically)" },
    { name: "configFile", description: "Cluster config (YAML: servers: [{serverId, host, port}])" },
  ],
  flags: {
    "retry-ms": {
      type: "string",
      valueHint: "ms",
      description: "Pause between dial attempts",
      default: String(defaultRetryIntervalMs),
      parse: { kind: "int", min: minRetryIntervalMs, max: maxTimeoutMs },
    },
    "connect-timeout-ms": {
      type: "string",
      valueHint: "ms",
      description: "Give up if the mesh is not up after this long",
      default: String(defaultConnectTimeoutMs),
      parse: { kind: "int", min: 1, max: maxTimeoutMs },
    },
    "idle-timeout-ms": {
      type: "string",
      valueHint: "ms",
      description: "Fail when a connected peer sends nothing for this long",
      default: String(defaultIdleTimeoutMs),
      parse: { kind: "int", min: 100, max: maxTimeoutMs },
    },
    "hello-timeout-ms": {
      type: "string",
      valueHint: "ms",
      description: "Drop a connection that does not finish its hello in this long",
      default: String(defaultHelloTimeoutMs),
      parse: { kind: "int", min: 10, max: maxTimeoutMs },
    },
    ...peerFlags,
    validate: {
      type: "boolean",
      description: "Check the result across all peers (valsort summaries exchanged; peer 0 logs the verdict)",
    },
    json: { type: "boolean", description: "Print the phase timings as one JSON line on stdout at the end" },
    ...logFlags,
  },
} as const;

/** The peer's SortOptions from its parsed arguments (reads the config and the secret). */
export function toSortOptions(a: ParsedArgs<typeof sortArgs>): SortOptions {
  const config = loadConfig(a.configFile);
  const serverId = parseIntArg("sort: serverId", a.serverId, 0, MAX_PEERS - 1);
  // An id the config does not list is refused by runPeer, which first tells the listed peers.
  return {
    serverId,
    inputFile: a.inputFile,
    outputFile: a.outputFile,
    config,
    retryIntervalMs: a["retry-ms"],
    connectTimeoutMs: a["connect-timeout-ms"],
    idleTimeoutMs: a["idle-timeout-ms"],
    helloTimeoutMs: a["hello-timeout-ms"],
    secret: loadSecret(a["secret-file"]),
    validate: a.validate,
    partition: a.partition,
    memoryBytes: a.memory ?? null,
    rounds: a.rounds ?? null,
    tempDir: a["temp-dir"] ?? null,
  };
}

export default defineTableCommand({
  name: "sort",
  summary: "Run one peer of a distributed sort (also: netsort <serverId> ...)",
  alsoUsage: ["netsort <serverId> <inputFile> <outputFile> <configFile> [flags]"],
  notes: [
    "Every peer runs with the same config; outputs 0..N-1 concatenated are globally sorted.",
    "Logs go to stderr; with --json, stdout holds only the timings line.",
  ],
  args: sortArgs,
  async run(a) {
    const options = toSortOptions(a);
    const timings = await runPeer(options);
    if (a.json) console.log(JSON.stringify({ serverId: options.serverId, ...timings }));
    return 0;
  },
});
