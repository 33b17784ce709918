import type { CsvOptions } from '../csv.js';
import { csvStream } from '../csv.js';
import type { Database, Queryable } from '../db/index.js';
import { withSnapshot } from '../db/index.js';
import { readOutputVersion } from '../db/outputState.js';
import type { ExportRow } from '../db/users.js';
import { streamUsersForExport } from '../db/users.js';
import type { ObjectStore } from '../storage/index.js';

export const OUTPUT_KEY = 'output.csv';

/**
 * The export failed on the database side. It reaches the caller through the store's write,
 * so it is marked to tell it from a failure of the store itself.
 */
export class ExportReadError extends Error {
  override name = 'ExportReadError';
}
export const OUTPUT_COLUMNS = ['user_id', 'first_name', 'last_name', 'birthts', 'img_path'] as const;

export interface ExportOptions extends CsvOptions {
  onRows?: (written: number) => void;
  pageSize?: number;
}

/**
 * Writes output.csv from the users table, so the file and the table always agree. Rows are
 * streamed page by page into the store, which replaces the object in one step. Every page is
 * read in one snapshot, so the file is the table at one moment even while users commit.
 * Returns the number of rows written and the table's version the snapshot saw.
 */
export async function exportOutput(
  db: Database,
  store: ObjectStore,
  bucket: string,
  opts: ExportOptions,
): Promise<{ rows: number; version: number }> {
  return withSnapshot(db, async (tx) => {
    const version = await readOutputVersion(tx);
    const rows = await writeFrom(tx, store, bucket, opts);
    return { rows, version };
  });
}

async function writeFrom(
  db: Queryable,
  store: ObjectStore,
  bucket: string,
  opts: ExportOptions,
): Promise<number> {
  let written = 0;
  async function* records() {
    const pages = streamUsersForExport(db, opts.pageSize);
    for (;;) {
      let page: IteratorResult<ExportRow[]>;
      try {
        page = await pages.next();
      } catch (err) {
        throw new ExportReadError('reading users for output.csv failed', { cause: err });
      }
      if (page.done) return;
      for (const u of page.value) yield [u.user_id, u.first_name, u.last_name, u.birthts, u.img_path];
      written += page.value.length;
      opts.onRows?.(written);
    }
  }
  await store.write(bucket, OUTPUT_KEY, csvStream(OUTPUT_COLUMNS, records(), opts), 'text/csv; charset=utf-8');
  return written;
}

