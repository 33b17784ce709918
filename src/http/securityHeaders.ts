import type { Middleware } from 'koa';

/**
 * Set first, before anything can fail, so errors and 404s carry them too. Responses hold
 * personal data: no cache (browser or proxy) may keep them. nosniff stops a browser from
 * running a JSON or CSV answer as script or HTML.
 */
export function securityHeaders(): Middleware {
  return async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Cache-Control', 'no-store');
    await next();
  };
}
