import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pLimit from 'p-limit';
import type { App } from './resources.js';
import { openApp } from './resources.js';
import type { Config } from './config.js';
import { listenForUserChanges } from './db/changeFeed.js';
import { isRunActive } from './db/runItems.js';
import { readClusterStats } from './db/stats.js';
import { WorkQueue } from './db/workQueue.js';
import { EventIntake, EventProcessor } from './triggers/eventIntake.js';
import { createHttpApp } from './http/app.js';
import { loadConsoleAssets } from './http/console.js';
import { PageCache } from './http/pageCache.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import { Photos } from './images/photos.js';
import type { RunDeps, WorkItem } from './runs/deps.js';
import { thisInstance } from './runs/deps.js';
import { processItem } from './runs/worker.js';
import { Runner } from './runs/coordinator.js';
import type { Scheduler } from './triggers/schedule.js';
import { startScheduler } from './triggers/schedule.js';
import type { ObjectStore, StoreWatch } from './storage/index.js';

export interface Service {
  url: string;
  app: App;
  runner: Runner;
  /** Graceful stop: no new requests, let a run finish (or abort it after graceMs), close pools, stop embedded PostgreSQL. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServiceOptions {
  /** How long to wait at start for PostgreSQL and the object store. Default: forever. */
  waitMs?: number;
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

export async function startService(config: Config, log: Logger, opts: ServiceOptions = {}): Promise<Service> {
  const app = await openApp(config, log, { waitMs: opts.waitMs ?? Number.POSITIVE_INFINITY });
  const store = opts.wrapStore ? opts.wrapStore(app.store) : app.store;
  const db = app.database.pool;
  const metrics = new Metrics((timeoutMs) => readClusterStats(db, timeoutMs), log);
  const instance = thisInstance();
  let queue: WorkQueue<WorkItem> | undefined;
  try {
    queue = config.work.queue === 'pgboss' ? await openWorkQueue(app.database.url, config, log) : undefined;
  } catch (err) {
    await app.close();
    throw err;
  }
  const deps = { db, store, config, log, instance, queue };
  const runner = new Runner(deps, (report) => metrics.runFinished(report));
  const processor = new EventProcessor(runner, metrics, config.events, log.child({ component: 'events' }));
  const intake = new EventIntake(db, metrics, processor);
  const pageCache = new PageCache();
  const feed = listenForUserChanges(
    db,
    { onChange: () => pageCache.invalidate(), onListening: () => pageCache.setEnabled(true), onLost: () => pageCache.setEnabled(false) },
    log,
  );
  let http;
  try {
    http = createHttpApp({
      db,
      store,
      srcBucket: config.srcBucket,
      runner,
      photos: new Photos(store, config.limits),
      metrics,
      console: await loadConsoleAssets(),
      log,
      apiToken: config.http.apiToken,
      eventsToken: config.events.token,
      events: intake,
      loopback: config.http.loopback,
      pageCache,
    });
  } catch (err) {
    await feed.close();
    await queue?.stop(0);
    await app.close();
    throw err;
  }

  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const t = { ...DEFAULT_HTTP_TIMEOUTS, ...opts.httpTimeouts };
      const handle = http.callback();
      const s = createServer(
        { headersTimeout: t.headersMs, requestTimeout: t.requestMs, keepAliveTimeout: t.keepAliveMs, connectionsCheckingInterval: t.checkIntervalMs },
        // Koa answers its own errors; the promise never rejects.
        (req, res) => void handle(req, res),
      );
      s.listen(config.http.port, config.http.host, () => resolve(s));
      s.once('error', reject);
    });
  } catch (err) {
    await feed.close();
    await queue?.stop(0);
    await app.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  const url = `http://${host}:${port}`;
  const scheduler: Scheduler | null = config.schedule ? startScheduler(config.schedule, runner, log) : null;
  processor.start();
  // Aborted once shutdown's grace period is over: items in hand stop reading, commit nothing,
  // and go back to the queue.
  const itemsAbort = new AbortController();
  // One read limit for the process, whichever of its workers reads.
  const itemReads = pLimit(config.readConcurrency);
  await queue?.work((item) => carryOutItem(deps, item, itemReads, itemsAbort.signal));
  const watch = await startWatch(config, store, intake, log);
  await setUpNotifications(config, store, log);
  log.info({ url, schedule: config.schedule ?? 'off', auth: config.http.apiToken ? 'bearer' : 'none' }, 'listening');
  if (!config.http.apiToken && !config.http.loopback) {
    log.warn({ host: config.http.host }, 'INSECURE_ALLOW_NO_TOKEN: serving personal data without authentication beyond loopback; set API_TOKEN');
  }

  let stopping: Promise<void> | null = null;
  const stop = (graceMs = DEFAULT_GRACE_MS) =>
    (stopping ??= (async () => {
      log.info({ graceMs }, 'shutting down');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await scheduler?.stop();
      watch?.close();
      // All within one grace period: an event batch and a run (this process's queue workers
      // still help it finish), then the work items still in hand, aborted when it is over.
      const deadline = Date.now() + graceMs;
      const graceOver = setTimeout(() => itemsAbort.abort(), graceMs);
      await Promise.all([processor.stop(), runner.shutdown(graceMs)]);
      await queue?.stop(Math.max(0, deadline - Date.now()));
      clearTimeout(graceOver);
      // Requests still in flight (e.g. a POST /data?wait=true) end with the run; then go.
      server.closeAllConnections();
      await closed;
      await feed.close();
      await app.close();
      log.info('stopped');
    })());

  return { url, app: { ...app, store }, runner, stop };
}

