import type { FileState, Tombstone } from '../core/model.js';
import { fingerprintOf } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { prefixUpperBound } from '../core/scope.js';
import { loadTombstones } from './erasures.js';
import type { Queryable } from './pool.js';

export interface StoredFingerprint {
  key: string;
  userId: string;
  /** See fingerprintOf. */
  fingerprint: string;
  /** When it was recorded (the recording transaction's start), ms since the epoch. */
  recordedAtMs?: number;
}

// Large enough that round trips do not matter, small enough that a page is a few MB.
const FINGERPRINT_PAGE = 5000;

/**
 * Every recorded object in key order (COLLATE "C": UTF-8 byte order, as S3 lists), page by
 * page, with the next page fetched while this one is consumed. Memory stays at two pages.
 *
 * Pages are fetched as the merge needs them, so a page may hold what an event batch recorded
 * after the listing passed that key: recordedAtMs tells such entries apart (see diffSource).
 */
export async function* iterateFingerprints(db: Queryable, pageSize = FINGERPRINT_PAGE, scope: RunScope | null = null): AsyncGenerator<StoredFingerprint> {
  type Row = [key: string, userId: string, etag: string, size: number, lastModifiedMs: number, recordedAtMs: number];
  // A scope's recorded keys only: a prefix is one range of the key index, [prefix, upper).
  const prefix = scope?.prefix ?? null;
  const upper = prefix === null ? null : prefixUpperBound(prefix);
  const fetchPage = (after: string | null): Promise<{ rows: Row[] }> =>
    db.query<Row>({
      text: `SELECT key, user_id, etag, size, (extract(epoch FROM last_modified) * 1000)::float8, (extract(epoch FROM processed_at) * 1000)::float8
             FROM source_files
             WHERE ($1::text IS NULL OR key > $1) AND ($3::text IS NULL OR key >= $3) AND ($4::text IS NULL OR key < $4)
               AND ($5::text[] IS NULL OR user_id = ANY($5))
             ORDER BY key LIMIT $2`,
      values: [after, pageSize, prefix, upper, scope?.userIds ?? null],
      rowMode: 'array',
    });
  let next: Promise<{ rows: Row[] }> | null = fetchPage(null);
  while (next) {
    const rows: Row[] = (await next).rows;
    next = rows.length === pageSize ? fetchPage(rows.at(-1)![0]) : null;
    // Without this, an error in a prefetch the caller never awaits would be unhandled.
    next?.catch(() => undefined);
    for (const [key, userId, etag, size, lm, at] of rows) yield { key, userId, fingerprint: fingerprintOf(etag, size, lm), recordedAtMs: at };
  }
}

