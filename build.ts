#!/usr/bin/env bun
/**
 * Standalone executables of the netsort CLI.
 *   bun build.ts          dist/netsort for this platform
 *   bun build.ts --all    dist/netsort-<os>-<arch>[.exe] for every release target,
 *                         plus dist/SHA256SUMS (sha256sum format, `sha256sum -c` reads it)
 *   --outdir <dir>        write there instead of dist/ (tests build into a temp dir)
 * The executables never read a .env or bunfig.toml from the directory they run in:
 * netsort runs in users' data folders, and a stray bunfig.toml there must not change it.
 */
import { mkdirSync, rmSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { type BuildInfo, gitCommit } from "./src/cli/version.ts";

const root = import.meta.dir;
const entry = join(root, "src/cli/main.ts");

/** Release targets: the Bun compile target and the file-name suffix. */
const releaseTargets = [
  { target: "bun-linux-x64", name: "netsort-linux-x64" },
  { target: "bun-linux-arm64", name: "netsort-linux-arm64" },
  { target: "bun-darwin-x64", name: "netsort-darwin-x64" },
  { target: "bun-darwin-arm64", name: "netsort-darwin-arm64" },
  { target: "bun-windows-x64", name: "netsort-windows-x64.exe" },
] as const satisfies { target: Bun.Build.CompileTarget; name: string }[];

/** Hash files in pieces of this many bytes rather than reading ~100 MB at once. */
const hashChunkBytes = 8 * 1024 * 1024;

const usage = `Usage: bun build.ts [--all] [--outdir <dir>]
  (no flag)       build dist/netsort for this platform
  --all           build ${releaseTargets.map((t) => `dist/${t.name}`).join(", ")}
                  and write dist/SHA256SUMS
  --outdir <dir>  write into <dir> instead of dist/`;

/** A path as the user would type it from here. */
function shown(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere.startsWith("..") ? path : fromHere;
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * What `netsort --version` reports about this build: the commit (null when this
 * is not a git checkout or git is missing), the date, and the target.
 */
function buildInfo(target: Bun.Build.CompileTarget | undefined, startedAt: Date): BuildInfo {
  return {
    commit: gitCommit(root),
    date: startedAt.toISOString().replace(/\.\d+Z$/, "Z"),
    target: target ?? `bun-${process.platform}-${process.arch}`,
  };
}

/** One instant for every executable of a run, so --all builds agree on their date. */
const buildStartedAt = new Date();

/** Build one executable; returns false (after printing why) when Bun reports a failure. */
async function compile(outfile: string, target?: Bun.Build.CompileTarget): Promise<boolean> {
  const startedMs = performance.now();
  let result: Bun.BuildOutput;
  try {
    result = await Bun.build({
      entrypoints: [entry],
      target: "bun",
      minify: true,
      // Precompiled bytecode: `netsort --version` starts in ~40 ms instead of ~60 ms
      // here. ESM because main.ts uses top-level await (docs/runtime-notes.md, "Compiled executables").
      bytecode: true,
      format: "esm",
      // The source map is embedded in the executable: stack traces (--verbose) name
      // src/ files and lines, not positions in minified code. Bun also writes it
      // beside the executable; that copy is not needed and is removed below.
      sourcemap: "linked",
      // src/cli/version.ts reads this identifier; from source it is undefined.
      define: { NETSORT_BUILD: JSON.stringify(buildInfo(target, buildStartedAt)) },
      throw: false,
      compile: {
        outfile,
        ...(target === undefined ? {} : { target }),
        autoloadDotenv: false,
        autoloadBunfig: false,
        autoloadTsconfig: false,
        autoloadPackageJson: false,
      },
    });
  } catch (error) {
    console.error(`build ${shown(outfile)}: ${(error as Error).message}`);
    return false;
  }
  if (!result.success) {
    console.error(`build ${shown(outfile)} failed:`);
    for (const log of result.logs) {
      const where = log.position ? `${log.position.file}:${log.position.line}: ` : "";
      console.error(`  ${where}${log.message}`);
    }
    return false;
  }
  for (const artifact of result.outputs) {
    if (artifact.kind === "sourcemap") rmSync(artifact.path, { force: true });
  }
  const size = Bun.file(outfile).size;
  const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
  console.log(`${shown(outfile).padEnd(32)} ${formatMiB(size).padStart(10)}  ${seconds} s`);
  return true;
}

async function sha256Hex(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const file = Bun.file(path);
  for (let offset = 0; offset < file.size; offset += hashChunkBytes) {
    hasher.update(await file.slice(offset, offset + hashChunkBytes).arrayBuffer());
  }
  return hasher.digest("hex");
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage);
    return 0;
  }
  let all = false;
  let distDir = join(root, "dist");
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--all") all = true;
    else if (argv[i] === "--outdir" && argv[i + 1] !== undefined && argv[i + 1] !== "")
      distDir = resolve(argv[++i]);
    else {
      console.error(`build.ts: unknown or incomplete argument ${argv[i]}\n${usage}`);
      return 2;
    }
  }
  mkdirSync(distDir, { recursive: true });
  const startedMs = performance.now();

  if (!all) {
    if (!(await compile(join(distDir, "netsort")))) return 1;
    console.log(`built in ${((performance.now() - startedMs) / 1000).toFixed(1)} s`);
    return 0;
  }

  // Sequential: each cross build holds a ~100 MB runtime in memory; two cores gain little.
  const sumsPath = join(distDir, "SHA256SUMS");
  rmSync(sumsPath, { force: true }); // never leave sums that describe an older set
  const built: string[] = [];
  let failed = 0;
  for (const { target, name } of releaseTargets) {
    const outfile = join(distDir, name);
    if (await compile(outfile, target)) built.push(outfile);
    else failed++;
  }
  if (failed > 0) {
    console.error(`${failed} of ${releaseTargets.length} builds failed; no SHA256SUMS written`);
    return 1;
  }
  const lines: string[] = [];
  for (const path of built) lines.push(`${await sha256Hex(path)}  ${basename(path)}`);
  await Bun.write(sumsPath, `${lines.join("\n")}\n`);
  console.log(`${shown(sumsPath)} written`);
  console.log(
    `built ${built.length} executables in ${((performance.now() - startedMs) / 1000).toFixed(1)} s`,
  );
  return 0;
}

process.exit(await main(process.argv.slice(2)));
