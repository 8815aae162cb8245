/**
 * `netsort sort <serverId> <inputFile> <outputFile> <configFile>`: run one peer.
 * Also reached as plain `netsort <serverId> ...` (the course's form; see main.ts).
 */

import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
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
import { checkArgs, commonArgs, parseIntArg } from "./args.ts";

/** A secret shorter than this is refused: it would be guessable. */
const minSecretBytes = 8;
const maxSecretBytes = 4096;

const args = {
  serverId: {
    type: "positional",
    description: "This peer's serverId in the config (0..N-1)",
    required: true,
  },
  inputFile: { type: "positional", description: "Input file of 100-byte records", required: true },
  outputFile: { type: "positional", description: "Sorted output file (written atomically)", required: true },
  configFile: {
    type: "positional",
    description: "Cluster config (YAML: servers: [{serverId, host, port}])",
    required: true,
  },
  "retry-ms": {
    type: "string",
    description: `Pause between dial attempts, ms (default ${defaultRetryIntervalMs})`,
    valueHint: "ms",
  },
  "connect-timeout-ms": {
    type: "string",
    description: `Give up if the mesh is not up after this long, ms (default ${defaultConnectTimeoutMs})`,
    valueHint: "ms",
  },
  "idle-timeout-ms": {
    type: "string",
    description: `Fail when a connected peer sends nothing for this long, ms (default ${defaultIdleTimeoutMs})`,
    valueHint: "ms",
  },
  "hello-timeout-ms": {
    type: "string",
    description: `Drop a connection that does not finish its hello in this long, ms (default ${defaultHelloTimeoutMs})`,
    valueHint: "ms",
  },
  "secret-file": {
    type: "string",
    description: "File holding a shared secret; peers prove they know it (or set NETSORT_SECRET)",
    valueHint: "file",
  },
  validate: {
    type: "boolean",
    description: "Check the result across all peers (valsort summaries exchanged; peer 0 prints the verdict)",
  },
  json: { type: "boolean", description: "Print the phase timings as one JSON line on stdout at the end" },
  ...commonArgs,
} as const;

function loadSecret(file: string | undefined): Uint8Array | null {
  let text: string | undefined;
  let source: string;
  if (file !== undefined) {
    source = `secret file ${file}`;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw new UsageError(`${source}: cannot read (${(error as NodeJS.ErrnoException).code ?? error})`);
    }
  } else {
    source = "NETSORT_SECRET";
    text = process.env.NETSORT_SECRET;
    if (text === undefined || text === "") return null;
  }
  const secret = new TextEncoder().encode(text.replace(/\r?\n$/, ""));
  if (secret.length < minSecretBytes || secret.length > maxSecretBytes) {
    throw new UsageError(
      `${source}: the secret must be ${minSecretBytes} to ${maxSecretBytes} bytes, got ${secret.length}`,
    );
  }
  return secret;
}

export default defineCommand({
  meta: { name: "sort", description: "Run one peer of a distributed sort" },
  args,
  async run({ args: a, rawArgs }) {
    checkArgs("sort", rawArgs, args);
    const config = loadConfig(a.configFile);
    const serverId = parseIntArg("serverId", a.serverId, 0, MAX_PEERS - 1);
    // An id the config does not list is refused by runPeer, which first tells the listed peers.
    const timing = (flag: keyof typeof args, fallback: number, min: number) =>
      a[flag] === undefined ? fallback : parseIntArg(`--${flag}`, a[flag] as string, min, maxTimeoutMs);
    const timings = await runPeer({
      serverId,
      inputFile: a.inputFile,
      outputFile: a.outputFile,
      config,
      retryIntervalMs: timing("retry-ms", defaultRetryIntervalMs, minRetryIntervalMs),
      connectTimeoutMs: timing("connect-timeout-ms", defaultConnectTimeoutMs, 1),
      idleTimeoutMs: timing("idle-timeout-ms", defaultIdleTimeoutMs, 100),
      helloTimeoutMs: timing("hello-timeout-ms", defaultHelloTimeoutMs, 10),
      secret: loadSecret(a["secret-file"]),
      validate: a.validate === true,
    });
    if (a.json) console.log(JSON.stringify({ serverId, ...timings }));
    return 0;
  },
});
