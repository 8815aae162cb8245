/**
 * Dialing one peer until it answers: one DialHandshake per attempt, the next
 * attempt after a pause (the first `fastRetries` after `fastRetryMs`, because
 * peers started together are usually a few ms from listening; then every
 * --retry-ms), for as long as the owner says it may dial. The connect deadline
 * is the mesh's (src/exchange/mesh.ts), not this loop's.
 */
import { answerWaitHelloTimeouts, fastRetries, fastRetryMs } from "../limits.ts";
import { log } from "../log.ts";
import type { ServerEntry } from "../types.ts";
import type { MeshClock } from "./clock.ts";
import { type DialEvents, DialHandshake } from "./dial.ts";
import type { LocalIdentity } from "./handshake.ts";
import { endpoint } from "./link-terms.ts";

export interface RedialEvents {
  /** The handshake completed (see DialEvents.onOpen). */
  onOpen: DialEvents["onOpen"];
  /** The listener refused us or reported an abort (see DialEvents.onRejected). */
  onRejected: DialEvents["onRejected"];
  /** May we (re)dial now? */
  mayDial(): boolean;
}

export class Redialer {
  private attempt: DialHandshake | null = null;
  private attempts = 0;
  private retryTimer: Timer | null = null;

  constructor(
    private readonly local: LocalIdentity,
    private readonly peer: ServerEntry,
    private readonly clock: MeshClock,
    private readonly helloTimeoutMs: number,
    private readonly retryIntervalMs: number,
    private readonly events: RedialEvents,
  ) {}

  /** Dial now, unless an attempt is under way or a retry is scheduled. */
  start(): void {
    if (this.attempt !== null || this.retryTimer !== null || !this.events.mayDial()) return;
    const answerWaitMs = this.helloTimeoutMs * answerWaitHelloTimeouts;
    const attempt = new DialHandshake(this.local, this.peer, this.clock, answerWaitMs, {
      onOpen: (socket, rest, keys) => {
        this.attempt = null;
        this.events.onOpen(socket, rest, keys);
      },
      onRetry: (why) => {
        this.attempt = null;
        this.scheduleRetry(why);
      },
      onRejected: (error, payload) => {
        this.attempt = null;
        this.events.onRejected(error, payload);
      },
    });
    this.attempt = attempt;
    attempt.start();
  }

  /** An attempt is under way (its handshake has not ended). */
  get busy(): boolean {
    return this.attempt !== null;
  }

  /**
   * No new attempts, but the one under way may finish: after a failure it then
   * delivers our ABORT (PeerLink.onDialOpen) instead of hanging up on a
   * listener that already counts its stream as open.
   */
  stopRetrying(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** No more attempts: the one under way is abandoned, a scheduled one cancelled. */
  stop(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt?.abandon();
    this.attempt = null;
  }

  private scheduleRetry(why: string): void {
    if (!this.events.mayDial()) return;
    log.debug(`peer ${this.peer.serverId} at ${endpoint(this.peer)} not up yet (${why}); retrying`);
    this.attempts++;
    const waitMs =
      this.attempts <= fastRetries ? Math.min(fastRetryMs, this.retryIntervalMs) : this.retryIntervalMs;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, waitMs);
  }
}
