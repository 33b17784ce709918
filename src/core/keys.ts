import path from 'node:path';
import type { FileKind } from './model.js';
import { codePointName, firstControlChar, firstInvisibleChar } from './text.js';

// The key rules, shared by the listing and by events: which keys are user files, whose, and
// which names are refused before anything is read.

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
 * output.csv and in logs, so control characters and oversized keys are refused up front, and
 * user_ids that would look like another one or like a path step.
 */
export function checkKey(key: string, userId: string): string | null {
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_KEY_BYTES) return `the key is ${bytes} bytes long, over the ${MAX_KEY_BYTES}-byte limit of S3`;
  const control = firstControlChar(key);
  if (control) return `the key contains the control character ${codePointName(control.char)}`;
  if (userId.trim() === '') return 'the user_id (the file name without its extension) is blank';
  const invisible = firstInvisibleChar(userId);
  if (invisible) return `the user_id contains the invisible character ${codePointName(invisible.char)}`;
  // "..csv" gives ".": a URL such as /data/./image would normalise to another route.
  if (userId === '.' || userId === '..') return `the user_id is "${userId}", a path step`;
  // Refused, not normalised: two keys that differ only in normalisation are two objects, and
  // normalising would merge them into one user. Refusing keeps one user_id per key.
  if (userId !== userId.normalize('NFC')) return 'the user_id is not in Unicode NFC form; rename the file';
  return null;
}