/** The database's clock now, ms since the epoch: the clock recordedAtMs is on. */
export async function databaseNowMs(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ ms: number }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`);
  return rows[0]!.ms;
}

/** The recorded fingerprints of the given keys; keys never recorded are absent. */
export async function fingerprintsOf(db: Queryable, keys: string[]): Promise<Map<string, StoredFingerprint>> {
  const { rows } = await db.query<{ key: string; user_id: string; etag: string; size: number; lm: number }>(
    `SELECT key, user_id, etag, size, (extract(epoch FROM last_modified) * 1000)::float8 AS lm
     FROM source_files WHERE key = ANY($1::text[])`,
    [keys],
  );
  return new Map(rows.map((r) => [r.key, { key: r.key, userId: r.user_id, fingerprint: fingerprintOf(r.etag, r.size, r.lm) }]));
}

/** A key's recorded fingerprint as a reader saw it before reading the object; null: not recorded. */
export interface SeenState {
  key: string;
  fingerprint: string | null;
  /** When it was seen (or earlier), on the database's clock: a removal after it is a move too. */
  atMs?: number;
}

/**
 * The keys whose recorded state is no longer the one seen, with the state recorded now (null:
 * no longer recorded). Called under the users' locks: a commit whose reads started from an
 * older record than the current one may hold older objects, and must read them again.
 */
export async function movedSince(db: Queryable, seen: SeenState[]): Promise<SeenState[]> {
  if (seen.length === 0) return [];
  const { rows } = await db.query<{ key: string; etag: string | null; size: number | null; lm: number | null; removed: number | null; now: number }>(
    `SELECT s.key, f.etag, f.size, (extract(epoch FROM f.last_modified) * 1000)::float8 AS lm,
            (extract(epoch FROM r.removed_at) * 1000)::float8 AS removed, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now
     FROM unnest($1::text[]) AS s(key) LEFT JOIN source_files f ON f.key = s.key LEFT JOIN source_removals r ON r.key = s.key`,
    [seen.map((s) => s.key)],
  );
  const byKey = new Map(rows.map((r) => [r.key, r]));
  return seen.flatMap((s) => {
    const r = byKey.get(s.key);
    const current = !r || r.etag === null ? null : fingerprintOf(r.etag, r.size ?? 0, r.lm ?? 0);
    // Not recorded then and now, but recorded and removed in between: it moved all the same.
    const removedSince = current === null && s.fingerprint === null && r?.removed != null && r.removed >= (s.atMs ?? 0);
    return current === s.fingerprint && !removedSince ? [] : [{ key: s.key, fingerprint: current, atMs: r?.now ?? 0 }];
  });
}

interface FileRow {
  key: string;
  user_id: string;
  kind: 'csv' | 'image';
  etag: string;
  size: number;
  last_modified: Date;
  status: 'ok' | 'rejected' | 'erased';
  reason: string | null;
  first_name: string | null;
  last_name: string | null;
  birthts: number | null;
  img_format: string | null;
  img_width: number | null;
  img_height: number | null;
}

function toFileState(r: FileRow): FileState {
  const base = { key: r.key, userId: r.user_id, kind: r.kind, etag: r.etag, size: r.size, lastModifiedMs: r.last_modified.getTime() };
  if (r.status === 'rejected') return { ...base, status: 'rejected', reason: r.reason ?? '', csv: null, image: null };
  if (r.status === 'erased') return { ...base, status: 'erased', reason: null, csv: null, image: null };
  return {
    ...base,
    status: 'ok',
    reason: null,
    csv: r.kind === 'csv' ? { firstName: r.first_name ?? '', lastName: r.last_name ?? '', birthts: r.birthts ?? 0 } : null,
    image: r.kind === 'image' ? { format: r.img_format ?? '', width: r.img_width ?? 0, height: r.img_height ?? 0 } : null,
  };
}

// Enough CSVs to name the winner, the one warned about and a few examples.
const BEST_CSVS = 5;
// Valid CSVs of a user counted for its warning, at most: counting stops here, so an item's
// cost does not grow with the user's number of files (the warning then says "at least").
export const CSV_COUNT_LIMIT = 10_000;

/** The recorded files a commit resolves its users from (see loadBestFiles). */
export interface RecordedBest {
  /** Per user, its newest valid CSVs (up to BEST_CSVS) and its newest valid image. */
  files: FileState[];
  /**
   * Per user, its valid CSVs recorded beside those the item settles; atLeast: counting stopped at
   * CSV_COUNT_LIMIT; any: it has some CSV recorded besides those, valid or not.
   */
  csvCounts: Map<string, { n: number; atLeast: boolean; any: boolean }>;
  /** What erasures left of each of these users that was erased. */
  tombstones: Map<string, Tombstone>;
}

/**
 * What resolving these users needs from the record, besides the keys the item settles (reads
 * anew or finds gone): their newest valid files and how many valid CSVs they have. Newest
 * first by modification time, then smallest key (byte order, as resolveUser breaks ties).
 * Each user costs a few index entries (source_files_user_newest_idx) however many files it
 * has, so a user spread over many items is resolved in linear work, never all at once.
 */
export async function loadBestFiles(db: Queryable, userIds: string[], settled: string[]): Promise<RecordedBest> {
  const { rows } = await db.query<FileRow>(
    `SELECT f.* FROM unnest($1::text[]) AS u(user_id)
     CROSS JOIN (VALUES ('csv', $3::int), ('image', 1)) AS k(kind, n)
     CROSS JOIN LATERAL (
       SELECT * FROM source_files f
       WHERE f.user_id = u.user_id AND f.kind = k.kind AND f.status = 'ok' AND NOT (f.key = ANY($2::text[]))
       ORDER BY f.last_modified DESC, f.key LIMIT k.n) f`,
    [userIds, settled, BEST_CSVS],
  );
  const counts = await db.query<{ user_id: string; n: number; any: boolean }>(
    `SELECT u.user_id, (SELECT count(*)::int FROM (
        SELECT 1 FROM source_files f
        WHERE f.user_id = u.user_id AND f.kind = 'csv' AND f.status = 'ok' AND NOT (f.key = ANY($2::text[])) LIMIT $3) c) AS n,
       EXISTS (SELECT 1 FROM source_files f WHERE f.user_id = u.user_id AND f.kind = 'csv' AND NOT (f.key = ANY($2::text[]))) AS any
     FROM unnest($1::text[]) AS u(user_id)`,
    [userIds, settled, CSV_COUNT_LIMIT],
  );
  return {
    files: rows.map(toFileState),
    csvCounts: new Map(counts.rows.map((r) => [r.user_id, { n: r.n, atLeast: r.n >= CSV_COUNT_LIMIT, any: r.any }])),
    tombstones: await loadTombstones(db, userIds, settled),
  };
}

/** Inserts or replaces file states, all in one statement. */
export async function saveFileStates(db: Queryable, files: FileState[]): Promise<void> {
  if (files.length === 0) return;
  await db.query(
    `INSERT INTO source_files AS f (key, user_id, kind, etag, size, last_modified, status, reason,
        first_name, last_name, birthts, img_format, img_width, img_height, processed_at)
     SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::int[], $14::int[])
     ON CONFLICT (key) DO UPDATE SET
        user_id = EXCLUDED.user_id, kind = EXCLUDED.kind, etag = EXCLUDED.etag, size = EXCLUDED.size,
        last_modified = EXCLUDED.last_modified, status = EXCLUDED.status, reason = EXCLUDED.reason,
        first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, birthts = EXCLUDED.birthts,
        img_format = EXCLUDED.img_format, img_width = EXCLUDED.img_width, img_height = EXCLUDED.img_height,
        processed_at = now()`,
    [
      files.map((f) => f.key),
      files.map((f) => f.userId),
      files.map((f) => f.kind),
      files.map((f) => f.etag),
      files.map((f) => f.size),
      files.map((f) => new Date(f.lastModifiedMs)),
      files.map((f) => f.status),
      files.map((f) => f.reason),
      files.map((f) => f.csv?.firstName ?? null),
      files.map((f) => f.csv?.lastName ?? null),
      files.map((f) => f.csv?.birthts ?? null),
      files.map((f) => f.image?.format ?? null),
      files.map((f) => f.image?.width ?? null),
      files.map((f) => f.image?.height ?? null),
    ],
  );
}

/** Forgets objects that are gone from the bucket, leaving a tombstone of each (see movedSince). Users are never deleted here. */
export async function deleteFileStates(db: Queryable, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await db.query(
    `WITH gone AS (DELETE FROM source_files WHERE key = ANY($1::text[]) RETURNING key)
     INSERT INTO source_removals (key, removed_at) SELECT key, clock_timestamp() FROM gone
     ON CONFLICT (key) DO UPDATE SET removed_at = EXCLUDED.removed_at`,
    [keys],
  );
}

/** Tombstones older than any work item can be: an item outlives its lease by far less. */
export async function pruneRemovals(db: Queryable): Promise<void> {
  await db.query(`DELETE FROM source_removals WHERE removed_at < now() - interval '1 day'`);
}

/** Users that currently have a valid CSV in the bucket (with a scope: inside it). */
export async function countUsersWithValidCsv(db: Queryable, scope: RunScope | null = null): Promise<number> {
  const prefix = scope?.prefix ?? null;
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(DISTINCT user_id)::int AS n FROM source_files WHERE kind = 'csv' AND status = 'ok'
       AND ($1::text IS NULL OR key >= $1) AND ($2::text IS NULL OR key < $2) AND ($3::text[] IS NULL OR user_id = ANY($3))`,
    [prefix, prefix === null ? null : prefixUpperBound(prefix), scope?.userIds ?? null],
  );
  return rows[0]?.n ?? 0;
}
