/**
 * Failing the mesh, in one place: the first failure is kept (later ones are
 * consequences), every connected peer is sent ABORT, and afterwards peers that
 * were not connected are told too, so every peer stops within seconds naming
 * the root cause instead of waiting for its own timeout:
 *
 * - linger: keep listening (bounded) and answer their dials with our reason;
 * - tell by dialing: when we could not listen, dial them and deliver ABORT.
 */
import { assert, errorMessage, NetsortError } from "../errors.ts";
import { lingerPollMs, lingerQuietMinMs, lingerQuietRetries } from "../limits.ts";
import { settledWithin } from "../wait.ts";
import { MismatchError } from "./handshake.ts";
import { encodeReason, type FrameType } from "./protocol.ts";

const abortedPrefix = /^peer \d+ aborted: /;

export class MeshFailure {
  error: NetsortError | null = null;
  /** Peers told of our failure (ABORT on a stream, REFUSE to their hello, or they told us). */
  readonly told = new Set<number>();
  private readonly toldAll = Promise.withResolvers<void>();
  private readonly rejected = Promise.withResolvers<never>();

  constructor(
    private readonly selfId: number,
    private readonly others: number,
  ) {
    // Nobody waits on these in every path; keep an unobserved rejection from crashing the process.
    this.rejected.promise.catch(() => {});
    if (others === 0) this.toldAll.resolve();
  }

  /** Rejects with the first failure. */
  get promise(): Promise<never> {
    return this.rejected.promise;
  }

  /** Keep the first failure; true when this call set it. */
  set(error: unknown): boolean {
    if (this.error !== null) return false;
    this.error = error instanceof NetsortError ? error : new NetsortError(errorMessage(error));
    this.rejected.reject(this.error);
    return true;
  }

  markTold(peer: number): void {
    this.told.add(peer);
    if (this.told.size >= this.others) this.toldAll.resolve();
  }

  get everyoneTold(): boolean {
    return this.told.size >= this.others;
  }

  /** ABORT / REFUSE carrying our failure, as "peer K aborted: ..." unless it came from another peer. */
  frame(type: FrameType.Abort | FrameType.Refuse): Uint8Array {
    const failure = this.error;
    assert(failure !== null, "a failure frame after a failure");
    const reason = abortedPrefix.test(failure.message)
      ? failure.message
      : `peer ${this.selfId} aborted: ${failure.message}`;
    return encodeReason(type, reason, failure instanceof MismatchError ? 2 : 1);
  }

  /**
   * Wait (at most until `endMs`) while peers may still dial us to learn why:
   * ends when all are told, or when nobody has dialed for a few retry intervals
   * (`lastHelloMs()`: when the last hello arrived).
   */
  async linger(endMs: number, retryIntervalMs: number, lastHelloMs: () => number): Promise<void> {
    const startMs = performance.now();
    const quietMs = Math.max(lingerQuietMinMs, lingerQuietRetries * retryIntervalMs);
    let timer: Timer | undefined;
    const quiet = new Promise<void>((resolve) => {
      const poll = () => {
        const now = performance.now();
        if (now >= endMs || now - Math.max(startMs, lastHelloMs()) >= quietMs) resolve();
        else timer = setTimeout(poll, lingerPollMs);
      };
      poll();
    });
    await Promise.race([this.toldAll.promise, quiet]);
    clearTimeout(timer);
  }

  /** Resolves when every peer is told, or after `waitMs`. */
  async whenAllTold(waitMs: number): Promise<void> {
    await settledWithin(this.toldAll.promise, waitMs);
  }
}
