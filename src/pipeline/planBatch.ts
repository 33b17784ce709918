import { classifyKey } from '../core/keys.js';
import type { BatchPlan, FileState, RunIssue, Tombstone, UserChange } from '../core/model.js';
import { isTombstoned } from '../core/model.js';
import type { UserBatch } from './diffSource.js';
import type { ProcessResult } from './processObject.js';
import type { CsvCount } from './resolveUser.js';
import { resolveUser } from './resolveUser.js';

export type { BatchPlan, UserChange } from '../core/model.js';

/** What is recorded of a batch's users, besides the keys it settles (loadBestFiles). */
export interface Recorded {
  /** Their newest valid files, or all their recorded files. */
  files: FileState[];
  /** With `files` holding only the newest: how many valid CSVs each user has (any: and CSVs of any status). */
  csvCounts?: Map<string, CsvCount & { any?: boolean }>;
  /** What erasures left of each user that was erased. */
  tombstones?: Map<string, Tombstone>;
}

/** ON_SOURCE_DELETE: whether a user whose last CSV went from the bucket is erased. */
export type OnSourceDelete = 'keep' | 'erase';

/**
 * Joins each user of the batch from the objects just processed and the states recorded
 * earlier (loaded just before, because an earlier batch may have recorded files of the same
 * user). A file version an erasure keeps out (isTombstoned; readStartedAtMs: when the item
 * began to read each object, on the database's clock) is recorded as erased, never joined.
 * Pure: the caller commits the plan.
 */
export function planBatch(
  batch: UserBatch,
  results: ProcessResult[],
  recorded: Recorded,
  srcBucket: string,
  opts: { onSourceDelete?: OnSourceDelete; readStartedAtMs?: Map<string, number> } = {},
): BatchPlan {
  const onSourceDelete = opts.onSourceDelete ?? 'keep';
  const { csvCounts, tombstones } = recorded;
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
      fresh.set(key, isTombstoned(tombstones?.get(userId), r.state, opts.readStartedAtMs?.get(key)) ? erased(r.state) : r.state);
      if (r.read) read++;
    }
  });

  const byUser = new Map<string, FileState[]>();
  // A recorded file of an erased user is checked too: only versions imported since the erasure are left.
  const kept = recorded.files.filter((f) => !fresh.has(f.key) && !isTombstoned(tombstones?.get(f.userId), f));
  for (const f of [...kept, ...fresh.values()]) {
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
    const goneKeys = (goneOf.get(userId) ?? []).map(([key]) => key);
    // Its CSV went, and no other CSV of it is in the bucket: none found now (read, or skipped this
    // time: it is there all the same), none recorded in any state.
    const lastCsvGone =
      goneKeys.some((k) => classifyKey(k)?.kind === 'csv') &&
      !batch.changed.some((o, i) => o.userId === userId && o.kind === 'csv' && results[i]?.kind !== 'vanished') &&
      !(recorded.csvCounts?.get(userId)?.any ?? hasCsv(byUser.get(userId)));
    return {
      userId,
      files,
      gone: goneKeys,
      row: res.row,
      rejected: files.filter((f) => f.status === 'rejected').map((f) => ({ key: f.key, reason: f.reason ?? '' })),
      warnings: res.warnings,
      erase: onSourceDelete === 'erase' && lastCsvGone,
    };
  });
  return { users, issues, read };
}

const erased = (f: FileState): FileState => ({ ...f, status: 'erased', csv: null, image: null, reason: null });

const hasCsv = (files: FileState[] | undefined) => (files ?? []).some((f) => f.kind === 'csv');

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
