import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { HttpError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Requires `Authorization: Bearer <token>`, with one of the given tokens, on every route
 * except the exempt ones. Tokens are compared as SHA-256 digests with timingSafeEqual:
 * constant time, whatever their lengths.
 */
export function bearerAuth(tokens: string[], isPublic: (path: string) => boolean): Middleware {
  const expected = tokens.map(digest);
  return async (ctx, next) => {
    if (isPublic(ctx.path)) {
      await next();
      return;
    }
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = match ? digest(match[1]!) : null;
    // Every token is compared, so the time taken does not say which one matched.
    const ok = given !== null && expected.map((e) => timingSafeEqual(given, e)).includes(true);
    if (!ok) {
      throw new HttpError(401, 'unauthorized', 'a valid "Authorization: Bearer <token>" header is required', {
        'WWW-Authenticate': 'Bearer realm="userjoin"',
      });
    }
    await next();
  };
}
