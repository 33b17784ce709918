import pg from 'pg';

export type Database = pg.Pool;
export type DbClient = pg.PoolClient;
/** A pool or a checked-out client: anything that can run a query. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

// bigint columns (counts, birthts) fit in a JS number for every value we store; parse them as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export function createPool(url: string, max = 10): Database {
  const pool = new pg.Pool({ connectionString: url, max, application_name: 'userjoin' });
  // An idle client losing its server (restart, failover) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn in one transaction: COMMIT when it resolves, ROLLBACK when it throws. */
export async function withTransaction<T>(pool: Database, fn: (client: DbClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export async function ping(db: Queryable): Promise<void> {
  await db.query('SELECT 1');
}
