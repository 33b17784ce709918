import path from 'node:path';
import type { FileKind, SourceObject } from '../model.js';
import type { ObjectStore } from '../storage/index.js';

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
 * order. Nothing is kept: a bucket of any size lists in constant memory.
 */
export async function* listSource(store: ObjectStore, bucket: string, counts: ListCounts): AsyncGenerator<SourceObject> {
  for await (const info of store.list(bucket)) {
    counts.listed++;
    const cls = classifyKey(info.key);
    if (!cls) {
      counts.ignored++;
      continue;
    }
    counts.scanned++;
    yield {
      key: info.key,
      userId: cls.userId,
      kind: cls.kind,
      size: info.size,
      etag: info.etag,
      lastModifiedMs: info.lastModified.getTime(),
    };
  }
}