/**
 * The folder store watches the source bucket, when WATCH allows; a failure to watch leaves
 * the scheduled runs to find changes, and is said once.
 */
async function startWatch(config: Config, store: ObjectStore, intake: EventIntake, log: Logger): Promise<StoreWatch | null> {
  if (!config.events.watch || !store.watch) return null;
  const onKeys = (keys: string[]) =>
    void intake.accept('folder', keys).catch((err: unknown) => log.error({ err, keys: keys.length }, 'could not record folder events; the next scheduled run will find the changes'));
  const onError = (err: Error) => log.warn({ err }, 'the folder watch is incomplete (inotify watch limit?); the scheduled runs find what it misses');
  try {
    const w = await store.watch(config.srcBucket, onKeys, onError);
    log.info({ bucket: config.srcBucket }, 'watching the source folder');
    return w;
  } catch (err) {
    log.warn({ err }, 'could not watch the source folder; the scheduled runs will find changes');
    return null;
  }
}

/** MINIO_NOTIFY_ARN: have the S3 server send the source bucket's events to our webhook. */
async function setUpNotifications(config: Config, store: ObjectStore, log: Logger): Promise<void> {
  const arn = config.events.notifyArn;
  if (!arn) return;
  if (!store.notifyTo) {
    log.warn({ arn }, 'MINIO_NOTIFY_ARN is set, but the folder store has no notifications (it watches its folder instead)');
    return;
  }
  try {
    await store.notifyTo(config.srcBucket, arn);
    log.info({ bucket: config.srcBucket, arn }, 'bucket notifications set');
  } catch (err) {
    // The scheduled runs still find every change, only later.
    log.error({ err, bucket: config.srcBucket, arn }, 'could not set the bucket notifications; check MINIO_NOTIFY_ARN and the server\'s webhook target');
  }
}

// Each replica takes two items at a time: one is read while the other commits.
const QUEUE_WORKERS = 2;

function openWorkQueue(url: string, config: Config, log: Logger): Promise<WorkQueue<WorkItem>> {
  return WorkQueue.open<WorkItem>(url, { leaseSeconds: config.work.leaseSeconds, tries: 4, workers: QUEUE_WORKERS }, (err) =>
    log.warn({ err }, 'work queue: an error in its background work; it goes on'),
  );
}

/** One work item taken from the queue; an item of a run that is over (aborted) is dropped. */
async function carryOutItem(deps: RunDeps & { instance: string }, item: WorkItem, limit: ReturnType<typeof pLimit>, signal: AbortSignal): Promise<void> {
  if (!(await isRunActive(deps.db, item.runId))) return;
  const r = await processItem(deps, item, deps.instance, limit, signal);
  deps.log.debug({ runId: item.runId, item: item.no, users: item.batch.users.length, committed: r !== null }, 'work item done');
}
