import type { UserRow } from '../core/model.js';
import type { Queryable } from './pool.js';

// Class of the per-user locks, apart from the run lock: two-key advisory locks are their own space.
const USER_LOCK_CLASS = 7_330_103;
// Users are locked by hash bucket. Advisory locks fill PostgreSQL's shared lock table
// (max_locks_per_transaction x max_connections, about 6,400 by default), so a lock per user
// of a 50,000-user batch would fail; 256 buckets bound it at 256 per transaction.
const USER_LOCK_BUCKETS = 256;

/**
 * Takes transaction-level locks on the users' hash buckets, in a fixed order (so two
 * transactions never wait on each other in a circle), held until commit: two work items never
 * commit the same user at once. Items whose users share a bucket take turns to commit.
 */
export async function lockUsers(tx: Queryable, userIds: string[]): Promise<void> {
  if (userIds.length === 0) return;
  await tx.query(
    `SELECT pg_advisory_xact_lock($2, k) FROM (SELECT DISTINCT hashtext(u) & ($3 - 1) AS k FROM unnest($1::text[]) AS u ORDER BY 1) AS s`,
    [userIds, USER_LOCK_CLASS, USER_LOCK_BUCKETS],
  );
}

export interface UpsertResult {
  inserted: string[];
  updated: string[];
  /**
   * Changed again after the same run inserted or updated them: a user whose files sit far
   * apart in key order is written by two batches. Counted once, by the first batch.
   */
  rewrittenThisRun: string[];
  /** Only the lineage changed (a new version of a file with the same values): not counted as updated. */
  relinked: string[];
}

// The row's data, and its lineage: what decides whether an upsert changes a row, and how it counts.
const DATA_COLUMNS = ['first_name', 'last_name', 'birthdate', 'img_path', 'img_format', 'img_width', 'img_height'];
const LINEAGE_COLUMNS = ['csv_key', 'csv_etag', 'img_key', 'img_etag'];
const tuple = (alias: string, columns: string[]) => `(${columns.map((c) => `${alias}.${c}`).join(', ')})`;
const DATA_CHANGED = `${tuple('u', DATA_COLUMNS)} IS DISTINCT FROM ${tuple('EXCLUDED', DATA_COLUMNS)}`;

/**
 * Inserts or updates users by user_id in one statement. A row whose values and lineage did not
 * change is left alone (no dead tuple). With a runId, a changed row that this run already
 * inserted or updated is reported apart.
 *
 * Lineage (csv_*, img_*) is always made true: a new version of a file with the same values
 * moves it, and the row's changed_run_id and changed_at with it, so `source` names the run that
 * read the versions it names. Such a row is reported as relinked, not updated: run counts and
 * updated_at are about changes of the data, and output.csv does not carry lineage.
 */
