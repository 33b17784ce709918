import type { SeenState, StoredFingerprint } from '../db/sourceFiles.js';
import type { SourceObject } from '../core/model.js';
import { fingerprintOf } from '../core/model.js';
import { compareKeys } from '../storage/keyOrder.js';
import type { ListedObject } from './listSource.js';

// Each change carries the fingerprint recorded when it was found (null: none), which the
// commit checks under the user lock: see commitItem, "newest wins".
export type SourceChange =
  /** New, or its etag, size or modification time differ from what was recorded. */
  | {
      kind: 'changed';
      userId: string;
      object: SourceObject;
      recorded: string | null;
      /** Recorded after the listing began: the listed state may be the older one. Look it up before reading. */
      verify?: true;
      /** When `recorded` was seen, or earlier, on the database's clock (SeenState.atMs). */
      seenAtMs?: number;
    }
  /** Recorded, but no longer listed. */
  | { kind: 'removed'; userId: string; key: string; recorded: string; seenAtMs?: number }
  /** A user file refused on its name before reading; never recorded, so it takes no part in the merge. */
  | { kind: 'refused'; key: string; reason: string };

export interface DiffStats {
  /** Listed keys that came after a larger key: the store did not list in byte order. */
  outOfOrder: number;
}

/**
 * Merges the listing with the recorded fingerprints, both walked in key order, and yields
 * only what changed. Memory does not grow with the bucket.
 *
 * S3 lists in byte order, and so does the folder store. Some S3-compatible servers list
 * folder by folder instead, so the merge must not depend on the order for correctness:
 * a recorded key the listing has passed is only a removal candidate until the listing ends,
 * and a key listed late is matched against those candidates.
 */
export async function* diffSource(
  listing: AsyncIterable<ListedObject>,
  recorded: AsyncIterable<StoredFingerprint>,
  opts: { full: boolean; stats?: DiffStats; listedFromMs?: number },
): AsyncGenerator<SourceChange> {
  const stored = recorded[Symbol.asyncIterator]();
  let head = await stored.next();
  const candidates = new Map<string, StoredFingerprint>();
  let last: string | null = null;

  for await (const object of listing) {
    if ('refused' in object) {
      yield { kind: 'refused', key: object.key, reason: object.refused };
      continue;
    }
    if (last !== null && compareKeys(object.key, last) < 0 && opts.stats) opts.stats.outOfOrder++;
    last = object.key;
    while (!head.done && compareKeys(head.value.key, object.key) < 0) {
      candidates.set(head.value.key, head.value);
      head = await stored.next();
    }
    let previous: StoredFingerprint | undefined;
    if (!head.done && head.value.key === object.key) {
      previous = head.value;
      head = await stored.next();
    } else {
      previous = candidates.get(object.key);
      candidates.delete(object.key);
    }
    if (opts.full || previous?.fingerprint !== fingerprintOf(object.etag, object.size, object.lastModifiedMs)) {
      // An event batch may have recorded the key after the listing saw it: then which of the
      // two is newer is unknown, and the item looks the object up again before reading it.
      const late = previous?.recordedAtMs !== undefined && opts.listedFromMs !== undefined && previous.recordedAtMs >= opts.listedFromMs;
      yield {
        kind: 'changed',
        userId: object.userId,
        object,
        recorded: previous?.fingerprint ?? null,
        ...(late ? { verify: true as const } : {}),
        ...(opts.listedFromMs !== undefined ? { seenAtMs: opts.listedFromMs } : {}),
      };
    }
  }
  while (!head.done) {
    candidates.set(head.value.key, head.value);
    head = await stored.next();
  }
  for (const c of candidates.values()) {
    yield { kind: 'removed', userId: c.userId, key: c.key, recorded: c.fingerprint, ...(opts.listedFromMs !== undefined ? { seenAtMs: opts.listedFromMs } : {}) };
  }
}

export interface UserBatch {
  /** Users in first-seen order, each once. */
  users: string[];
  changed: SourceObject[];
  removed: Array<{ key: string; userId: string }>;
  refused: Array<{ key: string; reason: string }>;
  /** The recorded state of each changed and removed object when the change was found. */
  seen: SeenState[];
  /** Changed keys to look up again before reading (see SourceChange's verify). */
  verify?: string[];
}

/** At most this much in one work item, whoever's objects they are (ITEM_MAX_OBJECTS, ITEM_MAX_BYTES). */
export interface ItemCaps {
  /** Changed, removed and refused objects. */
  objects: number;
  /** Listed sizes of the changed objects; one larger object still makes an item alone. */
  bytes: number;
}

/**
 * Groups changes into batches of up to `size` users, and at most `caps` objects and bytes. A
 * user's consecutive changes stay in one batch unless a cap cuts it. Changes of one user in
 * two batches (cut by a cap, or far apart in key order: one user_id in many folders) are
 * resolved by each batch from what is recorded so far (loadBestFiles), and the last batch to
 * commit leaves the right row.
 */
export async function* batchByUser(
  changes: AsyncIterable<SourceChange>,
  size: number,
  /**
   * Also cut a batch once the listing has moved this far (in listed objects, read from
   * listed()) since the batch began: few changes spread over a large bucket then start being
   * read while the listing goes on, instead of all at its end.
   */
  span?: { listed: () => number; objects: number },
  caps: ItemCaps = { objects: Infinity, bytes: Infinity },
): AsyncGenerator<UserBatch> {
  const empty = (): UserBatch => ({ users: [], changed: [], removed: [], refused: [], seen: [] });
  let batch = empty();
  let bytes = 0;
  const objects = () => batch.changed.length + batch.removed.length + batch.refused.length;
  const capped = (size: number) => objects() > 0 && (objects() + 1 > caps.objects || bytes + size > caps.bytes);
  let inBatch = new Set<string>();
  let current: string | null = null;
  // Where the listing was when the batch took its first change.
  let begunAt = 0;
  // Refused files count toward the size too, so a bucket full of them still commits in steps.
  const full = () =>
    batch.users.length + batch.refused.length >= size ||
    (span !== undefined && batch.users.length + batch.refused.length > 0 && span.listed() - begunAt >= span.objects);
  const next = () => {
    batch = empty();
    bytes = 0;
    inBatch = new Set();
    // The change at hand opens the next batch.
    begunAt = span?.listed() ?? 0;
  };
  for await (const change of changes) {
    if (span && batch.users.length + batch.refused.length === 0) begunAt = span.listed();
    if (change.kind === 'refused') {
      if (full() || capped(0)) {
        yield batch;
        next();
        current = null;
      }
      batch.refused.push({ key: change.key, reason: change.reason });
      continue;
    }
    const size = change.kind === 'changed' ? change.object.size : 0;
    if (capped(size)) {
      // Mid-user: the user goes on in the next batch.
      yield batch;
      next();
      current = null;
    }
    if (change.userId !== current) {
      if (full()) {
        yield batch;
        next();
      }
      current = change.userId;
      if (!inBatch.has(change.userId)) {
        inBatch.add(change.userId);
        batch.users.push(change.userId);
      }
    }
    bytes += size;
    if (change.kind === 'changed') {
      batch.changed.push(change.object);
      if (change.verify) (batch.verify ??= []).push(change.object.key);
    }
    else batch.removed.push({ key: change.key, userId: change.userId });
    const key = change.kind === 'changed' ? change.object.key : change.key;
    batch.seen.push(change.seenAtMs === undefined ? { key, fingerprint: change.recorded } : { key, fingerprint: change.recorded, atMs: change.seenAtMs });
  }
  if (batch.users.length + batch.refused.length > 0) yield batch;
}
