/**
 * The mesh's one timer: deadlines (hello waits, dial retries) and a periodic
 * tick for liveness checks, with stall detection in one place.
 *
 * Why not plain setTimeout: on a 2-core machine running several peers, or a
 * peer busy in a long synchronous step, this process can be starved for whole
 * seconds. Bytes and hellos from other peers then sit unread in the kernel, and
 * a plain timer would blame them. A gap between ticks much longer than the tick
 * period means *we* stalled: every pending deadline moves by the gap, and idle
 * clocks restart from `forgiveFromMs`.
 */
import { assert } from "../errors.ts";
import { maxTickMs, minTickMs, stallTicks } from "../limits.ts";
import { log } from "../log.ts";

export interface Deadline {
  atMs: number;
  fire: () => void;
}

export class MeshClock {
  readonly tickMs: number;
  /** Idle clocks count from here at the earliest: the end of our last stall. */
  forgiveFromMs = 0;
  private readonly deadlines = new Set<Deadline>();
  private timer: Timer | null = null;
  private lastTickMs = 0;
  private stopped = false;

  /** `onTick` runs every tick after due deadlines have fired. */
  constructor(
    idleTimeoutMs: number,
    private readonly onTick: (nowMs: number) => void,
  ) {
    this.tickMs = Math.max(minTickMs, Math.min(maxTickMs, idleTimeoutMs / 4));
  }

  start(): void {
    if (this.timer !== null || this.stopped) return;
    this.lastTickMs = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** Run `fire` after `ms` of our own responsive time (stalls do not count). */
  after(ms: number, fire: () => void): Deadline {
    assert(ms >= 0, "a deadline is not in the past");
    const deadline = { atMs: performance.now() + ms, fire };
    this.deadlines.add(deadline);
    this.start();
    return deadline;
  }

  cancel(deadline: Deadline | undefined | null): void {
    if (deadline) this.deadlines.delete(deadline);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.deadlines.clear();
  }

  private tick(): void {
    const now = performance.now();
    const gapMs = now - this.lastTickMs;
    this.lastTickMs = now;
    if (gapMs > stallTicks * this.tickMs) {
      for (const d of this.deadlines) d.atMs += gapMs;
      this.forgiveFromMs = now;
      log.debug(`event loop stalled for ${Math.round(gapMs)} ms; idle and hello clocks restarted`);
    }
    for (const d of [...this.deadlines]) {
      if (this.stopped) return;
      if (now >= d.atMs) {
        this.deadlines.delete(d);
        d.fire();
      }
    }
    if (!this.stopped) this.onTick(now);
  }
}
