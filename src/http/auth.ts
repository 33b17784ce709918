import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Access, AccessCheck } from './api.js';
import type { AuthFailureLimit } from './authFailures.js';
import { AuthFailures } from './authFailures.js';
import { HttpError } from './errors.js';
import { localOnly } from './localOnly.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export interface AccessOptions {
  apiToken: string | null;
  /** Opens the 'events' routes alone. */
  eventsToken: string | null;
  /** Opens the 'metrics' routes alone. */
  metricsToken: string | null;
  /** The service listens on loopback: without a token, only loopback Host headers are served. */
  loopback: boolean;
  /** Wrong tokens per client address, on all token-guarded routes together. */
  authFailures: AuthFailureLimit;
}

/**
 * What each access means for this service. A route whose token is set needs it; without one,
 * the loopback rules guard it. A token already stops other web pages (they cannot send the
 * header), so the browser checks matter only without one. The event webhook also takes
 * EVENTS_TOKEN, and /metrics METRICS_TOKEN; with neither token each is guarded as the rest.
 *
 * Only the event webhook takes Basic, because Ceph radosgw can send nothing else. A browser
 * sends Basic credentials it has cached on its own, to any page's requests, so Basic on the
 * API would let other web pages read data; an event only says "look at this key again".
 */
export function accessCheck(opts: AccessOptions): AccessCheck {
  const local = localOnly({ checkHost: opts.loopback });
  const failures = new AuthFailures(opts.authFailures);
  const withApi = (own: string | null) => [own, opts.apiToken].filter((t): t is string => !!t);
  const eventTokens = withApi(opts.eventsToken);
  const metricsTokens = withApi(opts.metricsToken);
  const open: Middleware = (_ctx, next) => next();
  const checks: Record<Access, Middleware> = {
    api: opts.apiToken ? tokenAuth([opts.apiToken], { failures }) : local,
    events: eventTokens.length > 0 ? tokenAuth(eventTokens, { basic: true, failures }) : local,
    metrics: metricsTokens.length > 0 ? tokenAuth(metricsTokens, { failures }) : local,
    public: opts.apiToken ? open : local,
  };
  return (access) => checks[access];
}

/**
 * Requires one of the given tokens, as `Authorization: Bearer <token>`, or with `basic` also
 * as the password of `Authorization: Basic` under any user name. Tokens are compared as
 * SHA-256 digests with timingSafeEqual: constant time, whatever their lengths.
 *
 * With `failures`, each wrong token counts against the client's address, and an address over
 * the limit gets 429 before its token is looked at. A request with no token at all guesses
 * nothing and is not counted: a client that has not been given the token yet is not locked out.
 */
export function tokenAuth(tokens: string[], opts: { basic?: boolean; failures?: AuthFailures } = {}): Middleware {
  const expected = tokens.map(digest);
  const basic = opts.basic ?? false;
  const [challenge, message] = basic
    ? ['Bearer realm="userjoin", Basic realm="userjoin"', 'a valid "Authorization: Bearer <token>" header, or Basic with the token as the password, is required']
    : ['Bearer realm="userjoin"', 'a valid "Authorization: Bearer <token>" header is required'];
  const failures = opts.failures;
  return async (ctx, next) => {
    const wait = failures?.retryAfter(ctx.ip) ?? 0;
    if (wait > 0) {
      throw new HttpError(429, 'too_many_failures', `too many wrong tokens from this address; try again in ${wait} s`, { 'Retry-After': String(wait) });
    }
    const token = presentedToken(ctx.get('authorization'), basic);
    const given = token !== null ? digest(token) : null;
    // Every token is compared, so the time taken does not say which one matched.
    const ok = given !== null && expected.map((e) => timingSafeEqual(given, e)).includes(true);
    if (!ok) {
      if (token !== null) failures?.failed(ctx.ip);
      throw new HttpError(401, 'unauthorized', message, { 'WWW-Authenticate': challenge });
    }
    await next();
  };
}

/** The token an Authorization header presents, or null. */
function presentedToken(header: string, basic: boolean): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  const credentials = basic ? /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header) : null;
  if (!credentials) return null;
  // RFC 7617: base64 of "user:password"; a user name has no colon, a password may.
  const pair = Buffer.from(credentials[1]!, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  return colon >= 0 ? pair.slice(colon + 1) : null;
}
