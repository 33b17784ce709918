import { checkKey, classifyKey } from '../core/keys.js';
import type { SourceObject } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { scopeFilter } from '../core/scope.js';
import type { ObjectInfo, ObjectStore } from '../storage/index.js';
import { printable } from '../core/text.js';
import { StoreFailure } from './failures.js';

/** A user file refused on its name or kind alone, before anything is read. */
export interface RefusedObject {
  /** Printable: control characters and bytes that are not UTF-8 are written as \xNN. */
  key: string;
  refused: string;
}

export type ListedObject = SourceObject | RefusedObject;

export interface ListCounts {
  /** Every object listed so far, user file or not. */
  listed: number;
  /** CSV and image objects. */
  scanned: number;
  /** Objects that are neither CSV nor a supported image. */
  ignored: number;
}

/**
 * Streams the source bucket's user files, nested prefixes included, in the store's listing
 * order. Nothing is kept: a bucket of any size lists in constant memory. A user file whose
 * name is unusable comes out as a RefusedObject; only the listing itself failing throws.
 * With a scope, only the objects inside it come out (and are counted as scanned or ignored).
 */
export async function* listSource(store: ObjectStore, bucket: string, counts: ListCounts, scope: RunScope | null = null): AsyncGenerator<ListedObject> {
  // A prefix narrows the store's own listing; a set of users cannot (their files may be in any
  // folder), so the listing passes only their keys on. Nothing outside the scope is read.
  const listing = store.list(bucket, scope?.prefix ?? undefined)[Symbol.asyncIterator]();
  const inScope = scopeFilter(scope);
  for (;;) {
    let next: IteratorResult<ObjectInfo>;
    try {
      next = await listing.next();
    } catch (err) {
      throw new StoreFailure('the object store failed while listing the source bucket', { cause: err });
    }
    if (next.done) return;
    const info = next.value;
    counts.listed++;
    const cls = classifyKey(info.key);
    if (!inScope(info.key, cls?.userId ?? null)) continue;
    // A folder that cannot be listed may hold user files, so it is reported too.
    if (!cls && !(info.problem && info.key.endsWith('/'))) {
      counts.ignored++;
      continue;
    }
    counts.scanned++;
    const refused = info.problem ?? checkKey(info.key, cls!.userId);
    if (refused) {
      yield { key: printable(info.key), refused };
      continue;
    }
    yield {
      key: info.key,
      userId: cls!.userId,
      kind: cls!.kind,
      size: info.size,
      etag: info.etag,
      lastModifiedMs: info.lastModified.getTime(),
    };
  }
}
