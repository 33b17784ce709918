import pg from 'pg';

export type Database = pg.Pool;
export type DbClient = pg.PoolClient;
/** A pool or a checked-out client: anything that can run a query. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// bigint columns (counts, birthts) fit in a JS number for every value we store; parse them as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface PoolOptions {
  max?: number;
  /** PostgreSQL statement_timeout on every connection, in ms. Unset: the server's default. */
  statementTimeoutMs?: number;
  /** Gives up connecting, or waiting for a free client, after this. */
  connectTimeoutMs?: number;
}

// A black-holed server would otherwise leave a connect attempt hanging for minutes.
const CONNECT_TIMEOUT_MS = 10_000;
// The run, events and export locks can each hold a connection at once, beside an export's
// snapshot, two items of a run and an event batch's, and the API's queries.
const POOL_SIZE = 16;

export function createPool(url: string, opts: PoolOptions = {}): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? POOL_SIZE,
    application_name: 'userjoin',
    statement_timeout: opts.statementTimeoutMs,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
  });
  // An idle client losing its server (restart, failover) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Checks out a client that survives its connection dying between queries: pg emits 'error' on
 * a checked-out client then, and an unheard 'error' event would crash the process. The next
 * query on it fails instead, which callers handle.
 */
export async function connectClient(pool: Database): Promise<DbClient> {
  const client = await pool.connect();
  if (client.listenerCount('error') === 0) client.on('error', () => undefined);
  return client;
}

/** Runs fn in one transaction: COMMIT when it resolves, ROLLBACK when it throws. */
export async function withTransaction<T>(pool: Database, fn: (client: DbClient) => Promise<T>): Promise<T> {
  const client = await connectClient(pool);
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // A failed ROLLBACK means the connection itself is gone: do not hand it to the next caller.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * Runs fn in one read-only REPEATABLE READ transaction: every query sees the same snapshot, so
 * what it reads page by page is the database at one moment, whatever commits meanwhile.
 */
export async function withSnapshot<T>(pool: Database, fn: (client: DbClient) => Promise<T>): Promise<T> {
  return withTransaction(pool, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return fn(client);
  });
}

/**
 * Runs fn inside a savepoint of an open transaction: when fn throws, only its work is undone
 * and the transaction can go on.
 */
export async function withSavepoint<T>(client: DbClient, fn: () => Promise<T>): Promise<T> {
  await client.query('SAVEPOINT userjoin_sp');
  try {
    const result = await fn();
    await client.query('RELEASE SAVEPOINT userjoin_sp');
    return result;
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT userjoin_sp');
    throw err;
  }
}

export async function ping(db: Queryable): Promise<void> {
  await db.query('SELECT 1');
}

// Connection-level failures: the server is down, restarting, or refusing this database.
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', '3D000', '55000']);

/** Whether an error means "PostgreSQL cannot be reached" rather than a bug in a query. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  if (code && UNAVAILABLE_CODES.has(code)) return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(err.message);
}
