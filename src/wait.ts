/**
 * The one bounded wait: a promise, or the end of `limitMs`, whichever comes
 * first. Every wait of the mesh that must not outlive a bound goes through it,
 * so each clears its own timer.
 */

/** Resolves with true when `promise` settled in time (its rejection counts as settled), false after `limitMs`. */
export async function settledWithin(promise: Promise<unknown>, limitMs: number): Promise<boolean> {
  let timer: Timer | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, limitMs));
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
