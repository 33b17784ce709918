import type { Queryable } from './pool.js';

/** A key waiting to be processed, and the event that last named it. */
export interface PendingEvent {
  key: string;
  seq: number;
}

/**
 * Records that these keys may have changed; duplicates collapse into one row per key. Durable
 * once this returns, which is what the webhook's 202 promises.
 */
export async function recordEvents(db: Queryable, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  // DISTINCT: one statement may not update the same row twice. A key named again keeps its
  // first_seq (its place in the batches' order) and takes the new seq (for forgetEvents).
  await db.query(
    `INSERT INTO pending_events (key, seq, first_seq)
     SELECT k, s, s FROM (SELECT k, nextval('pending_events_seq') AS s FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k) AS d) AS n
     ON CONFLICT (key) DO UPDATE SET seq = EXCLUDED.seq, received_at = now()`,
    [keys],
  );
}

/**
 * At most limit pending keys: half of them the oldest, half the newest, by the first event that
 * named each since it was last taken (first_seq). So a key recorded after a flood is taken by
 * the next batch (unless over limit/2 keys came after it first), and none is starved: a key
 * waits at most ceil(keys older than it / (limit/2)) batches, however often it is named again
 * meanwhile (by its last event, each naming would move it back into the middle). Each comes
 * with its last event's seq, for forgetEvents.
 */
export async function takePendingEvents(db: Queryable, limit: number): Promise<PendingEvent[]> {
  const newest = Math.floor(limit / 2);
  // UNION: with fewer than limit pending, both ends overlap and every key comes once. The
  // coalesce is pending_events_first_seq_idx's expression (null: a row an older version wrote).
  const { rows } = await db.query<PendingEvent>(
    `(SELECT key, seq FROM pending_events ORDER BY coalesce(first_seq, seq) LIMIT $1)
     UNION
     (SELECT key, seq FROM pending_events ORDER BY coalesce(first_seq, seq) DESC LIMIT $2)`,
    [limit - newest, newest],
  );
  return rows;
}

/**
 * Pending keys, counted up to limit: at most limit rows of the index, so it costs the same
 * however large a flood made the table (about 12 ms at 100,000).
 */
export async function countPendingUpTo(db: Queryable, limit: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT 1 FROM pending_events LIMIT $1) AS t`, [limit]);
  return rows[0]?.n ?? 0;
}

/** Forgets processed keys, except those an event named again since they were taken. */
export async function forgetEvents(db: Queryable, events: PendingEvent[]): Promise<void> {
  if (events.length === 0) return;
  await db.query(
    `DELETE FROM pending_events p USING unnest($1::text[], $2::bigint[]) AS d(key, seq)
     WHERE p.key = d.key AND p.seq = d.seq`,
    [events.map((e) => e.key), events.map((e) => e.seq)],
  );
}

export async function countPendingEvents(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pending_events`);
  return rows[0]?.n ?? 0;
}

export async function hasPendingEvents(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM pending_events) AS any`);
  return rows[0]?.any ?? false;
}
