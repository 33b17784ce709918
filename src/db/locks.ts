import type { Database, Queryable } from './pool.js';
import { connectClient } from './pool.js';

/**
 * The cluster-wide locks, each a session-level advisory lock on a dedicated connection, so if
 * the holder dies the server frees it:
 * - run: one run (scheduled, POST /data, CLI) at a time;
 * - events: one event batch at a time, so the coalesced event run has one writer;
 * - export: one writer of output.csv at a time.
 * They are independent: an event batch or an export goes on during a run. What keeps
 * concurrent commits apart is the per-user lock (lockUsers), not these.
 */
export type ClusterLock = 'run' | 'events' | 'export';

// Arbitrary constants shared by every instance. 7_330_102 is the run lock of earlier versions.
const LOCK_KEYS: Record<ClusterLock, number> = { run: 7_330_102, events: 7_330_104, export: 7_330_105 };

export interface HeldLock {
  release(): Promise<void>;
}

/** Takes the lock, or returns null at once when another session holds it. */
export async function tryAcquireLock(pool: Database, lock: ClusterLock): Promise<HeldLock | null> {
  const key = LOCK_KEYS[lock];
  const client = await connectClient(pool);
  try {
    const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [key]);
    if (!rows[0]?.ok) {
      client.release();
      return null;
    }
  } catch (err) {
    client.release(true);
    throw err;
  }
  return {
    release: async () => {
      try {
        await client.query('SELECT pg_advisory_unlock($1)', [key]);
        client.release();
      } catch {
        // The connection is broken, so the server has already dropped the lock with it.
        client.release(true);
      }
    },
  };
}

/** Whether some session holds the lock now (a hint: it may be released the next moment).
 * Advisory locks are per database, and pg_locks shows the whole cluster. */
export async function isLockHeld(db: Queryable, lock: ClusterLock): Promise<boolean> {
  const { rows } = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = 0 AND objid = $1 AND objsubid = 1 AND granted) AS held`,
    [LOCK_KEYS[lock]],
  );
  return rows[0]?.held ?? false;
}

// A blocking pg_advisory_lock would be cut by statement_timeout and hold a connection while
// it waits; trying again now and then does neither.
const ACQUIRE_POLL_MS = 100;

/** Takes the lock, waiting for its holder to release it. */
export async function acquireLock(pool: Database, lock: ClusterLock, signal?: AbortSignal): Promise<HeldLock> {
  for (;;) {
    signal?.throwIfAborted();
    const held = await tryAcquireLock(pool, lock);
    if (held) return held;
    await new Promise((r) => setTimeout(r, ACQUIRE_POLL_MS));
  }
}