export async function upsertUsers(db: Queryable, rows: UserRow[], runId: number | null = null): Promise<UpsertResult> {
  if (rows.length === 0) return { inserted: [], updated: [], rewrittenThisRun: [], relinked: [] };
  // "prior" sees the rows as they were before this statement: whether the data changes, and
  // what the run had done to them.
  const { rows: out } = await db.query<{ user_id: string; inserted: boolean; data_changed: boolean | null; rewritten: boolean | null }>(
    `WITH t AS (
       SELECT user_id, first_name, last_name, 'epoch'::timestamptz + birthts * interval '1 millisecond' AS birthdate,
              img_path, img_format, img_width, img_height, csv_key, csv_etag, img_key, img_etag
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::int[],
                   $10::text[], $11::text[], $12::text[], $13::text[])
         AS t(user_id, first_name, last_name, birthts, img_path, img_format, img_width, img_height, csv_key, csv_etag, img_key, img_etag)
     ),
     prior AS (
       SELECT u.user_id, u.updated_at, ${tuple('u', DATA_COLUMNS)} IS DISTINCT FROM ${tuple('t', DATA_COLUMNS)} AS data_changed
       FROM users u JOIN t USING (user_id)
     ),
     up AS (
       INSERT INTO users AS u (user_id, first_name, last_name, birthdate, img_path, img_format, img_width, img_height,
                               csv_key, csv_etag, img_key, img_etag, changed_run_id, changed_at)
       SELECT t.user_id, t.first_name, t.last_name, t.birthdate, t.img_path, t.img_format, t.img_width, t.img_height,
              t.csv_key, t.csv_etag, t.img_key, t.img_etag, $9::bigint, now()
       FROM t
       ON CONFLICT (user_id) DO UPDATE SET
         first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, birthdate = EXCLUDED.birthdate,
         img_path = EXCLUDED.img_path, img_format = EXCLUDED.img_format, img_width = EXCLUDED.img_width,
         img_height = EXCLUDED.img_height,
         updated_at = CASE WHEN ${DATA_CHANGED} THEN now() ELSE u.updated_at END,
         csv_key = EXCLUDED.csv_key, csv_etag = EXCLUDED.csv_etag, img_key = EXCLUDED.img_key, img_etag = EXCLUDED.img_etag,
         changed_run_id = EXCLUDED.changed_run_id, changed_at = now()
       WHERE ${DATA_CHANGED} OR ${tuple('u', LINEAGE_COLUMNS)} IS DISTINCT FROM ${tuple('EXCLUDED', LINEAGE_COLUMNS)}
       RETURNING u.user_id, (xmax = 0) AS inserted
     )
     SELECT up.user_id, up.inserted, prior.data_changed,
       prior.updated_at >= (SELECT started_at FROM runs WHERE id = $9) AS rewritten
     FROM up LEFT JOIN prior USING (user_id)`,
    [
      rows.map((r) => r.userId),
      rows.map((r) => r.firstName),
      rows.map((r) => r.lastName),
      rows.map((r) => r.birthts),
      rows.map((r) => r.imgPath),
      rows.map((r) => r.imgFormat),
      rows.map((r) => r.imgWidth),
      rows.map((r) => r.imgHeight),
      runId,
      rows.map((r) => r.source.csvKey),
      rows.map((r) => r.source.csvEtag),
      rows.map((r) => r.source.imgKey),
      rows.map((r) => r.source.imgEtag),
    ],
  );
  const result: UpsertResult = { inserted: [], updated: [], rewrittenThisRun: [], relinked: [] };
  for (const r of out) {
    // data_changed is null only for a row another transaction inserted meanwhile: a change.
    const into = r.inserted ? result.inserted : r.data_changed === false ? result.relinked : r.rewritten ? result.rewrittenThisRun : result.updated;
    into.push(r.user_id);
  }
  return result;
}

/** A user as output.csv needs it. */
export interface ExportRow {
  user_id: string;
  first_name: string;
  last_name: string;
  birthts: number;
  img_path: string | null;
}

/**
 * Every user ordered by user_id, fetched in keyset pages so memory stays flat however many
 * users there are. Read them in one snapshot (withSnapshot), so the pages are one moment.
 */
export async function* streamUsersForExport(db: Queryable, pageSize = 5000): AsyncGenerator<ExportRow[]> {
  let after: string | null = null;
  for (;;) {
    const { rows }: { rows: ExportRow[] } = await db.query<ExportRow>(
      `SELECT user_id, first_name, last_name,
              (extract(epoch FROM birthdate) * 1000)::bigint AS birthts, img_path
       FROM users
       WHERE $1::text IS NULL OR user_id > $1::text
       ORDER BY user_id
       LIMIT $2`,
      [after, pageSize],
    );
    if (rows.length === 0) return;
    yield rows;
    after = rows[rows.length - 1]!.user_id;
    if (rows.length < pageSize) return;
  }
}


/** A user as the HTTP API returns it. */
export interface ApiUser {
  id: number;
  user_id: string;
  first_name: string;
  last_name: string;
  birthdate: string;
  birthts: number;
  img_path: string | null;
  img_format: string | null;
  img_width: number | null;
  img_height: number | null;
  created_at: string;
  updated_at: string;
  source: ApiSource;
}

