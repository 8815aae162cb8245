/**
 * Output paths that would destroy or hide the input, refused at start-up
 * before anything is opened for writing (issue 9, point 3).
 */
import { realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";

/** The file a path names after following symlinks, or null when there is none. */
function identityOf(path: string): { dev: bigint; ino: bigint } | null {
  try {
    const st = statSync(path, { bigint: true, throwIfNoEntry: false });
    return st === undefined ? null : { dev: st.dev, ino: st.ino };
  } catch {
    return null; // a symlink loop or a missing directory: not the input
  }
}

/** Where a path that may not exist yet would be created: its directory resolved, its name kept. */
function resolvedTarget(path: string): string {
  const dir = dirname(resolve(path));
  try {
    return join(realpathSync(dir), basename(path));
  } catch {
    return resolve(path); // the directory is missing: the writer reports that itself
  }
}

/**
 * Throws a UsageError (exit 2) when `outputFile` is the input: the same path, a
 * hard link or a symlink to it (same device and inode after following
 * symlinks), or, when the output does not exist, a path that resolves to the
 * input's. Call before the output is opened; reads nothing but metadata.
 */
export function checkOutputPath(inputFile: string, outputFile: string): void {
  const input = identityOf(inputFile);
  if (input === null) return; // a missing input is reported by the reader
  const output = identityOf(outputFile);
  const same =
    output !== null
      ? output.dev === input.dev && output.ino === input.ino
      : resolvedTarget(outputFile) === realpathSync(inputFile);
  if (same) {
    throw new UsageError(
      `output ${outputFile} is the input ${inputFile} (same file): the sort would replace its own input; choose another output path`,
    );
  }
}
