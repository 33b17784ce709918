import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import type { ChangeFeed } from './db/changeFeed.js';
import { listenForUserChanges } from './db/changeFeed.js';
import { readClusterStats } from './db/stats.js';
import { createHttpApp } from './http/app.js';
import { loadConsoleAssets } from './http/console.js';
import { PageCache } from './http/pageCache.js';
import { checkDependencies } from './http/routes/health.js';
import { Photos } from './images/photos.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import type { OpenResourcesOptions, Resources } from './resources.js';
import { openResources } from './resources.js';
import { Runner } from './runs/coordinator.js';
import { thisInstance } from './runs/deps.js';
import { openWorkQueue, workQueue } from './runs/worker.js';
import type { ObjectStore } from './storage/index.js';
import { EventIntake } from './triggers/eventIntake.js';
import { EventProcessor } from './triggers/eventLoop.js';
import type { Scheduler } from './triggers/schedule.js';
import { startScheduler } from './triggers/schedule.js';
import { setUpNotifications, startWatch } from './triggers/sources.js';

export interface Service {
  url: string;
  resources: Resources;
  runner: Runner;
  /** The user change feed, for its events (down, listening again). */
  changeFeed: Pick<ChangeFeed, 'events'>;
  /** The event loop, for its events (each batch, with what it did). */
  eventLoop: Pick<EventProcessor, 'events'>;
  /** Graceful stop: no new requests, let a run finish (or abort it after graceMs), close pools, stop embedded PostgreSQL. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServiceOptions {
  /** How long to wait at start for PostgreSQL and the object store. Default: forever. */
  waitMs?: number;
  /** Called each time the start finds the object store not ready yet and waits to try again. */
  onWait?: OpenResourcesOptions['onWait'];
  /** Replaces the configured store (tests wrap the real one to inject faults). */
  wrapStore?: (store: ObjectStore) => ObjectStore;
  /** Overrides the HTTP server timeouts (tests use small ones). */
  httpTimeouts?: Partial<HttpTimeouts>;
}

/** Node HTTP server timeouts, in ms. */
export interface HttpTimeouts {
  /** To receive a request's headers. */
  headersMs: number;
  /** To receive a whole request. It does not bound the response, so POST /data?wait=true may wait for its run. */
  requestMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number;
  /** How often Node checks headersMs and requestMs (its default, 30 s, would stretch them). */
  checkIntervalMs: number;
}

// Slow clients (slowloris) must not hold connections open; our requests are small.
const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { headersMs: 10_000, requestMs: 30_000, keepAliveMs: 5_000, checkIntervalMs: 1_000 };

const DEFAULT_GRACE_MS = 30_000;

/** Undoes one step of the start; given the end of the grace period. */
type Releaser = (deadline: number) => Promise<void> | void;

/**
 * Wiring only: starts the parts in order, each pushing what undoes it. A failed start, and
 * stop(), release them in reverse order, so each part goes while what it uses is still there.
 */
export async function startService(config: Config, log: Logger, opts: ServiceOptions = {}): Promise<Service> {
  const releasers: Releaser[] = [];
  const releaseAll = async (deadline: number) => {
    for (const release of releasers.splice(0).reverse()) await release(deadline);
  };
  try {
    return await start(config, log, opts, releasers, releaseAll);
  } catch (err) {
    await releaseAll(Date.now()).catch((e: unknown) => log.error({ err: e }, 'could not undo a failed start'));
    throw err;
  }
}

