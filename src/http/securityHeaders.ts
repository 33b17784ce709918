import type { Middleware } from 'koa';

/**
 * Set first, before anything can fail, so errors and 404s carry them too. Responses hold
 * personal data: no cache (browser or proxy) may keep them. nosniff stops a browser from
 * running a JSON or CSV answer as script or HTML. CORP same-origin stops a page of another
 * origin from loading any answer as an image, script or the like (a photo's size would tell
 * it the user exists), even when no token guards the service.
 */
export function securityHeaders(): Middleware {
  return async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Cross-Origin-Resource-Policy', 'same-origin');
    await next();
  };
}
