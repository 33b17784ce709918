import type { DatabaseConfig } from '../config.js';
import { retry } from '../retry.js';
import { startEmbeddedPostgres } from './embedded.js';
import { migrate } from './migrate.js';
import type { Database } from './pool.js';
import { createPool, ping } from './pool.js';

export type { Database, DbClient, Queryable } from './pool.js';
export { withTransaction, withSnapshot, withSavepoint, createPool, ping, isDatabaseUnavailable } from './pool.js';
export { isDataError, isStatementTimeout, describeDataError, describeDatabaseError } from './errors.js';
export { migrate } from './migrate.js';

export interface OpenDatabase {
  pool: Database;
  /** Where it is, for clients with a pool of their own (the work queue). */
  url: string;
  /** "embedded" or "external", for logs. */
  kind: 'embedded' | 'external';
  close(): Promise<void>;
}

export interface OpenOptions {
  /** How long to wait for an external PostgreSQL that is not up yet. */
  waitMs?: number;
  /** statement_timeout for the pool's connections (DB_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/**
 * Connects to DATABASE_URL, or starts the embedded PostgreSQL, then applies migrations.
 */
export async function openDatabase(config: DatabaseConfig, opts: OpenOptions = {}): Promise<OpenDatabase> {
  const log = opts.log;
  let url: string;
  let stopEmbedded: (() => Promise<void>) | null = null;
  if (config.kind === 'embedded') {
    log?.info({ dataDir: config.dataDir }, 'starting embedded PostgreSQL');
    const server = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.port,
      onLog: (line) => log?.debug({ postgres: line }, 'embedded PostgreSQL'),
    });
    url = server.url;
    stopEmbedded = () => server.stop();
  } else {
    url = config.url;
  }
  const pool = createPool(url, { statementTimeoutMs: opts.statementTimeoutMs });
  try {
    await retry(() => ping(pool), {
      what: 'PostgreSQL',
      timeoutMs: opts.waitMs ?? 0,
      onRetry: (i) => log?.warn(i, 'waiting for PostgreSQL'),
    });
    const applied = await migrate(pool);
    if (applied.length > 0) log?.info({ applied }, 'applied migrations');
  } catch (err) {
    await pool.end().catch(() => undefined);
    await stopEmbedded?.().catch(() => undefined);
    throw err;
  }
  return {
    pool,
    url,
    kind: stopEmbedded ? 'embedded' : 'external',
    close: async () => {
      await pool.end();
      await stopEmbedded?.();
    },
  };
}