async function start(
  config: Config,
  log: Logger,
  opts: ServiceOptions,
  releasers: Releaser[],
  releaseAll: (deadline: number) => Promise<void>,
): Promise<Service> {
  // Made first, to count the store's requests from the start; its figures are read once it is scraped.
  const metrics = new Metrics(
    (timeoutMs) => readClusterStats(resources.database.pool, timeoutMs),
    log,
    () => checkDependencies(resources.database.pool, () => store.ping(config.srcBucket)),
  );
  const resources = await openResources(config, log, { waitMs: opts.waitMs ?? Number.POSITIVE_INFINITY, onWait: opts.onWait, storeObserver: metrics.store });
  releasers.push(() => resources.close());
  const store = opts.wrapStore ? opts.wrapStore(resources.store) : resources.store;
  const db = resources.database.pool;

  const pageCache = new PageCache();
  const photos = new Photos(store, config.limits, resources.pixelBudget);
  const feed = listenForUserChanges(
    db,
    {
      onChange: () => pageCache.invalidate(),
      onErased: () => photos.forgetCached(),
      // Erasures made while the feed was down went unheard.
      onListening: () => {
        photos.forgetCached();
        pageCache.setEnabled(true);
      },
      onLost: () => pageCache.setEnabled(false),
    },
    log,
  );
  releasers.push(() => feed.close());

  const queue = config.work.queue === 'pgboss' ? await openWorkQueue(resources.database.url, config, log) : undefined;
  // Stopped after the runs: this process's queue workers help its run finish.
  if (queue) releasers.push((deadline) => queue.stop(Math.max(0, deadline - Date.now())));

  const deps = { db, store, config, log, budget: resources.pixelBudget, instance: thisInstance(), queue };
  const runner = new Runner(deps, (report) => metrics.runFinished(report));
  const processor = new EventProcessor(runner, metrics, config.events, log.child({ component: 'events' }));
  // Started once the service is ready; GET /overview asks it for the next run.
  let scheduler: Scheduler | null = null;
  const intake = new EventIntake(db, metrics, processor, { backlogLimit: config.events.backlogLimit, storeRule: store.keyProblem?.bind(store) }, log.child({ component: 'events' }));
  const http = createHttpApp({
    db,
    store,
    srcBucket: config.srcBucket,
    runner,
    // An erasure leaves output.csv owed: the event loop rewrites it, coalesced as after events.
    afterErasure: () => processor.wake(),
    photos,
    metrics,
    console: await loadConsoleAssets(),
    log,
    apiToken: config.http.apiToken,
    eventsToken: config.events.token,
    metricsToken: config.http.metricsToken,
    events: intake,
    eventBodies: config.events.webhookConcurrency,
    loopback: config.http.loopback,
    authFailures: config.http.authFailures,
    trustProxy: config.http.trustProxy,
    pageCache,
    csv: { neutralizeFormulas: config.csvNeutralizeFormulas },
    schedule: { expression: config.schedule, nextRun: () => scheduler?.nextRun() ?? null },
  });
  const server = await listen(config, http.callback(), opts.httpTimeouts);
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  // Requests still in flight (e.g. a POST /data?wait=true) end with the run; then go.
  releasers.push(async () => {
    server.close();
    server.closeAllConnections();
    await closed;
  });

  // All within one grace period: an event batch and a run, then the work items still in hand,
  // aborted when it is over (they stop reading, commit nothing, and go back to the queue).
  const itemsAbort = new AbortController();
  releasers.push(async (deadline) => {
    // Left to fire after this releaser: the queue's own waits for items in hand until then.
    setTimeout(() => itemsAbort.abort(), Math.max(0, deadline - Date.now())).unref();
    await Promise.all([processor.stop(), runner.shutdown(Math.max(0, deadline - Date.now()))]);
  });
  processor.start();
  if (queue) await workQueue(queue, deps, itemsAbort.signal);

  if (config.schedule) {
    const started = (scheduler = startScheduler(config.schedule, runner, log));
    releasers.push(() => started.stop());
  }
  const watch = await startWatch(config, store, intake, log);
  if (watch) releasers.push(() => watch.close());
  await setUpNotifications(config, store, log);

  const { port } = server.address() as AddressInfo;
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  const url = `http://${host}:${port}`;
  log.info({ url, schedule: config.schedule ?? 'off', auth: config.http.apiToken ? 'bearer' : 'none' }, 'listening');
  if (!config.http.apiToken && !config.http.loopback) {
    log.warn({ host: config.http.host }, 'INSECURE_ALLOW_NO_TOKEN: serving personal data without authentication beyond loopback; set API_TOKEN');
  } else if (!config.http.apiToken) {
    // nginx's proxy_pass http://127.0.0.1:3000 sends Host: 127.0.0.1:3000 from a loopback address.
    log.warn(
      { host: config.http.host },
      'no API_TOKEN: every request from this host is trusted, including those a reverse proxy on this host forwards from elsewhere; set API_TOKEN before putting a proxy in front',
    );
  }

  let stopping: Promise<void> | null = null;
  const stop = (graceMs = DEFAULT_GRACE_MS) =>
    (stopping ??= (async () => {
      log.info({ graceMs }, 'shutting down');
      // No new requests from here; those in flight go on until the server's releaser.
      server.close();
      server.closeIdleConnections();
      await releaseAll(Date.now() + graceMs);
      log.info('stopped');
    })());

  return { url, resources: { ...resources, store }, runner, changeFeed: { events: feed.events }, eventLoop: { events: processor.events }, stop };
}

function listen(config: Config, handle: ReturnType<ReturnType<typeof createHttpApp>['callback']>, timeouts?: Partial<HttpTimeouts>): Promise<Server> {
  return new Promise<Server>((resolve, reject) => {
    const t = { ...DEFAULT_HTTP_TIMEOUTS, ...timeouts };
    const s = createServer(
      { headersTimeout: t.headersMs, requestTimeout: t.requestMs, keepAliveTimeout: t.keepAliveMs, connectionsCheckingInterval: t.checkIntervalMs },
      // Koa answers its own errors; the promise never rejects.
      (req, res) => void handle(req, res),
    );
    s.listen(config.http.port, config.http.host, () => resolve(s));
    s.once('error', reject);
  });
}
