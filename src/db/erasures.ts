import type { Tombstone } from '../core/model.js';
import { versionOf } from '../core/model.js';
import { notifyUsersChanged, notifyUsersErased } from './changeFeed.js';
import { markEventsOweExport, markOutputStale } from './outputState.js';
import type { Database, Queryable } from './pool.js';
import { withTransaction } from './pool.js';
import { lockUsers } from './users.js';

export type ErasureReason = 'api' | 'source_delete';

/** An entry of the erasure log, as GET /erasures returns it: nothing of the person erased. */
export interface Erasure {
  id: number;
  erased_at: string;
  /** The first 16 hex digits of the user's salted hash: enough to tell entries apart. */
  user_ref: string;
  reason: ErasureReason;
  /** Versions of the user's files tombstoned: no run imports them again. */
  files: number;
  run_id: number | null;
}

// A user_id's or a key's salted SHA-256 (pipeline_state.erasure_salt).
const saltedHash = (expr: string) => `sha256((SELECT erasure_salt FROM pipeline_state WHERE id = 1) || convert_to(${expr}, 'UTF8'))`;

const ENTRY_COLUMNS = `id, to_char(erased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS erased_at,
  substr(encode(user_hash, 'hex'), 1, 16) AS user_ref, reason, files, run_id`;

/**
 * What erasures left of each of these users that was erased: the versions tombstoned under any
 * key, those tombstoned under each of `keys` (the keys an item reads), and its last API erasure.
 */
export async function loadTombstones(db: Queryable, userIds: string[], keys: string[]): Promise<Map<string, Tombstone>> {
  const out = new Map<string, Tombstone>();
  if (userIds.length === 0) return out;
  const { rows } = await db.query<{ user_id: string; api_ms: number | null; versions: Array<[string, number]> }>(
    `SELECT u.user_id,
       (SELECT (extract(epoch FROM max(e.erased_at)) * 1000)::float8 FROM erasures e WHERE e.user_hash = h.user_hash AND e.reason = 'api') AS api_ms,
       (SELECT coalesce(json_agg(json_build_array(t.etag, t.size)), '[]') FROM erasure_tombstones t
        WHERE t.user_hash = h.user_hash AND t.key_hash IS NULL) AS versions
     FROM (SELECT DISTINCT u AS user_id FROM unnest($1::text[]) AS u) u
     CROSS JOIN LATERAL (SELECT ${saltedHash('u.user_id')} AS user_hash) h
     WHERE EXISTS (SELECT 1 FROM erasures e WHERE e.user_hash = h.user_hash)`,
    [userIds],
  );
  for (const r of rows) {
    const versions = new Set(r.versions.map(([etag, size]) => versionOf(etag, size)));
    out.set(r.user_id, { versions, keys: new Map(), erasedAtMs: r.api_ms ?? Number.NEGATIVE_INFINITY });
  }
  if (out.size === 0 || keys.length === 0) return out;
  const byKey = await db.query<{ user_id: string; key: string; etag: string; size: number }>(
    `SELECT u.user_id, k.key, t.etag, t.size
     FROM (SELECT DISTINCT k AS key FROM unnest($2::text[]) AS k) k
     JOIN erasure_tombstones t ON t.key_hash = ${saltedHash('k.key')}
     JOIN unnest($1::text[]) AS u(user_id) ON t.user_hash = ${saltedHash('u.user_id')}`,
    [[...out.keys()], keys],
  );
  for (const r of byKey.rows) {
    const keyed = out.get(r.user_id)!.keys;
    keyed.set(r.key, (keyed.get(r.key) ?? new Set<string>()).add(versionOf(r.etag, r.size)));
  }
  return out;
}

/** Deletes the users' rows; returns the user_ids that had one. */
async function deleteUserRows(tx: Queryable, userIds: string[]): Promise<string[]> {
  const { rows } = await tx.query<{ user_id: string }>(`DELETE FROM users WHERE user_id = ANY($1::text[]) RETURNING user_id`, [userIds]);
  return rows.map((r) => r.user_id);
}

/**
 * Writes one log entry per user and tombstones versions of its recorded files (migration 010):
 * for an API erasure all of them, under any key; for a source delete the CSVs that went
 * (`gone`), under their own key. erased_at is taken now, with the user's lock held, not when
 * the transaction began, which may have waited for that lock while a run read the files.
 */
async function recordErasures(tx: Queryable, userIds: string[], reason: ErasureReason, runId: number | null, gone: string[] | null): Promise<Erasure[]> {
  const { rows } = await tx.query<Erasure>(
    `WITH versions AS (
       SELECT DISTINCT ${saltedHash('user_id')} AS user_hash, CASE WHEN $2 = 'source_delete' THEN ${saltedHash('key')} END AS key_hash, etag, size
       FROM source_files WHERE user_id = ANY($1::text[]) AND ($4::text[] IS NULL OR key = ANY($4::text[]))
     ),
     entries AS (
       INSERT INTO erasures (user_hash, reason, files, run_id, erased_at)
       SELECT h.user_hash, $2, (SELECT count(*) FROM versions v WHERE v.user_hash = h.user_hash), $3, clock_timestamp()
       FROM (SELECT DISTINCT ${saltedHash('u')} AS user_hash FROM unnest($1::text[]) AS u) h
       RETURNING *
     ),
     stones AS (
       INSERT INTO erasure_tombstones (user_hash, key_hash, etag, size, erasure_id)
       SELECT v.user_hash, v.key_hash, v.etag, v.size, e.id FROM versions v JOIN entries e USING (user_hash)
       ON CONFLICT DO NOTHING
     )
     SELECT ${ENTRY_COLUMNS} FROM entries ORDER BY id`,
    [userIds, reason, runId, gone],
  );
  return rows;
}

