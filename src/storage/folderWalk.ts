import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import { decodeUtf8Lenient } from '../text.js';
import type { ObjectInfo } from './objectStore.js';

// The folder store's listing: a walk of the bucket folder that turns every entry into an
// ObjectInfo, a problem entry included, and never follows a link.

// Temporary files of in-progress writes are named so, and only these names are not listed.
const TMP_NAME = /^\.userjoin-tmp-[0-9a-f]{12}$/;
export const tempName = (hex12: string): string => `.userjoin-tmp-${hex12}`;
const SLASH = Buffer.from('/');
const STAT_CHUNK = 64;

/**
 * Every entry below root, depth-first, each folder's entries sorted by their raw bytes with a
 * "/" after folder names: that yields keys in byte order, as S3 lists them ("a.csv" <
 * "a/x.csv" < "a0.csv"). Names are read as bytes, so a name that is not UTF-8 is reported
 * rather than lost; so are links, pipes, devices and folders that cannot be listed (see
 * ObjectInfo.problem). The walk keeps its own stack instead of recursing: anyone can nest
 * folders thousands deep.
 */
export async function* walkFolder(root: Buffer): AsyncGenerator<ObjectInfo> {
  const bucketFolder = await readFolder(root, '', true);
  // The bucket folder itself failing throws in readFolder: that is the store's failure.
  if (!bucketFolder || 'problem' in bucketFolder) throw new Error('the bucket folder cannot be listed');
  const stack: Folder[] = [bucketFolder];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const entry = top.entries[top.next];
    if (!entry) {
      stack.pop();
      continue;
    }
    if (entry.isDir) {
      top.next++;
      const name = decodeUtf8Lenient(entry.raw);
      const child = await readFolder(Buffer.concat([top.dir, SLASH, entry.raw]), `${top.prefix}${name.text}/`, top.valid && name.valid);
      if (child && 'problem' in child) yield child.problem;
      else if (child) stack.push(child);
      continue;
    }
    // A run of files, lstat()ed in parallel chunks: one at a time, a folder of 200,000 files takes several times longer.
    const chunk: Array<Promise<ObjectInfo | null>> = [];
    for (let e = top.entries[top.next]; e && !e.isDir && chunk.length < STAT_CHUNK; e = top.entries[++top.next]) {
      const name = decodeUtf8Lenient(e.raw);
      const key = top.prefix + name.text;
      chunk.push(
        top.valid && name.valid ? entryInfo(Buffer.concat([top.dir, SLASH, e.raw]), key) : Promise.resolve(problemEntry(key, 'the file name is not valid UTF-8')),
      );
    }
    for (const info of await Promise.all(chunk)) if (info) yield info;
  }
}

interface Folder {
  dir: Buffer;
  /** Key prefix of the folder's entries, "" or ending in "/". */
  prefix: string;
  /** False once any name on the way is not UTF-8: nothing below can be read by its key. */
  valid: boolean;
  entries: Array<{ raw: Buffer; isDir: boolean }>;
  next: number;
}

/** A folder's entries in key order; a problem entry if it cannot be listed; null if gone. */
async function readFolder(dir: Buffer, prefix: string, valid: boolean): Promise<Folder | { problem: ObjectInfo } | null> {
  let entries: Dirent<Buffer>[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    // The bucket itself failing is the store's failure; a subfolder failing is its own.
    if (prefix === '') throw err;
    if (isNotFound(err) || errnoCode(err) === 'ENOTDIR') return null; // removed while we walk
    return { problem: problemEntry(prefix, `the folder cannot be listed (${errnoCode(err) ?? 'error'})`) };
  }
  const sorted = (
    await Promise.all(
      entries
        .filter((e) => !isTempName(e.name))
        .map(async (e) => {
          const isDir = hasKnownType(e) ? e.isDirectory() : await isFolder(Buffer.concat([dir, SLASH, e.name]));
          return { raw: e.name, isDir, order: isDir ? Buffer.concat([e.name, SLASH]) : e.name };
        }),
    )
  ).sort((x, y) => Buffer.compare(x.order, y.order));
  return { dir, prefix, valid, entries: sorted, next: 0 };
}

/** Our own in-progress writes; any other name, however similar, is listed. */
function isTempName(name: Buffer): boolean {
  return TMP_NAME.test(name.toString('latin1'));
}

function problemEntry(key: string, problem: string): ObjectInfo {
  return { key, size: 0, etag: '', lastModified: new Date(0), problem };
}

/** What lstat says about one entry: a regular file's info, a problem entry, or null if gone. */
export async function entryInfo(file: Buffer, key: string): Promise<ObjectInfo | null> {
  let st;
  try {
    st = await fs.lstat(file);
  } catch (err) {
    if (isNotFound(err) || errnoCode(err) === 'ENOTDIR') return null;
    // One entry that cannot even be looked at must not stop the listing.
    return problemEntry(key, `the file cannot be read (${errnoCode(err) ?? 'error'})`);
  }
  if (st.isSymbolicLink() && (await isFolderFollowing(file))) {
    // Keyed as a folder, so that it is reported whatever its name: it may hold user files.
    return problemEntry(`${key}/`, 'it is a symbolic link to a folder, which is not followed');
  }
  if (!st.isFile()) return problemEntry(key, `it is ${kindOf(st)}, not a regular file`);
  // A folder has no content hash for free; size plus nanosecond mtime changes on every rewrite.
  return { key, size: st.size, etag: `${st.size.toString(16)}-${st.mtimeMs.toString(16)}`, lastModified: st.mtime };
}

function isNotFound(err: unknown): boolean {
  return errnoCode(err) === 'ENOENT';
}

export function errnoCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

export function kindOf(st: { isSymbolicLink(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'a special file';
}

// Some file systems do not report entry types in a listing; then lstat says.
function hasKnownType(e: Dirent<Buffer>): boolean {
  return e.isFile() || e.isDirectory() || e.isSymbolicLink() || e.isFIFO() || e.isSocket() || e.isCharacterDevice() || e.isBlockDevice();
}

async function isFolderFollowing(file: Buffer): Promise<boolean> {
  return fs.stat(file).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

async function isFolder(file: Buffer): Promise<boolean> {
  return fs.lstat(file).then(
    (st) => st.isDirectory(),
    () => false,
  );
}
