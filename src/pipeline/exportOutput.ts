import { csvStream } from '../csv.js';
import type { Queryable } from '../db/index.js';
import { streamUsersForExport } from '../db/users.js';
import type { ObjectStore } from '../storage/index.js';

export const OUTPUT_KEY = 'output.csv';
export const OUTPUT_COLUMNS = ['user_id', 'first_name', 'last_name', 'birthts', 'img_path'] as const;

/**
 * Writes output.csv from the users table, so the file and the table always agree. Rows are
 * streamed page by page into the store, which replaces the object in one step.
 * Returns the number of rows written.
 */
export async function exportOutput(
  db: Queryable,
  store: ObjectStore,
  bucket: string,
  onRows?: (written: number) => void,
): Promise<number> {
  let written = 0;
  async function* records() {
    for await (const page of streamUsersForExport(db)) {
      for (const u of page) yield [u.user_id, u.first_name, u.last_name, String(u.birthts), u.img_path ?? ''];
      written += page.length;
      onRows?.(written);
    }
  }
  await store.write(bucket, OUTPUT_KEY, csvStream(OUTPUT_COLUMNS, records()), 'text/csv; charset=utf-8');
  return written;
}

