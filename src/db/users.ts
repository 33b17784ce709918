import type { UserRow } from '../model.js';
import type { Queryable } from './pool.js';

export interface UpsertResult {
  inserted: string[];
  updated: string[];
}

/**
 * Inserts or updates users by user_id in one statement. A row whose values did not change is
 * left alone (no new updated_at, no dead tuple), so counts tell real changes apart.
 */
export async function upsertUsers(db: Queryable, rows: UserRow[]): Promise<UpsertResult> {
  if (rows.length === 0) return { inserted: [], updated: [] };
  const { rows: out } = await db.query<{ user_id: string; inserted: boolean }>(
    `INSERT INTO users AS u (user_id, first_name, last_name, birthdate, img_path, img_format, img_width, img_height)
     SELECT t.user_id, t.first_name, t.last_name, 'epoch'::timestamptz + t.birthts * interval '1 millisecond', t.img_path, t.img_format, t.img_width, t.img_height
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::int[])
       AS t(user_id, first_name, last_name, birthts, img_path, img_format, img_width, img_height)
     ON CONFLICT (user_id) DO UPDATE SET
       first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, birthdate = EXCLUDED.birthdate,
       img_path = EXCLUDED.img_path, img_format = EXCLUDED.img_format, img_width = EXCLUDED.img_width,
       img_height = EXCLUDED.img_height, updated_at = now()
     WHERE (u.first_name, u.last_name, u.birthdate, u.img_path, u.img_format, u.img_width, u.img_height)
       IS DISTINCT FROM
       (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.birthdate, EXCLUDED.img_path, EXCLUDED.img_format,
        EXCLUDED.img_width, EXCLUDED.img_height)
     RETURNING u.user_id, (xmax = 0) AS inserted`,
    [
      rows.map((r) => r.userId),
      rows.map((r) => r.firstName),
      rows.map((r) => r.lastName),
      rows.map((r) => r.birthts),
      rows.map((r) => r.imgPath),
      rows.map((r) => r.imgFormat),
      rows.map((r) => r.imgWidth),
      rows.map((r) => r.imgHeight),
    ],
  );
  const result: UpsertResult = { inserted: [], updated: [] };
  for (const r of out) (r.inserted ? result.inserted : result.updated).push(r.user_id);
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
 * users there are. Each page is a short query, so no transaction is held open for the export.
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

export async function countUsers(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
  return rows[0]?.n ?? 0;
}
