import type { UserRow } from '../core/model.js';
import type { Queryable } from './pool.js';

/** A user as stored now, as a dry run compares it. */
export interface CurrentUser {
  /** Its row's data (its lineage aside), or null when it has none. */
  row: Omit<UserRow, 'source'> | null;
  /** Whether it has a valid CSV recorded: it is counted among the bucket's users. */
  validCsv: boolean;
}

/** These users as stored now, for a dry run to compare its plan with (read only). */
export async function currentUsers(db: Queryable, userIds: string[]): Promise<Map<string, CurrentUser>> {
  const { rows } = await db.query<{
    user_id: string;
    first_name: string | null;
    last_name: string | null;
    birthts: string | null;
    img_path: string | null;
    img_format: string | null;
    img_width: number | null;
    img_height: number | null;
    valid_csv: boolean;
  }>(
    `SELECT x.user_id, u.first_name, u.last_name, (extract(epoch FROM u.birthdate) * 1000)::bigint AS birthts,
            u.img_path, u.img_format, u.img_width, u.img_height,
            EXISTS (SELECT 1 FROM source_files f WHERE f.user_id = x.user_id AND f.kind = 'csv' AND f.status = 'ok') AS valid_csv
     FROM unnest($1::text[]) AS x(user_id) LEFT JOIN users u ON u.user_id = x.user_id`,
    [userIds],
  );
  return new Map(
    rows.map((r) => [
      r.user_id,
      {
        row:
          r.first_name === null
            ? null
            : {
                userId: r.user_id,
                firstName: r.first_name,
                lastName: r.last_name ?? '',
                birthts: Number(r.birthts),
                imgPath: r.img_path,
                imgFormat: r.img_format,
                imgWidth: r.img_width,
                imgHeight: r.img_height,
              },
        validCsv: r.valid_csv,
      },
    ]),
  );
}
