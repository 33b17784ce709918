import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Database } from './pool.js';
import { withTransaction } from './pool.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Arbitrary constant; serialises migrations when several instances start together.
const MIGRATION_LOCK_KEY = 7_330_101;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (name) => ({ version: Number(name.split('_')[0]), name, sql: await fs.readFile(dir + name, 'utf8') })),
  );
}

/** Applies every numbered migration not yet applied, all in one transaction. Returns the names applied. */
export async function migrate(pool: Database): Promise<string[]> {
  const migrations = await loadMigrations();
  const applied: string[] = [];
  await withTransaction(pool, async (client) => {
    // The pool's statement_timeout is not for this: the lock waits for another instance's
    // migrations, and a migration may rewrite a large table.
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query(m.sql);
      } catch (err) {
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`);
      }
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.name);
    }
  });
  return applied;
}
