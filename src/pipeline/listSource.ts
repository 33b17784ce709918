import path from 'node:path';
import type { FileKind, SourceObject } from '../core/model.js';
import type { ObjectInfo, ObjectStore } from '../storage/index.js';
import { codePointName, firstControlChar, printable } from '../core/text.js';
import { StoreFailure } from './failures.js';

const CSV_EXTENSIONS = new Set(['csv']);
// The formats sharp reads in its prebuilt binaries that a user photo plausibly comes in.
export const IMAGE_EXTENSIONS = new Set(['png', 'jpg', 'jpeg', 'webp', 'gif', 'tif', 'tiff', 'avif']);

/**
 * Which user a key belongs to and whether it is a CSV or an image; null for anything else.
 * The user_id is the file name without its extension, whatever folder it is in.
 */
export function classifyKey(key: string): { userId: string; kind: FileKind } | null {
  if (key.endsWith('/')) return null; // a folder marker some S3 tools create
  const base = path.posix.basename(key);
  const ext = path.posix.extname(base); // "" for dotfiles such as ".csv"
  if (ext === '') return null;
  const userId = base.slice(0, -ext.length);
  const e = ext.slice(1).toLowerCase();
  if (CSV_EXTENSIONS.has(e)) return { userId, kind: 'csv' };
  if (IMAGE_EXTENSIONS.has(e)) return { userId, kind: 'image' };
  return null;
}

// S3's limit. Also what keeps every key inside PostgreSQL's b-tree entry limit (2704 bytes).
export const MAX_KEY_BYTES = 1024;

/**
 * Why a user file's key cannot be used, or null when it can. Keys end up in the database, in
 * output.csv and in logs, so control characters and oversized keys are refused up front.
 */
export function checkKey(key: string, userId: string): string | null {
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_KEY_BYTES) return `the key is ${bytes} bytes long, over the ${MAX_KEY_BYTES}-byte limit of S3`;
  const control = firstControlChar(key);
  if (control) return `the key contains the control character ${codePointName(control.char)}`;
  if (userId.trim() === '') return 'the user_id (the file name without its extension) is blank';
  return null;
}

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
 */
export async function* listSource(store: ObjectStore, bucket: string, counts: ListCounts): AsyncGenerator<ListedObject> {
  const listing = store.list(bucket)[Symbol.asyncIterator]();
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
