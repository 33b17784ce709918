import pLimit from 'p-limit';
import type { Limits } from '../config.js';
import { within } from '../deadline.js';
import type { StoredFingerprint } from '../db/sourceFiles.js';
import type { FileKind } from '../core/model.js';
import { fingerprintOf } from '../core/model.js';
import type { ObjectInfo, ObjectStore } from '../storage/index.js';
import { compareKeys } from '../storage/keyOrder.js';
import { printable } from '../core/text.js';
import type { SourceChange } from './diffSource.js';
import { StoreFailure } from './failures.js';
import type { ListCounts } from './listSource.js';
import { checkKey, classifyKey } from '../core/keys.js';

/**
 * The changes behind a set of keys that events named, as diffSource would find them in a
 * listing: each key is looked up now, so a duplicate, late or out-of-order event leads to
 * the object's current state, and an event that changed nothing leads to nothing. Changes
 * come grouped by user, so batchByUser keeps each user in one batch.
 */
export async function changesForKeys(
  store: ObjectStore,
  bucket: string,
  keys: string[],
  recorded: Map<string, StoredFingerprint>,
  /** seenAtMs: when `recorded` was read, on the database's clock (SeenState.atMs). */
  opts: { limits: Limits; concurrency: number; counts: ListCounts; seenAtMs?: number },
): Promise<SourceChange[]> {
  const { counts } = opts;
  const users: Array<{ key: string; userId: string; kind: FileKind }> = [];
  const changes: SourceChange[] = [];
  for (const key of keys) {
    const cls = classifyKey(key);
    if (!cls) {
      counts.ignored++;
      continue;
    }
    counts.scanned++;
    // Refused on its name alone, as the listing would, and never looked up.
    const refused = checkKey(key, cls.userId);
    if (refused) changes.push({ kind: 'refused', key: printable(key), reason: refused });
    else users.push({ key, ...cls });
  }
  const seenAt = opts.seenAtMs === undefined ? {} : { seenAtMs: opts.seenAtMs };
  const limit = pLimit(opts.concurrency);
  const looked = await Promise.all(users.map((u) => limit(async () => ({ ...u, info: await headOne(store, bucket, u.key, opts.limits.objectTimeoutMs) }))));
  looked.sort((a, b) => compareKeys(a.userId, b.userId) || compareKeys(a.key, b.key));

  for (const { key, userId, kind, info } of looked) {
    const previous = recorded.get(key);
    if (info?.problem) changes.push({ kind: 'refused', key: printable(key), reason: info.problem });
    else if (!info) {
      if (previous) changes.push({ kind: 'removed', userId, key, recorded: previous.fingerprint, ...seenAt });
    } else if (previous?.fingerprint !== fingerprintOf(info.etag, info.size, info.lastModified.getTime())) {
      changes.push({
        kind: 'changed',
        userId,
        object: { key, userId, kind, size: info.size, etag: info.etag, lastModifiedMs: info.lastModified.getTime() },
        recorded: previous?.fingerprint ?? null,
        ...seenAt,
      });
    }
  }
  return changes;
}

/**
 * One key's current state. A lookup that fails while the store still answers is this key's
 * problem alone, reported as such; only the store failing as a whole throws.
 */
async function headOne(store: ObjectStore, bucket: string, key: string, timeoutMs: number): Promise<ObjectInfo | null> {
  try {
    const info = await within(timeoutMs, store.head(bucket, key));
    if (info !== 'timeout') return info;
  } catch {
    // Decided below.
  }
  const answered = await within(timeoutMs, store.ping(bucket)).then(
    (r) => r !== 'timeout',
    () => false,
  );
  if (!answered) throw new StoreFailure('the object store failed while looking up changed objects');
  return { key, size: 0, etag: '', lastModified: new Date(0), problem: 'the object store could not look it up (it answers for the bucket, not for this key)' };
}
