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
   * spent; then throws fn's last error. maxTotalMs shortens the policy's for this call.
   */
  async run<T>(op: StoreOp, fn: () => Promise<T>, opts: { maxTotalMs?: number } = {}): Promise<T> {
    const { retries, baseDelayMs } = this.policy;
    const budgetMs = Math.min(this.policy.maxTotalMs, opts.maxTotalMs ?? Number.POSITIVE_INFINITY);
    const started = performance.now();
    try {
      const result = await backOff(fn, {
        numOfAttempts: retries + 1,
        startingDelay: baseDelayMs,
        timeMultiple: 2,
        jitter: 'full',
        retry: (err: unknown, tried: number) => {
          const reason = transientReason(err);
          // The wait before the next try is a random time up to baseDelayMs * 2^(tried - 1).
          if (!reason || tried > retries || performance.now() - started + baseDelayMs * 2 ** (tried - 1) > budgetMs) return false;
          this.retried(op, reason);
          return true;
        },
      });
      this.observer?.request(op, 'ok');
      return result;
    } catch (err) {
      this.observer?.request(op, this.answered(err) ?? (transientReason(err) ? 'gave_up' : 'error'));
      throw err;
    }
  }

  retried(op: StoreOp, reason: TransientReason): void {
    this.observer?.retry(op, reason);
  }
}

/**
 * The body of a read that survives cuts: when the answer stops mid-body for a transient
 * reason, reopen(offset) asks for the rest (a Range request) and the stream goes on from
 * there. A read resumes at most policy.retries times, each reopening retried on its own.
 * Resuming rather than buffering keeps a read's memory flat: photos are streamed to clients.
 */
export function resumingBody(first: Readable, retrier: Retrier, reopen: (offset: number) => Promise<Readable>): Readable {
  async function* chunks() {
    let body = first;
    let offset = 0;
    for (let resumes = 0; ; resumes++) {
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          offset += chunk.length;
          yield chunk;
        }
        return;
      } catch (err) {
        body.destroy();
        // Mid-body, a connection that fails has cut the answer.
        const reason = transientReason(err) === 'connection' ? 'cut' : transientReason(err);
        if (!reason || resumes >= retrier.policy.retries) throw reason === 'cut' && !(err instanceof AnswerCutError) ? new AnswerCutError(err) : err;
        retrier.retried('read', reason);
        body = await retrier.run('read', () => reopen(offset));
      }
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}
