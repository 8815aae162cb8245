/**
 * `netsort --version`: version, commit, build date, target and Bun version, so
 * two copies on lab machines can be told apart. build.ts embeds the build facts
 * as NETSORT_BUILD at compile time; running from source asks git, if it is there.
 */
import pkg from "../../package.json" with { type: "json" };

/** What build.ts records about a build (see gitCommit for `commit`). */
export interface BuildInfo {
  /** Short commit hash, "+changes" when the tree had uncommitted edits; null without git. */
  commit: string | null;
  /** ISO 8601 UTC, seconds. */
  date: string;
  /** Bun compile target, e.g. bun-linux-x64. */
  target: string;
}

// Replaced by a literal in compiled executables (build.ts `define`); absent from source.
declare const NETSORT_BUILD: BuildInfo | undefined;

/** A git command's trimmed stdout in `dir`, or null (no git, not a checkout, any failure). */
function git(dir: string, args: string[]): string | null {
  try {
    const result = Bun.spawnSync(["git", "-C", dir, ...args], { stdout: "pipe", stderr: "ignore" });
    return result.exitCode === 0 ? result.stdout.toString().trim() : null;
  } catch {
    return null; // git is not installed
  }
}

/** The checkout's short commit, with "+changes" when tracked files differ from it; null without git. */
export function gitCommit(dir: string): string | null {
  const hash = git(dir, ["rev-parse", "--short", "HEAD"]);
  if (hash === null || hash === "") return null;
  const changes = git(dir, ["status", "--porcelain", "--untracked-files=no"]);
  return changes === null || changes === "" ? hash : `${hash}+changes`;
}

export function versionLine(): string {
  if (typeof NETSORT_BUILD !== "undefined") {
    const b = NETSORT_BUILD;
    const commit = b.commit ?? "unknown (built without git)";
    return `netsort ${pkg.version} (commit ${commit}, built ${b.date}, target ${b.target}, Bun ${Bun.version})`;
  }
  const commit = gitCommit(import.meta.dir) ?? "unknown (no git checkout)";
  return `netsort ${pkg.version} (from source, commit ${commit}, ${process.platform}-${process.arch}, Bun ${Bun.version})`;
}

export const packageVersion: string = pkg.version;