/**
 * Clears what the users' file records hold of them (names, birth dates) and marks them erased.
 * The records stay, so runs do not read those versions again until they change.
 */
async function scrubFileStates(tx: Queryable, userIds: string[]): Promise<void> {
  await tx.query(
    `UPDATE source_files SET status = 'erased', reason = NULL, first_name = NULL, last_name = NULL, birthts = NULL,
       img_format = NULL, img_width = NULL, img_height = NULL
     WHERE user_id = ANY($1::text[])`,
    [userIds],
  );
}

/** Forgets the run issues about the users' files: a reason may quote a cell of the CSV. */
async function forgetRunIssues(tx: Queryable, userIds: string[]): Promise<void> {
  await tx.query(
    `DELETE FROM run_issues WHERE user_id = ANY($1::text[]) OR key IN (SELECT key FROM source_files WHERE user_id = ANY($1::text[]))`,
    [userIds],
  );
  await tx.query(`DELETE FROM run_issue_left_out_users WHERE user_id = ANY($1::text[])`, [userIds]);
  // Targeted runs name their users in their scope (POST /data?user_id=). Not a running one:
  // its items hold its row FOR SHARE and may wait for this transaction's user locks; it drops
  // them when it ends (finishRun, erasedSince).
  await tx.query(
    `UPDATE runs SET scope = jsonb_set(scope, '{user_ids}', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(scope->'user_ids') x WHERE NOT (x #>> '{}') = ANY($1::text[])))
     WHERE scope IS NOT NULL AND status <> 'running' AND jsonb_typeof(scope->'user_ids') = 'array' AND (scope->'user_ids') ?| $1::text[]`,
    [userIds],
  );
}

/** SQL: whether the user_id `expr` was erased at or after `since` (for finishRun's scope). */
export const erasedSince = (expr: string, since: string) =>
  `EXISTS (SELECT 1 FROM erasures e WHERE e.user_hash = ${saltedHash(expr)} AND e.erased_at >= ${since})`;

/** Why users are erased: through the API, or because a run found their last CSV gone. */
export type ErasureCause = { reason: 'api' } | { reason: 'source_delete'; runId: number; gone: string[] };

/**
 * Erases the users that are stored, inside the caller's transaction, which must hold their
 * user locks (lockUsers): deletes their rows, logs one entry each, tombstones versions of their
 * files (recordErasures), and forgets the run issues about them. An API erasure also clears
 * what their file records hold (names, birth dates); a source delete leaves the records of the
 * files still in the bucket (photos) as they are, so a new CSV brings the user back with them.
 * Marks output.csv stale and owed (the event loop rewrites it soon, as after event batches),
 * and tells every instance to drop its cached pages and thumbnails. Users not stored are left alone.
 */
export async function eraseUsers(tx: Queryable, userIds: string[], cause: ErasureCause): Promise<Erasure[]> {
  if (userIds.length === 0) return [];
  const erased = await deleteUserRows(tx, userIds);
  if (erased.length === 0) return [];
  const api = cause.reason === 'api';
  const entries = await recordErasures(tx, erased, cause.reason, api ? null : cause.runId, api ? null : cause.gone);
  await forgetRunIssues(tx, erased);
  if (api) await scrubFileStates(tx, erased);
  await markOutputStale(tx);
  await markEventsOweExport(tx);
  await notifyUsersChanged(tx);
  await notifyUsersErased(tx);
  return entries;
}

export type EraseOutcome = { kind: 'erased'; erasure: Erasure } | { kind: 'erased-before'; erasure: Erasure } | { kind: 'not-found' };

/**
 * DELETE /data/:user_id. Under the user's lock, so a commit of the user (any run, any
 * instance) happens wholly before or after it; after, the tombstones keep its files out.
 * Erasing again a user erased before, and not imported since, reports that earlier entry.
 */
export async function eraseUser(db: Database, userId: string): Promise<EraseOutcome> {
  return withTransaction(db, async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await lockUsers(tx, [userId]);
    const [erasure] = await eraseUsers(tx, [userId], { reason: 'api' });
    if (erasure) return { kind: 'erased', erasure };
    const [before] = await listErasures(tx, { userId, limit: 1, newestFirst: true });
    return before ? { kind: 'erased-before', erasure: before } : { kind: 'not-found' };
  });
}

export interface ErasureFilter {
  /** Only the entries of this user_id (hashed here, never stored). */
  userId?: string;
  /** Keyset cursor: entries after this id, in the order asked. */
  afterId?: number;
  limit: number;
  newestFirst?: boolean;
}

/** A page of the erasure log, oldest first unless asked otherwise. */
export async function listErasures(db: Queryable, f: ErasureFilter): Promise<Erasure[]> {
  const params: unknown[] = [f.limit];
  const where: string[] = [];
  if (f.userId !== undefined) {
    params.push(f.userId);
    where.push(`user_hash = ${saltedHash(`$${params.length}::text`)}`);
  }
  if (f.afterId !== undefined) {
    params.push(f.afterId);
    where.push(`id ${f.newestFirst ? '<' : '>'} $${params.length}`);
  }
  const { rows } = await db.query<Erasure>(
    `SELECT ${ENTRY_COLUMNS} FROM erasures ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY id ${f.newestFirst ? 'DESC' : 'ASC'} LIMIT $1`,
    params,
  );
  return rows;
}
