/**
 * Both fuzz tests (protocol-fuzz, seal-fuzz) run their fuzzing in a worker, so a
 * hang is caught: this runs the test file itself as a worker with `data` and
 * returns the report it posts, or throws if it reports nothing within
 * `deadlineMs`. The worker is terminated either way.
 */
import { Worker } from "node:worker_threads";

export async function reportFromWorker<T>(fileUrl: string, data: unknown, deadlineMs: number): Promise<T> {
  const worker = new Worker(new URL(fileUrl), { workerData: data });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      new Promise<T>((resolve, reject) => {
        worker.on("message", resolve);
        worker.on("error", reject);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the fuzz worker did not report within ${deadlineMs} ms`)),
          deadlineMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}
