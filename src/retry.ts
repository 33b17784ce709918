export interface RetryOptions {
  /** What we wait for, for the log line, e.g. "PostgreSQL". */
  what: string;
  /** Give up after this long; Infinity waits forever. */
  timeoutMs: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
  onRetry?: (info: { what: string; attempt: number; delayMs: number; error: string }) => void;
  signal?: AbortSignal;
}

/**
 * Retries fn with exponential backoff. Used at start-up, where in docker-compose a dependency
 * may come up after us: waiting beats crash-looping.
 */
export async function retry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = opts.initialDelayMs ?? 250;
  const maxDelay = opts.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      if (opts.signal?.aborted || Date.now() + delay > deadline) {
        throw new Error(`gave up waiting for ${opts.what} after ${attempt} attempts: ${error}`, { cause: err });
      }
      opts.onRetry?.({ what: opts.what, attempt, delayMs: delay, error });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, maxDelay);
    }
  }
}
