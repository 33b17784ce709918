// lockUsers must make a second transaction on the same user wait until the first commits.
// Counting locks alone would pass with no lock at all, so these watch one session wait on another.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, type DbClient } from '../src/db/pool.js';
import { lockUsers } from '../src/db/users.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { waitFor } from './support/fixtures.js';

interface Session {
  client: DbClient;
  pid: number;
}

describe('lockUsers', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  afterAll(() => db.drop());

  /** A connection of its own with a transaction open, and its backend pid to find it in pg_locks. */
  async function begin(): Promise<Session> {
    const client = await connectClient(db.pool);
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await client.query('BEGIN');
    return { client, pid: rows[0]!.pid };
  }

  async function end(s: Session): Promise<void> {
    await s.client.query('ROLLBACK').catch(() => undefined);
    s.client.release();
  }

  /** The session's advisory locks, read from another connection. */
  async function advisoryLocks(pid: number): Promise<{ granted: number; waiting: number }> {
    const { rows } = await db.pool.query<{ granted: number; waiting: number }>(
      `SELECT count(*) FILTER (WHERE granted)::int AS granted, count(*) FILTER (WHERE NOT granted)::int AS waiting
       FROM pg_locks WHERE locktype = 'advisory' AND pid = $1`,
      [pid],
    );
    return rows[0]!;
  }

  it('a second transaction locking the same user waits until the first commits', async () => {
    const first = await begin();
    const second = await begin();
    let pending: Promise<void> | undefined;
    try {
      await lockUsers(first.client, ['alice']);
      let done = false;
      pending = lockUsers(second.client, ['alice']).then(() => {
        done = true;
      });

      await waitFor('the second lock request to wait in pg_locks', async () => (await advisoryLocks(second.pid)).waiting > 0, 10_000);
      // It waits on the first session, not on something else.
      const { rows } = await db.pool.query<{ blockers: number[] }>('SELECT pg_blocking_pids($1) AS blockers', [second.pid]);
      expect(rows[0]!.blockers).toEqual([first.pid]);
      expect(done).toBe(false);

      await first.client.query('COMMIT');
      await pending;
      const held = await advisoryLocks(second.pid);
      expect(held.waiting).toBe(0);
      expect(held.granted).toBeGreaterThan(0);
      await second.client.query('COMMIT');
      // Transaction-level: nothing is left once both have committed.
      expect(await advisoryLocks(second.pid)).toEqual({ granted: 0, waiting: 0 });
    } finally {
      // On failure, free the first so a waiting second can finish before its connection is released.
      await end(first);
      await pending?.catch(() => undefined);
      await end(second);
    }
  });

  it('users in different hash buckets do not wait on each other', async () => {
    // Two ids whose buckets (hashtext & 255, as lockUsers computes them) differ, found by PostgreSQL itself.
    const { rows } = await db.pool.query<{ other: string }>(
      `SELECT 'user-' || i AS other FROM generate_series(1, 1000) AS i
       WHERE hashtext('user-' || i) & 255 <> hashtext('user-0') & 255 ORDER BY i LIMIT 1`,
    );
    const other = rows[0]!.other;
    const first = await begin();
    const second = await begin();
    try {
      await lockUsers(first.client, ['user-0']);
      // If it waited, lock_timeout turns the wait into an error instead of a hang.
      await second.client.query(`SET LOCAL lock_timeout = '5s'`);
      await lockUsers(second.client, [other]);
      // Both hold their locks at the same time, and neither waits.
      expect(await advisoryLocks(first.pid)).toEqual({ granted: 1, waiting: 0 });
      expect(await advisoryLocks(second.pid)).toEqual({ granted: 1, waiting: 0 });
    } finally {
      await end(first);
      await end(second);
    }
  });
});
