import { Readable } from 'node:stream';
import { backOff } from 'exponential-backoff';
import type { RetryPolicy, StoreObserver, StoreOp, StoreOutcome, TransientReason } from './retryPolicy.js';

/** The server answered with a status that says it, not the request, is in trouble (5xx, 429). */
export class ServerTroubleError extends Error {
  override name = 'ServerTroubleError';
  constructor(
    readonly status: number,
    /** The S3 error code of the answer's body, when it had one (SlowDown, InternalError, ...). */
    readonly code: string | undefined,
  ) {
    super(`the object store answered ${status}${code ? ` ${code}` : ''}`);
  }
}

/** Nothing came for requestTimeoutMs. */
export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(readonly timeoutMs: number) {
    super(`the object store sent nothing for ${timeoutMs} ms`);
  }
}

/** An answer that stopped before its end (the connection closed mid-body). */
export class AnswerCutError extends Error {
  override name = 'AnswerCutError';
  readonly code: string;
  constructor(cause: unknown) {
    super('the object store cut its answer short', { cause });
    this.code = codeOf(cause) ?? 'ECONNRESET';
  }
}

// S3 error codes (and HTTP statuses) that AWS's own SDKs retry.
const THROTTLED = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequests', 'TooManyRequestsException', 'RequestThrottled']);
const UNAVAILABLE = new Set(['ServiceUnavailable']);
const SERVER_ERROR = new Set(['InternalError']);
const TIMED_OUT = new Set(['RequestTimeout', 'RequestTimeoutException', 'ETIMEDOUT', 'ESOCKETTIMEDOUT']);
// The connection failed: refused (a restart), reset, or the name did not resolve for now.
const CONNECTION = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN']);

/** Why this error is worth another try, or null when it is not (an answer about the object, a bug). */
export function transientReason(err: unknown): TransientReason | null {
  if (err instanceof AnswerCutError) return 'cut';
  if (err instanceof ServerTroubleError) {
    if (err.code && THROTTLED.has(err.code)) return 'throttled';
    if (err.status === 429) return 'throttled';
    if (err.status === 502 || err.status === 503 || err.status === 504) return 'unavailable';
    // 501 Not Implemented says the same again, however often it is asked.
    return err.status === 501 ? null : 'server_error';
  }
  const code = codeOf(err);
  if (code === undefined) return null;
  if (THROTTLED.has(code)) return 'throttled';
  if (UNAVAILABLE.has(code)) return 'unavailable';
  if (SERVER_ERROR.has(code)) return 'server_error';
  if (TIMED_OUT.has(code)) return 'timeout';
  if (CONNECTION.has(code)) return 'connection';
  return null;
}

function codeOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Runs store requests under a policy: exponential backoff with full jitter (the
 * exponential-backoff package), bounded in tries and in time. `answered` tells the outcome of
 * an error that is an answer about one object (not found, refused), for the observer.
 */
export class Retrier {
  constructor(
    readonly policy: RetryPolicy,
    private readonly observer: StoreObserver | undefined,
    private readonly answered: (err: unknown) => StoreOutcome | null = () => null,
  ) {}

  /**
   * Calls fn until it succeeds, fails for a reason that is not transient, or the policy is
   * spent; then throws fn's last error. The time of tries that timed out does not count toward
   * the policy's maxTotalMs: each is bounded by requestTimeoutMs already, and counting it would
   * leave a timeout (30 s) no retry within the budget (10 s). maxTotalMs shortens the bound for
   * this call and counts all the time (ping answers within it). counted: false leaves the
   * request's outcome to the caller (a read's, once its body ends).
   */
  async run<T>(op: StoreOp, fn: () => Promise<T>, opts: { maxTotalMs?: number; counted?: boolean } = {}): Promise<T> {
    const { retries, baseDelayMs, maxTotalMs, requestTimeoutMs } = this.policy;
    const deadlineMs = opts.maxTotalMs ?? Number.POSITIVE_INFINITY;
    const started = performance.now();
    let timedOutMs = 0;
    const tryOnce = async (): Promise<T> => {
      const tried = performance.now();
      try {
        return await fn();
      } catch (err) {
        if (transientReason(err) === 'timeout') timedOutMs += Math.min(performance.now() - tried, requestTimeoutMs);
        throw err;
      }
    };
    try {
      const result = await backOff(tryOnce, {
        numOfAttempts: retries + 1,
        startingDelay: baseDelayMs,
        timeMultiple: 2,
        jitter: 'full',
        retry: (err: unknown, tried: number) => {
          const reason = transientReason(err);
          // The wait before the next try is a random time up to baseDelayMs * 2^(tried - 1).
          const waitEnds = performance.now() - started + baseDelayMs * 2 ** (tried - 1);
          if (!reason || tried > retries || waitEnds - timedOutMs > maxTotalMs || waitEnds > deadlineMs) return false;
          this.retried(op, reason);
          return true;
        },
      });
      if (opts.counted !== false) this.ended(op, 'ok');
      return result;
    } catch (err) {
      if (opts.counted !== false) this.ended(op, this.outcomeOf(err));
      throw err;
    }
  }

  /** How a request that failed with err ended. */
  outcomeOf(err: unknown): StoreOutcome {
    return this.answered(err) ?? (transientReason(err) ? 'gave_up' : 'error');
  }

  /** Counts one request, once, by how it ended. */
  ended(op: StoreOp, outcome: StoreOutcome): void {
    this.observer?.request(op, outcome);
  }

  retried(op: StoreOp, reason: TransientReason): void {
    this.observer?.retry(op, reason);
  }
}

/**
 * The body of a read that survives cuts: when the answer stops short of `length` bytes for a
 * transient reason, reopen(offset) asks for the rest (a Range request) and the stream goes on
 * from there. An answer that ends cleanly but short (one without Content-Length whose
 * connection closed) is a cut too; one that fails once all `length` bytes came (a chunked
 * answer without its last chunk) is complete: asking for bytes past the end would be refused.
 * Without a length, only an error is a cut. A read resumes at most policy.retries times, each
 * reopening retried on its own; resumes count as retries only. The read counts as one request
 * when its body ends: ok when it all came (or its reader stopped early), else how it failed.
 * Resuming rather than buffering keeps a read's memory flat: photos are streamed to clients.
 */
export function resumingBody(first: Readable, retrier: Retrier, reopen: (offset: number) => Promise<Readable>, length?: number): Readable {
  async function* chunks() {
    let body = first;
    let offset = 0;
    let outcome: StoreOutcome = 'ok';
    try {
      for (let resumes = 0; ; resumes++) {
        let err: unknown;
        try {
          for await (const chunk of body as AsyncIterable<Buffer>) {
            offset += chunk.length;
            yield chunk;
          }
          if (length === undefined || offset >= length) return;
          err = new AnswerCutError(new Error(`the answer ended after ${offset} of ${length} bytes`));
        } catch (thrown) {
          if (length !== undefined && offset >= length) return;
          err = thrown;
        }
        body.destroy();
        // Mid-body, a connection that fails has cut the answer.
        const reason = transientReason(err) === 'connection' ? 'cut' : transientReason(err);
        if (!reason || resumes >= retrier.policy.retries) throw reason === 'cut' && !(err instanceof AnswerCutError) ? new AnswerCutError(err) : err;
        retrier.retried('read', reason);
        body = await retrier.run('read', () => reopen(offset), { counted: false });
      }
    } catch (err) {
      outcome = retrier.outcomeOf(err);
      throw err;
    } finally {
      body.destroy();
      retrier.ended('read', outcome);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}
