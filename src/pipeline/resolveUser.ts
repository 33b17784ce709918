import type { FileState, RunIssue, UserRow } from '../core/model.js';
import { compareKeys } from '../storage/keyOrder.js';

export interface Resolution {
  /** The row to store, or null to leave the user as it is (no valid CSV present). */
  row: UserRow | null;
  warnings: RunIssue[];
}

/**
 * Newest first; on equal modification times the smallest key wins, so the choice is stable.
 * Keys compare in byte order, as the database picks a user's newest files (loadBestFiles).
 */
function newestFirst(a: FileState, b: FileState): number {
  const d = b.lastModifiedMs - a.lastModifiedMs;
  return d !== 0 ? d : compareKeys(a.key, b.key);
}

/** How many valid CSVs the user has in all, when `files` holds only its newest ones. */
export interface CsvCount {
  n: number;
  /** Counting stopped at a limit: it has at least n. */
  atLeast: boolean;
}

// Keys of ignored CSVs named in the one warning, besides the one it is about.
const EXAMPLES = 3;

/**
 * Joins one user's current files into the row to store: the newest valid CSV, and the newest
 * valid image if any. Without a valid CSV the user is left untouched: the source bucket is a
 * landing zone, so a deleted or broken CSV never removes or degrades a stored user.
 */
export function resolveUser(userId: string, files: FileState[], srcBucket: string, count?: CsvCount): Resolution {
  const csvs = files.filter((f) => f.kind === 'csv' && f.status === 'ok').sort(newestFirst);
  const images = files.filter((f) => f.kind === 'image' && f.status === 'ok').sort(newestFirst);
  const csv = csvs[0];
  if (!csv?.csv) return { row: null, warnings: [] };
  const warnings = severalCsvs(userId, csvs, count ?? { n: csvs.length, atLeast: false });
  const image = images[0];
  return {
    row: {
      userId,
      firstName: csv.csv.firstName,
      lastName: csv.csv.lastName,
      birthts: csv.csv.birthts,
      imgPath: image ? `${srcBucket}/${image.key}` : null,
      imgFormat: image?.image?.format ?? null,
      imgWidth: image?.image?.width ?? null,
      imgHeight: image?.image?.height ?? null,
      source: { csvKey: csv.key, csvEtag: csv.etag, imgKey: image?.key ?? null, imgEtag: image?.etag ?? null },
    },
    warnings,
  };
}

/**
 * One warning per user, however many CSVs it has: it names the newest ignored one, how many
 * more there are, and a few of them. A user in 20,000 folders made 20,000 warnings per item.
 */
function severalCsvs(userId: string, csvs: FileState[], count: CsvCount): RunIssue[] {
  const [used, ignored] = csvs;
  if (!used || !ignored) return [];
  const more = Math.max(0, count.n - 2);
  const examples = csvs.slice(2, 2 + EXAMPLES).map((f) => f.key);
  const rest = more > 0 ? `, and so are ${more}${count.atLeast ? ' or more' : ''} other CSVs of this user_id, such as ${examples.join(', ')}` : '';
  return [{ key: ignored.key, reason: `user_id "${userId}" also has the newer CSV ${used.key}; this one is ignored${rest}`, userId }];
}