/** Lineage: the file versions the row was joined from, and the run that last changed it. */
export interface ApiSource {
  csv: { key: string; etag: string } | null;
  image: { key: string; etag: string } | null;
  run_id: number | null;
  changed_at: string | null;
}

export interface UserFilter {
  /** Inclusive bounds on age in years (decimals allowed), as elapsed calendar time. */
  minAge?: number;
  maxAge?: number;
  hasImage?: boolean;
  /** Keyset cursor: only users whose user_id sorts after this one. */
  afterUserId?: string;
  /** The moment ages are measured at; defaults to the database's now(). */
  asOf?: Date;
}

const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const API_COLUMNS = `id, user_id, first_name, last_name,
  ${iso('birthdate')} AS birthdate,
  (extract(epoch FROM birthdate) * 1000)::bigint AS birthts,
  img_path, img_format, img_width, img_height,
  ${iso('created_at')} AS created_at,
  ${iso('updated_at')} AS updated_at,
  json_build_object(
    'csv', CASE WHEN csv_key IS NOT NULL THEN json_build_object('key', csv_key, 'etag', csv_etag) END,
    'image', CASE WHEN img_key IS NOT NULL THEN json_build_object('key', img_key, 'etag', img_etag) END,
    'run_id', changed_run_id,
    'changed_at', ${iso('changed_at')}) AS source`;

/**
 * Builds the WHERE clause. An age bound becomes a birthdate bound ("age >= 30.5" is "born on
 * or before now - 30 years 6 months"), which the birthdate index serves. Multiplying an
 * interval of one year keeps calendar months: 30.5 years is 366 months, not 11140 days.
 */
function whereClause(f: UserFilter, params: unknown[]): string {
  const clauses: string[] = [];
  const asOf = () => {
    if (f.asOf === undefined) return 'now()';
    params.push(f.asOf);
    return `$${params.length}::timestamptz`;
  };
  const bornBy = (years: number) => {
    const at = asOf();
    params.push(years);
    return `${at} - $${params.length}::numeric * interval '1 year'`;
  };
  if (f.minAge !== undefined) clauses.push(`birthdate <= ${bornBy(f.minAge)}`);
  if (f.maxAge !== undefined) clauses.push(`birthdate >= ${bornBy(f.maxAge)}`);
  if (f.hasImage !== undefined) clauses.push(f.hasImage ? 'img_path IS NOT NULL' : 'img_path IS NULL');
  if (f.afterUserId !== undefined) {
    params.push(f.afterUserId);
    clauses.push(`user_id > $${params.length}`);
  }
  return clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
}

/** One page of users matching the filter, ordered by user_id. */
export async function queryUsers(db: Queryable, filter: UserFilter, limit: number): Promise<ApiUser[]> {
  const params: unknown[] = [];
  const where = whereClause(filter, params);
  params.push(limit);
  const { rows } = await db.query<ApiUser>(`SELECT ${API_COLUMNS} FROM users ${where} ORDER BY user_id LIMIT $${params.length}`, params);
  return rows;
}

/** Every user matching the filter, page by page, so a million rows never sit in memory at once. */
export async function* streamUsers(db: Queryable, filter: UserFilter, pageSize = 1000): AsyncGenerator<ApiUser[]> {
  // Measure every page's ages at the same instant, so a long stream is one consistent answer.
  const asOf = filter.asOf ?? new Date();
  let after = filter.afterUserId;
  for (;;) {
    const page = await queryUsers(db, { ...filter, asOf, afterUserId: after }, pageSize);
    if (page.length === 0) return;
    yield page;
    if (page.length < pageSize) return;
    after = page[page.length - 1]!.user_id;
  }
}

export async function getUser(db: Queryable, userId: string): Promise<ApiUser | null> {
  const { rows } = await db.query<ApiUser>(`SELECT ${API_COLUMNS} FROM users WHERE user_id = $1`, [userId]);
  return rows[0] ?? null;
}
