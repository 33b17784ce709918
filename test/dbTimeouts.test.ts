import net from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openResources } from '../src/resources.js';
import { loadConfig } from '../src/config.js';
import type { Database } from '../src/db/index.js';
import { createPool, isDatabaseUnavailable, migrate } from '../src/db/index.js';
import { silentLogger } from '../src/log.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { waitFor } from './support/fixtures.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

describe('PostgreSQL timeouts', () => {
  let db: TestDatabase;
  const pools: Database[] = [];
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.end().catch(() => undefined);
  });
  afterAll(() => db?.drop());

  it('cancels a statement that runs longer than the statement timeout (SQLSTATE 57014)', async () => {
    const pool = createPool(db.url, { statementTimeoutMs: 200 });
    pools.push(pool);
    const err = await pool.query('SELECT pg_sleep(2)').then(
      () => null,
      (e: unknown) => e as { code?: string },
    );
    expect(err?.code).toBe('57014');
    // A cancelled query is the query's fault, not an outage.
    expect(isDatabaseUnavailable(err)).toBe(false);
    expect((await pool.query<{ ok: number }>('SELECT 1 AS ok')).rows[0]!.ok).toBe(1);
  });

  describe('through the configuration, as the service and the CLI open the database', () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await startFolderBackend();
    });
    afterAll(() => backend?.stop());

    const shown = async (env: Record<string, string>) => {
      const app = await openResources(loadConfig({ ...backend.env, DATABASE_URL: db.url, ...env }), silentLogger(), { waitMs: 0 });
      try {
        return (await app.database.pool.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout;
      } finally {
        await app.close();
      }
    };

    it('sets DB_STATEMENT_TIMEOUT_MS on every pooled connection, 60 s by default', async () => {
      expect(await shown({})).toBe('1min');
      expect(await shown({ DB_STATEMENT_TIMEOUT_MS: '1500' })).toBe('1500ms');
    });
  });

  it('lets migrations wait for the migration lock longer than the statement timeout', async () => {
    const fresh = await createTestDatabase({ migrate: false });
    const pool = createPool(fresh.url, { statementTimeoutMs: 100 });
    // Another instance migrating: it holds the lock migrate() waits for.
    const other = new pg.Client(fresh.url);
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock(7330101)');
      const migrating = migrate(pool);
      migrating.catch(() => undefined);
      // Wait (by polling the server, not the clock) until migrate() has waited on the lock
      // for three times the statement timeout.
      await waitFor('migrate() to wait on the lock for 300 ms', async () => {
        const { rows } = await other.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
              AND query LIKE '%pg_advisory_xact_lock%' AND now() - query_start > interval '300 ms'`,
        );
        return rows[0]!.n === 1;
      });
      await other.query('SELECT pg_advisory_unlock(7330101)');
      expect((await migrating).length).toBeGreaterThan(0);
      // The exemption was for that transaction only.
      expect((await pool.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout).toBe('100ms');
    } finally {
      await other.end();
      await pool.end();
      await fresh.drop();
    }
  });

  it('gives up connecting to a server that never answers, as an outage', async () => {
    // Accepts TCP connections and then says nothing, as a black-holed database would.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const pool = createPool(`postgres://u:p@127.0.0.1:${port}/db`, { connectTimeoutMs: 300 });
      pools.push(pool);
      const start = Date.now();
      const err = await pool.query('SELECT 1').then(
        () => null,
        (e: unknown) => e,
      );
      expect(Date.now() - start).toBeLessThan(5000);
      expect(isDatabaseUnavailable(err)).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('has a connect timeout by default', () => {
    const pool = createPool(db.url);
    pools.push(pool);
    expect(pool.options.connectionTimeoutMillis).toBe(10_000);
  });
});

describe('a query past the statement timeout, over HTTP', () => {
  it('answers 503 database_timeout with Retry-After, not a 500', async () => {
    const backend = await startFolderBackend();
    const db = await createTestDatabase();
    const svc = await startTestService(backend, db, { DB_STATEMENT_TIMEOUT_MS: '300' });
    const locker = new pg.Client(db.url);
    await locker.connect();
    try {
      // Holding a lock on users makes the next query wait until the timeout cancels it.
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      const res = await svc.get('/data?limit=1');
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toEqual({ error: { code: 'database_timeout', message: 'the database took too long to answer; try again shortly' } });
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
      await svc.stop();
      await db.drop();
      await backend.stop();
    }
  });
});
