/**
 * Name the JIT code in a `perf` profile of one peer run from source: turn the
 * jitdump file JSC writes (BUN_JSC_useJITDump=1, /tmp/jit-<pid>-<tid>-<random>)
 * into the /tmp/perf-<pid>.map that `perf report` reads for anonymous code, so
 * samples in our JavaScript show as "JSC-FTL: route#..." instead of "[JIT] tid N",
 * next to the kernel's and the runtime's own samples of the same threads
 * (docs/performance.md, "Profiling one peer by function, kernel included").
 *
 *   bun bench/jit-perf-map.ts /tmp/jit-<pid>-*      # prints the map's path and entry count
 *
 * `perf inject --jit` does not pick the file up: it looks for jit-<pid>.dump.
 * Names are only readable from source: the compiled binary is minified.
 */
import { readFileSync, writeFileSync } from "node:fs";

/** "JiTD" as a little-endian u32: the jitdump header's magic. */
const JITDUMP_MAGIC = 0x4a695444;
/** Record type of a code load: the only one a map needs. */
const JIT_CODE_LOAD = 0;
/** Bytes of a record's prefix (id, total size, timestamp) and of a load's fixed fields after it. */
const recordPrefixBytes = 16;
const loadFixedBytes = 40;
/** A name longer than this is cut: a guard against a corrupt file, not a limit JSC reaches. */
const maxNameBytes = 4096;

export interface CodeLoad {
  address: bigint;
  size: bigint;
  name: string;
}

/** The process id and every code load of a jitdump file's bytes. */
export function parseJitDump(bytes: Uint8Array): { pid: number; loads: CodeLoad[] } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 40 || view.getUint32(0, true) !== JITDUMP_MAGIC) {
    throw new Error("not a little-endian jitdump file (magic JiTD)");
  }
  const headerBytes = view.getUint32(8, true);
  const pid = view.getUint32(20, true);
  const loads: CodeLoad[] = [];
  for (let at = headerBytes; at + recordPrefixBytes <= bytes.length; ) {
    const id = view.getUint32(at, true);
    const total = view.getUint32(at + 4, true);
    if (total < recordPrefixBytes || at + total > bytes.length) break; // the tail of a file still being written
    if (id === JIT_CODE_LOAD && total >= recordPrefixBytes + loadFixedBytes) {
      const fields = at + recordPrefixBytes;
      const address = view.getBigUint64(fields + 16, true);
      const size = view.getBigUint64(fields + 24, true);
      const nameStart = fields + loadFixedBytes;
      let nameEnd = nameStart;
      while (nameEnd < at + total && nameEnd - nameStart < maxNameBytes && bytes[nameEnd] !== 0) nameEnd++;
      loads.push({ address, size, name: new TextDecoder().decode(bytes.subarray(nameStart, nameEnd)) });
    }
    at += total;
  }
  return { pid, loads };
}

/** perf's map format: one "START SIZE NAME" line per symbol, hex without 0x. */
export function perfMapText(loads: ReadonlyArray<CodeLoad>): string {
  return loads.map((l) => `${l.address.toString(16)} ${l.size.toString(16)} ${l.name}\n`).join("");
}

if (import.meta.main) {
  const paths = process.argv.slice(2);
  if (paths.length === 0) {
    console.error("usage: bun bench/jit-perf-map.ts /tmp/jit-<pid>-<tid>-<random> [...]");
    process.exit(2);
  }
  for (const path of paths) {
    const { pid, loads } = parseJitDump(readFileSync(path));
    const mapPath = `/tmp/perf-${pid}.map`;
    writeFileSync(mapPath, perfMapText(loads));
    console.log(`${mapPath}: ${loads.length} pieces of JIT code from ${path}`);
  }
}
