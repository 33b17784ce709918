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

  it('011 backfills lineage from source_files where the row holds the file values, and leaves the run unknown', async () => {
    db = await createTestDatabase({ migrate: false });
    const migrations = await loadMigrations();
    for (const m of migrations.filter((m) => m.version < 11)) await db.pool.query(m.sql);
    await db.pool.query(
      `INSERT INTO source_files (key, user_id, kind, etag, size, last_modified, status, reason, first_name, last_name, birthts, img_format, img_width, img_height) VALUES
        ('a.csv',   'a', 'csv',   'ea1', 1, '2026-01-01', 'ok', null, 'Ann',  'L', 0, null, null, null),
        ('b/a.csv', 'a', 'csv',   'ea2', 1, '2026-01-02', 'ok', null, 'Ann2', 'L', 0, null, null, null),
        ('z/a.csv', 'a', 'csv',   'ea3', 1, '2026-01-03', 'rejected', 'bad', null, null, null, null, null, null),
        ('a.png',   'a', 'image', 'ep',  1, '2026-01-01', 'ok', null, null, null, null, 'png', 8, 8),
        ('b.csv',   'b', 'csv',   'eb',  1, '2026-01-01', 'ok', null, 'Changed', 'L', 0, null, null, null),
        ('y/c.csv', 'c', 'csv',   'ey',  1, '2026-01-01', 'ok', null, 'Other', 'L', 0, null, null, null),
        ('x/c.csv', 'c', 'csv',   'ex',  1, '2026-01-01', 'ok', null, 'Cy', 'L', 0, null, null, null)`,
    );
    await db.pool.query(
      `INSERT INTO users (user_id, first_name, last_name, birthdate, img_path, img_format, img_width, img_height) VALUES
        ('a', 'Ann2', 'L', 'epoch', 'src/a.png', 'png', 8, 8),
        ('b', 'Bob', 'L', 'epoch', 'src/gone.png', 'png', 8, 8),
        ('c', 'Cy', 'L', 'epoch', null, null, null, null)`,
    );
    await db.pool.query(migrations.find((m) => m.version === 11)!.sql);
    const { rows } = await db.pool.query('SELECT user_id, csv_key, csv_etag, img_key, img_etag, changed_run_id, changed_at FROM users ORDER BY user_id');
    const unknownRun = { changed_run_id: null, changed_at: null };
    expect(rows).toEqual([
      // The newest valid CSV (a rejected newer one does not count) and the photo at img_path.
      { user_id: 'a', csv_key: 'b/a.csv', csv_etag: 'ea2', img_key: 'a.png', img_etag: 'ep', ...unknownRun },
      // The newest valid CSV holds other values, and the photo is not recorded: unknown, not a guess.
      { user_id: 'b', csv_key: null, csv_etag: null, img_key: null, img_etag: null, ...unknownRun },
      // Equal times: the smallest key, as resolveUser picks.
      { user_id: 'c', csv_key: 'x/c.csv', csv_etag: 'ex', img_key: null, img_etag: null, ...unknownRun },
    ]);
  });
});
