import type { Middleware } from 'koa';
import { isDatabaseUnavailable, isStatementTimeout } from '../db/index.js';
import type { Logger } from '../log.js';
import { PhotoError } from '../images/photos.js';
import { RunInProgressElsewhereError } from '../runs/coordinator.js';

/** An error meant for the client: its status, a stable code and a message safe to show. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (param: string, message: string) => new HttpError(400, 'invalid_parameter', `${param}: ${message}`);
export const notFound = (message = 'not found') => new HttpError(404, 'not_found', message);

/** What a client is told about an error, and how loudly it is logged. */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
  /** none: nothing to look into; warn: a dependency or a stored object failed; error: a bug. */
  log: 'none' | 'warn' | 'error';
}

const answer = (status: number, code: string, message: string, headers: Record<string, string> = {}, log: ErrorAnswer['log'] = 'none'): ErrorAnswer => ({
  status,
  code,
  message,
  headers,
  log,
});

const RETRY = { 'Retry-After': '5' };

/**
 * The one mapping from errors to HTTP answers: errors of the domain (a run elsewhere, a photo
 * that cannot be served, the database) as well as HttpErrors. Anything else is a 500 that
 * says nothing of its cause.
 */
export function errorAnswer(err: unknown): ErrorAnswer {
  if (err instanceof HttpError) return answer(err.status, err.code, err.message, err.headers);
  if (err instanceof RunInProgressElsewhereError) return answer(409, 'run_in_progress', err.message);
  if (err instanceof PhotoError) return photoAnswer(err);
  if (isClientHttpError(err)) {
    // Errors koa and the router raise themselves (405, 501, malformed URLs) are safe to show.
    const code = err.status === 405 ? 'method_not_allowed' : err.status === 501 ? 'not_implemented' : 'bad_request';
    return answer(err.status, code, err.message, err.headers);
  }
  if (isStatementTimeout(err)) return answer(503, 'database_timeout', 'the database took too long to answer; try again shortly', RETRY, 'warn');
  if (isDatabaseUnavailable(err)) return answer(503, 'database_unavailable', 'the database is unavailable; try again shortly', RETRY, 'warn');
  return answer(500, 'internal_error', 'internal server error', {}, 'error');
}

function photoAnswer(err: PhotoError): ErrorAnswer {
  switch (err.kind) {
    case 'gone':
      return answer(404, 'not_found', 'the photo is no longer in the store');
    case 'unusable':
      return answer(422, 'photo_unusable', err.message, {}, 'warn');
    case 'timeout':
      return answer(503, 'photo_timeout', err.message, RETRY, 'warn');
    case 'store':
      // The store's own message may name hosts and addresses.
      return answer(503, 'store_unavailable', 'the object store is unavailable; try again shortly', RETRY, 'warn');
  }
}

/**
 * The one error handler, at the top of the stack. Clients get `{ error: { code, message } }`
 * and never a stack trace or SQL; unexpected errors are logged in full and answered with 500.
 */
export function errorMiddleware(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw notFound(`no route for ${ctx.method} ${ctx.path}`);
    } catch (err) {
      const reply = errorAnswer(err);
      if (reply.log !== 'none') {
        log[reply.log]({ err, method: ctx.method, path: ctx.path }, reply.log === 'error' ? 'request failed' : `request failed: ${reply.code}`);
      }
      // A route may have set caching headers for the answer it meant to give.
      ctx.remove('ETag');
      ctx.remove('Content-Security-Policy');
      ctx.remove('Content-Length');
      ctx.set('Cache-Control', 'no-store');
      ctx.set(reply.headers);
      ctx.status = reply.status;
      ctx.type = 'application/json';
      ctx.body = { error: { code: reply.code, message: reply.message } };
    }
  };
}

function isClientHttpError(err: unknown): err is { status: number; message: string; headers?: Record<string, string> } {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { status?: unknown; expose?: unknown; name?: unknown };
  if (typeof e.status !== 'number') return false;
  // The router's 501 for a method it does not know: http-errors marks no 5xx as safe to show.
  if (e.status === 501 && e.name === 'NotImplementedError') return true;
  return e.status >= 400 && e.status < 500 && e.expose === true;
}
