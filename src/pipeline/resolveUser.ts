import type { FileState, RunIssue, UserRow } from '../core/model.js';

export interface Resolution {
  /** The row to store, or null to leave the user as it is (no valid CSV present). */
  row: UserRow | null;
  warnings: RunIssue[];
}

/** Newest first; on equal modification times the smallest key wins, so the choice is stable. */
function newestFirst(a: FileState, b: FileState): number {
  const d = b.lastModifiedMs - a.lastModifiedMs;
  if (d !== 0) return d;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * Joins one user's current files into the row to store: the newest valid CSV, and the newest
 * valid image if any. Without a valid CSV the user is left untouched: the source bucket is a
 * landing zone, so a deleted or broken CSV never removes or degrades a stored user.
 */
export function resolveUser(userId: string, files: FileState[], srcBucket: string): Resolution {
  const csvs = files.filter((f) => f.kind === 'csv' && f.status === 'ok').sort(newestFirst);
  const images = files.filter((f) => f.kind === 'image' && f.status === 'ok').sort(newestFirst);
  const csv = csvs[0];
  if (!csv?.csv) return { row: null, warnings: [] };

  const warnings: RunIssue[] = csvs.slice(1).map((other) => ({
    key: other.key,
    reason: `user_id "${userId}" also has the newer CSV ${csv.key}; this one is ignored`,
  }));
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
    },
    warnings,
  };
}
