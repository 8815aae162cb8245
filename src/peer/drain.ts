/**
 * Key-range rounds, the receiving side. Every sender routes its records in
 * rounds (src/partition/partitioner.ts) and ends each with a MARK on every
 * stream: "nothing more below this 48-bit prefix". The lowest mark over all
 * incoming streams and our own rounds is a point below which our share is
 * complete, so that part is sorted and written now, while the later rounds
 * still arrive: the disk works during the exchange instead of after it, and
 * the buckets it empties are refilled by later rounds instead of fresh memory
 * (docs/performance.md, "Key-range rounds").
 *
 * The drain runs beside readAndSend on the same event loop, giving it a turn
 * every maxBusyMs; sortAndWrite stops it first and writes the rest. It is the
 * only writer until then.
 */
import { NetsortError } from "../errors.ts";
import { END_MARK } from "../exchange/protocol.ts";
import { maxBusyMs } from "../limits.ts";
import { type Run, storeOf, timedValidation } from "./run.ts";

/** One turn of the event loop: sockets drain and receive, timers fire. */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Time spent sorting and writing, summed over pieces. */
export interface SortWriteTimes {
  sortMs: number;
  writeMs: number;
}

/**
 * Write sorted pieces in order, each as soon as it exists, giving the event
 * loop a turn at least every maxBusyMs so pings and records keep flowing.
 * The generator does the sorting: time inside next() counts as sort.
 */
export async function writeSorted(
  run: Run,
  pieces: Iterator<Uint8Array>,
  times: SortWriteTimes,
): Promise<void> {
  const { writer, validation } = run;
  let lastTurnMs = performance.now();
  while (true) {
    const askedAtMs = performance.now();
    const next = pieces.next();
    const sortedAtMs = performance.now();
    times.sortMs += sortedAtMs - askedAtMs;
    if (next.done) return;
    if (next.value.length > 0) await writer.write(next.value);
    const writtenAtMs = performance.now();
    times.writeMs += writtenAtMs - sortedAtMs;
    if (validation !== null) timedValidation(run, () => validation.addOutput(next.value));
    if (writtenAtMs - lastTurnMs > maxBusyMs) {
      await turn();
      lastTurnMs = performance.now();
    }
  }
}

export class Drain {
  /** Our own records below this are all in the store (the end of our last finished round). */
  private localMark = 0;
  /** Everything below this has been handed to the writer. */
  private drainedMark = 0;
  private wake: (() => void) | null = null;
  private stopping = false;
  private readonly loop: Promise<void>;
  /** Bytes written while records still arrived. */
  bytes = 0;
  readonly times: SortWriteTimes = { sortMs: 0, writeMs: 0 };

  constructor(private readonly run: Run) {
    run.mesh.onStreamProgress = () => this.poke();
    this.loop = this.drain();
    this.loop.catch(() => {}); // the failure went to the mesh; stop() rethrows it
  }

  /** Our own rounds up to `prefix48` have all been routed. */
  setLocalMark(prefix48: number): void {
    this.localMark = Math.max(this.localMark, prefix48);
    this.poke();
  }

  /**
   * Stop once the drain in hand (everything below its mark) is written, before
   * the final sort; rejects with a failure of the drain.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.run.mesh.onStreamProgress = null;
    this.poke();
    await this.loop;
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private async drain(): Promise<void> {
    const { mesh } = this.run;
    try {
      while (!this.stopping && mesh.error === null) {
        const mark = Math.min(this.localMark, mesh.peers > 1 ? mesh.lowestMark() : END_MARK);
        if (mark > this.drainedMark && mark < END_MARK) {
          this.drainedMark = mark;
          const store = storeOf(this.run);
          const before = this.run.writer.bytes;
          await writeSorted(this.run, store.sortedChunksBelow(mark), this.times);
          this.bytes += this.run.writer.bytes - before;
          continue;
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } catch (error) {
      // A failed write (a full disk) stops the whole job, as it would at the end.
      const failure = error instanceof NetsortError ? error : new NetsortError(String(error));
      if (mesh.error === null) mesh.fail(failure);
      throw failure;
    }
  }
}
