import { afterEach, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';

describe('migrate', () => {
  let db: TestDatabase;
  afterEach(() => db.drop());

  it('applies numbered migrations once, also when instances start together', async () => {
    db = await createTestDatabase({ migrate: false });
    const all = (await loadMigrations()).map((m) => m.name);
    expect(all[0]).toBe('001_init.sql');
    const results = await Promise.all([migrate(db.pool), migrate(db.pool), migrate(db.pool)]);
    expect(results.flat().sort()).toEqual(all);
    expect(await migrate(db.pool)).toEqual([]);
    const { rows } = await db.pool.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.map((r: { version: number }) => r.version)).toEqual(all.map((n) => Number(n.split('_')[0])));
  });

  it('keeps user_id as text and unique', async () => {
    db = await createTestDatabase();
    await db.pool.query(`INSERT INTO users (user_id, first_name, last_name, birthdate) VALUES ('0042', 'a', 'b', now()), ('42', 'c', 'd', now())`);
    await expect(db.pool.query(`INSERT INTO users (user_id, first_name, last_name, birthdate) VALUES ('42', 'e', 'f', now())`)).rejects.toThrow(
      /duplicate key/,
    );
  });
});
