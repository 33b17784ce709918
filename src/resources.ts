import type { Config } from './config.js';
import type { OpenDatabase } from './db/index.js';
import { openDatabase } from './db/index.js';
import type { Logger } from './log.js';
import { PixelBudget } from './images/budget.js';
import type { RetryOptions } from './retry.js';
import { retry } from './retry.js';
import type { ObjectStore, StoreObserver } from './storage/index.js';
import { createStore } from './storage/index.js';

/** What every entry point needs: a migrated database and a store with both buckets. */
export interface Resources {
  config: Config;
  log: Logger;
  database: OpenDatabase;
  store: ObjectStore;
  /** Every decode of the process shares it: runs' image checks and photo resizes. */
  pixelBudget: PixelBudget;
  close(): Promise<void>;
}

export interface OpenResourcesOptions {
  /** How long to wait for PostgreSQL and the object store to come up; 0 fails at once. */
  waitMs: number;
  signal?: AbortSignal;
  /** Called each time the object store is not ready yet and the start waits to try again. */
  onWait?: RetryOptions['onRetry'];
  /** Told of every store request and retry (the service's metrics). */
  storeObserver?: StoreObserver;
}

export async function openResources(config: Config, log: Logger, opts: OpenResourcesOptions): Promise<Resources> {
  const store = await createStore(config.store, { retry: config.storeRetry, observer: opts.storeObserver });
  const database = await openDatabase(config.db, { waitMs: opts.waitMs, statementTimeoutMs: config.dbStatementTimeoutMs, log });
  try {
    await retry(
      async () => {
        await store.ensureBucket(config.srcBucket);
        await store.ensureBucket(config.resBucket);
      },
      {
        what: `object store ${store.description}`,
        timeoutMs: opts.waitMs,
        signal: opts.signal,
        onRetry: (i) => {
          log.warn(i, 'waiting for the object store');
          opts.onWait?.(i);
        },
      },
    );
  } catch (err) {
    await database.close().catch(() => undefined);
    throw err;
  }
  log.info({ store: store.description, database: database.kind, src: config.srcBucket, res: config.resBucket }, 'ready');
  return { config, log, database, store, pixelBudget: new PixelBudget(config.limits.maxImagePixels), close: () => database.close() };
}
