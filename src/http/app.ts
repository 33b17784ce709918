import { readFileSync } from 'node:fs';
import Koa from 'koa';
import type { CsvOptions } from '../csv.js';
import type { Database } from '../db/index.js';
import type { EventIntake } from '../triggers/eventIntake.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Photos } from '../images/photos.js';
import type { Runner } from '../runs/coordinator.js';
import type { ObjectStore } from '../storage/index.js';
import type { Operation } from './api.js';
import { mountOperations, operation, routeLabel, Routes } from './api.js';
import { accessCheck } from './auth.js';
import type { AuthFailureLimit } from './authFailures.js';
import type { ConsoleAssets } from './console.js';
import { consoleRoutes } from './console.js';
import { errorMiddleware } from './errors.js';
import { openApiDocument } from './openapi.js';
import type { PageCache } from './pageCache.js';
import { dataOperations } from './routes/data.js';
import { erasureOperations } from './routes/erasures.js';
import { healthOperations } from './routes/health.js';
import type { ScheduleInfo } from './routes/overview.js';
import { overviewOperations } from './routes/overview.js';
import { photoOperations } from './routes/photos.js';
import { eventOperations } from './routes/events.js';
import { runOperations } from './routes/runs.js';
import { securityHeaders } from './securityHeaders.js';

export interface HttpDeps {
  db: Database;
  store: ObjectStore;
  /** The bucket /health checks the store with. */
  srcBucket: string;
  runner: Runner;
  /** Called after each committed erasure (DELETE /data/:user_id): output.csv is then owed. */
  afterErasure?: () => void;
  photos: Photos;
  metrics: Metrics;
  console: ConsoleAssets;
  log: Logger;
  apiToken: string | null;
  /** A second token for POST /events/s3 alone. */
  eventsToken: string | null;
  /** A token for GET /metrics alone. */
  metricsToken: string | null;
  /** Records keys named by bucket notifications. */
  events: EventIntake;
  /** EVENT_WEBHOOK_CONCURRENCY: POST /events/s3 bodies read and recorded at once. */
  eventBodies: number;
  /** The server listens on loopback only; without a token, only loopback Host headers are served. */
  loopback: boolean;
  /** Wrong tokens a client address may send per window. */
  authFailures: AuthFailureLimit;
  /** TRUST_PROXY: the client address is the last X-Forwarded-For entry, the one the proxy in front added. */
  trustProxy: boolean;
  /** Repeated GET /data pages; without one, every request queries the database. */
  pageCache?: PageCache;
  /** How GET /data?format=csv writes cells (CSV_NEUTRALIZE_FORMULAS). */
  csv: CsvOptions;
  /** For GET /overview. */
  schedule: ScheduleInfo;
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Every API operation, in the order /openapi.json lists them. */
export function apiOperations(deps: HttpDeps): Operation[] {
  const ops: Operation[] = [
    ...dataOperations(deps.db, deps.runner, deps.pageCache ?? null, deps.csv),
    ...erasureOperations(deps.db, () => {
      deps.metrics.erased();
      deps.afterErasure?.();
    }),
    ...photoOperations(deps.db, deps.photos),
    ...runOperations(deps.db),
    ...eventOperations(deps.events, deps.srcBucket, deps.log, { concurrency: deps.eventBodies, onInFlight: (n) => deps.metrics.eventBodiesInFlight(n) }),
    ...healthOperations(deps.db, () => deps.store.ping(deps.srcBucket), deps.log),
    ...overviewOperations(deps.db, deps.schedule),
    operation({
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      tag: 'operations',
      summary: 'Prometheus metrics (text exposition format); METRICS_TOKEN opens this and nothing else',
      access: 'metrics',
      responses: { 200: { description: 'The metrics', media: { 'text/plain': { type: 'string' } } } },
      handler: async (ctx) => {
        ctx.body = await deps.metrics.text();
        ctx.type = deps.metrics.contentType;
      },
    }),
  ];
  let document: Buffer | null = null;
  ops.push(
    operation({
      method: 'get',
      path: '/openapi.json',
      operationId: 'openapi',
      tag: 'operations',
      summary: 'This API, described in OpenAPI 3.1',
      access: 'public',
      responses: { 200: { description: 'The OpenAPI document', media: { 'application/json': { type: 'object' } } } },
      handler: (ctx) => {
        // Built on first use, from the operations themselves.
        document ??= Buffer.from(JSON.stringify(openApiDocument(ops, { version: VERSION }), null, 2));
        ctx.type = 'application/json; charset=utf-8';
        ctx.body = document;
      },
    }),
  );
  return ops;
}

export function createHttpApp(deps: HttpDeps): Koa {
  // Only the last X-Forwarded-For entry: the proxy in front appends the address it saw, and
  // whatever comes before it is the client's to forge.
  const app = new Koa({ proxy: deps.trustProxy, maxIpsCount: 1 });
  // Errors are answered by errorMiddleware; this only stops koa printing them to stderr.
  app.silent = true;
  app.use(securityHeaders());
  app.use(accessLog(deps.log, deps.metrics));
  app.use(errorMiddleware(deps.log));
  const routes = new Routes(accessCheck({ apiToken: deps.apiToken, eventsToken: deps.eventsToken, metricsToken: deps.metricsToken, loopback: deps.loopback, authFailures: deps.authFailures }));
  consoleRoutes(routes, deps.console, deps.apiToken ? 'bearer' : 'none');
  mountOperations(routes, apiOperations(deps));
  routes.mount(app);
  return app;
}

function accessLog(log: Logger, metrics: Metrics): Koa.Middleware {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.httpRequest(ctx.method, routeLabel(ctx), ctx.status, seconds);
      log.info({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(seconds * 1e4) / 10 }, 'request');
    }
  };
}
