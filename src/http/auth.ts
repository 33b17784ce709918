import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { HttpError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Requires `Authorization: Bearer <token>` on every route except the public ones. Tokens are
 * compared as SHA-256 digests with timingSafeEqual: constant time, whatever their lengths.
 */
export function bearerAuth(token: string, isPublic: (path: string) => boolean): Middleware {
  const expected = digest(token);
  return async (ctx, next) => {
    if (isPublic(ctx.path)) {
      await next();
      return;
    }
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
      throw new HttpError(401, 'unauthorized', 'a valid "Authorization: Bearer <token>" header is required', {
        'WWW-Authenticate': 'Bearer realm="userjoin"',
      });
    }
    await next();
  };
}
