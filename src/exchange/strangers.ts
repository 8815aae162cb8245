/**
 * Connections that are not (yet) a peer of ours: port scanners, a peer of
 * another cluster, a hello that does not verify. They are dropped and logged,
 * at most once per strangerLogIntervalMs with a count of the rest, so a flood
 * of them cannot flood the log.
 */
import { strangerLogIntervalMs } from "../limits.ts";
import { log } from "../log.ts";

export class StrangerLog {
  private lastLogMs = Number.NEGATIVE_INFINITY;
  private unlogged = 0;

  log(message: string): void {
    const now = performance.now();
    if (now - this.lastLogMs < strangerLogIntervalMs) {
      this.unlogged++;
      return;
    }
    const more = this.unlogged > 0 ? ` (and ${this.unlogged} more since the last report)` : "";
    this.unlogged = 0;
    this.lastLogMs = now;
    log.warn(`${message}${more}`);
  }
}
