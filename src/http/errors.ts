import type { Middleware } from 'koa';
import { isDatabaseUnavailable, isStatementTimeout } from '../db/index.js';
import type { Logger } from '../log.js';

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
      let status = 500;
      let code = 'internal_error';
      let message = 'internal server error';
      if (err instanceof HttpError) {
        ({ status, code, message } = err);
        ctx.set(err.headers);
      } else if (isClientHttpError(err)) {
        // Errors koa and the router raise themselves (405, 501, malformed URLs) are safe to show.
        status = err.status;
        code = status === 405 ? 'method_not_allowed' : status === 501 ? 'not_implemented' : 'bad_request';
        message = err.message;
        if (err.headers) ctx.set(err.headers);
      } else if (isStatementTimeout(err) || isDatabaseUnavailable(err)) {
        const timedOut = isStatementTimeout(err);
        status = 503;
        code = timedOut ? 'database_timeout' : 'database_unavailable';
        message = timedOut ? 'the database took too long to answer; try again shortly' : 'the database is unavailable; try again shortly';
        ctx.set('Retry-After', '5');
        log.warn({ err, method: ctx.method, path: ctx.path }, `request failed: ${code}`);
      } else {
        log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      }
      // A route may have set caching headers for the answer it meant to give.
      ctx.remove('ETag');
      ctx.remove('Content-Security-Policy');
      ctx.remove('Content-Length');
      ctx.set('Cache-Control', 'no-store');
      ctx.status = status;
      ctx.type = 'application/json';
      ctx.body = { error: { code, message } };
    }
  };
}

function isClientHttpError(err: unknown): err is { status: number; message: string; headers?: Record<string, string> } {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { status?: unknown; expose?: unknown };
  return typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true;
}
