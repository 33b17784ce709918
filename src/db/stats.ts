import type { Database } from './pool.js';
import { withTransaction } from './pool.js';

/** Figures every instance sees alike, read from the shared database. */
export interface ClusterStats {
  users: number;
  usersWithPhoto: number;
  /** When the last successful run, of any instance, finished. */
  lastSuccessAt: Date | null;
  /** Keys events named that are not processed yet. */
  pendingEvents: number;
  /** The oldest last event among those keys: when the longest-waiting key was last named. */
  oldestPendingAt: Date | null;
}

/**
 * One short read under its own statement timeout, so a slow count (a huge table, a busy
 * server) is cancelled by PostgreSQL itself instead of holding a connection.
 */
export async function readClusterStats(pool: Database, timeoutMs: number): Promise<ClusterStats> {
  return withTransaction(pool, async (client) => {
    await client.query(`SELECT set_config('statement_timeout', $1, true)`, [String(timeoutMs)]);
    const { rows } = await client.query<{ users: number; with_photo: number; last_success: Date | null; pending_events: number; oldest_pending: Date | null }>(
      `SELECT (SELECT count(*) FROM users) AS users,
              (SELECT count(*) FROM users WHERE img_path IS NOT NULL) AS with_photo,
              (SELECT finished_at FROM runs WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1) AS last_success,
              (SELECT count(*) FROM pending_events) AS pending_events,
              (SELECT min(received_at) FROM pending_events) AS oldest_pending`,
    );
    const r = rows[0]!;
    return { users: r.users, usersWithPhoto: r.with_photo, lastSuccessAt: r.last_success, pendingEvents: r.pending_events, oldestPendingAt: r.oldest_pending };
  });
}
