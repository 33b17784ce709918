import Router from '@koa/router';
import Koa from 'koa';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import type { Runner } from '../runner.js';
import { RunInProgressElsewhereError } from '../runner.js';
import type { ObjectStore } from '../storage/index.js';
import { bearerAuth } from './auth.js';
import { errorMiddleware, HttpError } from './errors.js';
import { localOnly } from './localOnly.js';
import { dataRoutes } from './routes/data.js';
import { healthRoutes } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import type { PageCache } from './pageCache.js';
import { securityHeaders } from './securityHeaders.js';

export interface HttpDeps {
  db: Database;
  store: ObjectStore;
  /** The bucket /health checks the store with. */
  srcBucket: string;
  runner: Runner;
  log: Logger;
  apiToken: string | null;
  /** The server listens on loopback only; without a token, only loopback Host headers are served. */
  loopback: boolean;
  /** Repeated GET /data pages; without one, every request queries the database. */
  pageCache?: PageCache;
}

export function createHttpApp(deps: HttpDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  // Errors are answered by errorMiddleware; this only stops koa printing them to stderr.
  app.silent = true;
  app.use(securityHeaders());
  app.use(accessLog(deps.log));
  app.use(errorMiddleware(deps.log));
  app.use(async (_ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof RunInProgressElsewhereError) throw new HttpError(409, 'run_in_progress', err.message);
      throw err;
    }
  });
  // A token already stops other web pages (they cannot send the header), so the browser
  // checks matter only without one.
  if (deps.apiToken) app.use(bearerAuth(deps.apiToken, new Set(['/health'])));
  else app.use(localOnly({ checkHost: deps.loopback }));

  const router = new Router();
  healthRoutes(router, deps.db, () => deps.store.ping(deps.srcBucket), deps.log);
  dataRoutes(router, deps.db, deps.runner, deps.pageCache ?? null);
  runRoutes(router, deps.db);
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}

function accessLog(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      log.info({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
    }
  };
}
