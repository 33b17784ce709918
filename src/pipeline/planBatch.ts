import type { BatchPlan, FileState, RunIssue, UserChange } from '../core/model.js';
import type { UserBatch } from './diffSource.js';
import type { ProcessResult } from './processObject.js';
import type { CsvCount } from './resolveUser.js';
import { resolveUser } from './resolveUser.js';

export type { BatchPlan, UserChange } from '../core/model.js';

/**
 * Joins each user of the batch from the objects just processed and the states recorded
 * earlier (loaded just before, because an earlier batch may have recorded files of the same
 * user). `recorded` may hold only each user's newest valid files, with `csvCounts` telling
 * how many valid CSVs each has besides those the batch read or found gone (loadBestFiles).
 * Pure: the caller commits the plan.
 */
export function planBatch(batch: UserBatch, results: ProcessResult[], recorded: FileState[], srcBucket: string, csvCounts?: Map<string, CsvCount>): BatchPlan {
  const fresh = new Map<string, FileState>();
  // Key -> user_id of every object gone from the bucket: removed since the last run, or just now.
  const gone = new Map(batch.removed.map((r) => [r.key, r.userId]));
  const issues: RunIssue[] = batch.refused.map((r) => ({ key: r.key, reason: r.reason }));
  let read = 0;
  results.forEach((r, idx) => {
    const { key, userId } = batch.changed[idx]!;
    if (r.kind === 'vanished') gone.set(key, userId);
    else if (r.kind === 'skipped') issues.push({ key, reason: r.reason });
    else {
      fresh.set(key, r.state);
      if (r.read) read++;
    }
  });

  const byUser = new Map<string, FileState[]>();
  for (const f of [...recorded.filter((f) => !fresh.has(f.key)), ...fresh.values()]) {
    if (gone.has(f.key)) continue;
    const list = byUser.get(f.userId);
    if (list) list.push(f);
    else byUser.set(f.userId, [f]);
  }
  const freshOf = groupBy([...fresh.values()], (f) => f.userId);
  const goneOf = groupBy([...gone], ([, userId]) => userId);

  const users = batch.users.map((userId): UserChange => {
    const files = freshOf.get(userId) ?? [];
    const counted = csvCounts?.get(userId) ?? (csvCounts ? { n: 0, atLeast: false } : undefined);
    const freshCsvs = files.filter((f) => f.kind === 'csv' && f.status === 'ok').length;
    const res = resolveUser(userId, byUser.get(userId) ?? [], srcBucket, counted && { n: counted.n + freshCsvs, atLeast: counted.atLeast });
    return {
      userId,
      files,
      gone: (goneOf.get(userId) ?? []).map(([key]) => key),
      row: res.row,
      rejected: files.filter((f) => f.status === 'rejected').map((f) => ({ key: f.key, reason: f.reason ?? '' })),
      warnings: res.warnings,
    };
  });
  return { users, issues, read };
}

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = keyOf(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}
