/**
 * Errors users meet. Every failure that reaches the CLI is a NetsortError with
 * an exit code, so the top level can print one line and exit with the right code:
 *   0 success, 1 run-time failure (a peer, the network, the disk),
 *   2 bad usage, bad config or bad input (found before data moves where possible).
 */
export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

export type ExitCode = typeof EXIT_OK | typeof EXIT_RUNTIME | typeof EXIT_USAGE;

export class NetsortError extends Error {
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode = EXIT_RUNTIME, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetsortError";
    this.exitCode = exitCode;
  }
}

/** Bad usage, config or input: exit code 2. */
export class UsageError extends NetsortError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT_USAGE, options);
    this.name = "UsageError";
  }
}

/** The one-line text of any thrown value, for logs and abort messages. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Invariant check (TIGER_STYLE): a failed assertion is a bug, never user error. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
