/**
 * Load and validate the cluster config: a YAML file listing every peer,
 *   servers: [{ serverId, host, port }]
 * Every rule gives one line naming the file, the entry and the field, and exit 2
 * (UsageError), before anything listens.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { UsageError } from "./errors.ts";
import { maxConfigBytes } from "./limits.ts";
import { MAX_PEERS } from "./record.ts";
import type { ClusterConfig, ServerEntry } from "./types.ts";

const entryFields = new Set(["serverId", "host", "port"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readText(path: string): string {
  let size: number;
  try {
    const stat = statSync(path);
    if (stat.isDirectory()) throw new UsageError(`config ${path}: is a directory, not a file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`config ${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  if (size > maxConfigBytes) throw new UsageError(`config ${path}: ${size} bytes is too large for a config`);
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`config ${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
}

function parsePort(where: string, value: unknown): number {
  const text = typeof value === "number" ? String(value) : typeof value === "string" ? value.trim() : null;
  if (text === null || !/^\d+$/.test(text)) {
    throw new UsageError(
      `${where}: port must be an integer 1-65535 (a number or a quoted string), got ${JSON.stringify(value)}`,
    );
  }
  const port = Number(text);
  if (port < 1 || port > 65535) throw new UsageError(`${where}: port ${port} is outside 1-65535`);
  return port;
}

/** Validate an already-parsed document; `path` is only used in messages. */
export function validateConfig(path: string, doc: unknown): ClusterConfig {
  if (!isPlainObject(doc) || !("servers" in doc)) {
    throw new UsageError(`config ${path}: missing "servers:" list`);
  }
  const list = doc.servers;
  if (!Array.isArray(list)) throw new UsageError(`config ${path}: "servers" must be a list`);
  if (list.length === 0) throw new UsageError(`config ${path}: "servers" is empty; list at least one peer`);
  if (list.length > MAX_PEERS) {
    throw new UsageError(`config ${path}: ${list.length} servers listed; at most ${MAX_PEERS} are supported`);
  }
  const byId = new Array<ServerEntry | undefined>(list.length);
  const endpoints = new Map<string, number>();
  list.forEach((raw, index) => {
    const where = `config ${path}: servers[${index}]`;
    if (!isPlainObject(raw)) throw new UsageError(`${where}: must be a mapping {serverId, host, port}`);
    for (const key of Object.keys(raw)) {
      if (!entryFields.has(key))
        throw new UsageError(`${where}: unknown field "${key}" (expected serverId, host, port)`);
    }
    for (const key of entryFields) {
      if (raw[key] === undefined || raw[key] === null)
        throw new UsageError(`${where}: missing field "${key}"`);
    }
    const id = raw.serverId;
    if (typeof id !== "number" || !Number.isInteger(id)) {
      throw new UsageError(`${where}: serverId must be an integer, got ${JSON.stringify(id)}`);
    }
    if (id < 0 || id >= list.length) {
      throw new UsageError(
        `${where}: serverId ${id} is outside 0..${list.length - 1} (ids must be exactly 0..N-1)`,
      );
    }
    if (byId[id] !== undefined) throw new UsageError(`${where}: serverId ${id} is listed twice`);
    const host = raw.host;
    if (typeof host !== "string" || host.trim() === "") {
      throw new UsageError(`${where} (serverId ${id}): host must be a non-empty string`);
    }
    const port = parsePort(`${where} (serverId ${id})`, raw.port);
    const endpoint = `${host.trim().toLowerCase()}:${port}`;
    const other = endpoints.get(endpoint);
    if (other !== undefined) {
      throw new UsageError(
        `${where}: serverId ${id} and serverId ${other} are both on ${host.trim()}:${port}`,
      );
    }
    endpoints.set(endpoint, id);
    byId[id] = { serverId: id, host: host.trim(), port };
  });
  const servers = byId as ServerEntry[];
  return { path, servers, fingerprint: fingerprintOf(servers) };
}

/** SHA-256 of the normalised server list, as hex. Key order and YAML style do not matter. */
export function fingerprintOf(servers: ServerEntry[]): string {
  const normal = servers.map((s) => [s.serverId, s.host.toLowerCase(), s.port]);
  return createHash("sha256").update(JSON.stringify(normal)).digest("hex");
}

/** Read, parse and validate a config file. Throws UsageError (exit 2) with one line. */
export function loadConfig(path: string): ClusterConfig {
  const text = readText(path);
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch (error) {
    throw new UsageError(`config ${path}: not valid YAML (${(error as Error).message.replace(/\s+/g, " ")})`);
  }
  return validateConfig(path, doc);
}

/** The entry for `serverId`, or a UsageError naming the config. */
export function serverById(config: ClusterConfig, serverId: number): ServerEntry {
  const entry = config.servers[serverId];
  if (entry === undefined) {
    throw new UsageError(
      `config ${config.path}: serverId ${serverId} is not listed (it lists ids 0..${config.servers.length - 1})`,
    );
  }
  return entry;
}
