/** Options for {@link waitUntil}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 5000). */
  timeoutMs?: number;
  /** Pause between two evaluations of the predicate (default 10). */
  intervalMs?: number;
  /** Text of the error thrown on timeout (default "condition not met"). */
  message?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `pred` until it returns true, instead of sleeping a fixed time and hoping the
 * state has changed. A predicate that throws is treated as "not yet" so it can probe
 * resources that are still coming up; the last such error is attached to the timeout error.
 */
export async function waitUntil(
  pred: () => boolean | Promise<boolean>,
  opts: WaitOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await pred()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const text = `${opts.message ?? 'condition not met'} (waited ${timeoutMs} ms)`;
      throw lastError === undefined ? new Error(text) : new Error(text, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}
