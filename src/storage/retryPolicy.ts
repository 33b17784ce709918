// Types and defaults only: config.ts and the folder store load this without the retry library.

/** How a store request that fails for a transient reason is tried again (STORE_RETRY_* settings). */
export interface RetryPolicy {
  /** Tries after the first one. */
  retries: number;
  /** The first wait is up to this long; each retry doubles it. The wait is a random time up to it (full jitter). */
  baseDelayMs: number;
  /**
   * No retry starts whose wait could end later than this after the first try began, the time
   * of tries that timed out not counted (each is bounded by requestTimeoutMs).
   */
  maxTotalMs: number;
  /** A request that receives nothing for this long is abandoned, and counts as transient. */
  requestTimeoutMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 6, baseDelayMs: 100, maxTotalMs: 10_000, requestTimeoutMs: 30_000 };

/** What a store request was for: the `op` label of the store metrics. */
export type StoreOp = 'list' | 'stat' | 'read' | 'write' | 'bucket' | 'notify';
/** Why a try failed but may succeed again: the `reason` label of the retry counter. */
export type TransientReason = 'throttled' | 'unavailable' | 'server_error' | 'connection' | 'cut' | 'timeout';
/**
 * How a request ended, its retries included. not_found and refused are answers about one
 * object; gave_up is a transient failure that outlasted the policy; error is anything else.
 */
export type StoreOutcome = 'ok' | 'not_found' | 'refused' | 'gave_up' | 'error';

/**
 * Told of each request, once, and of each retry, e.g. to count them (src/metrics.ts). A read is
 * told once its body ends; its resumes after a cut are retries.
 */
export interface StoreObserver {
  request(op: StoreOp, outcome: StoreOutcome): void;
  retry(op: StoreOp, reason: TransientReason): void;
}

/** What createStore takes besides the store's address. */
export interface StoreOptions {
  /** Default: DEFAULT_RETRY_POLICY. */
  retry?: RetryPolicy;
  observer?: StoreObserver;
}
