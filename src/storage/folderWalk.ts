import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import { decodeUtf8Lenient } from '../core/text.js';
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
 * folders thousands deep. With `under` (a key prefix ending in "/"), only that folder is walked.
 */
export async function* walkFolder(root: Buffer, under = ''): AsyncGenerator<ObjectInfo> {
  let start: Folder;
  if (under === '') {
    const bucketFolder = await readFolder(root, '', true);
    // The bucket folder itself failing throws in readFolder: that is the store's failure.
    if (!bucketFolder || 'problem' in bucketFolder) throw new Error('the bucket folder cannot be listed');
    start = bucketFolder;
  } else {
    // A folder inside (under ends with "/"): missing, it lists nothing; unreadable, it is reported.
    const folder = await readFolder(Buffer.concat([root, SLASH, Buffer.from(under.slice(0, -1))]), under, true);
    if (!folder) return;
    if ('problem' in folder) {
      yield folder.problem;
      return;
    }
    start = folder;
  }
  const stack: Folder[] = [start];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next >= top.order.length) {
      stack.pop();
      continue;
    }
    const first = top.order[top.next]!;
    if (top.names.isDir(first)) {
      top.next++;
      const raw = top.names.name(first);
      const name = decodeUtf8Lenient(raw);
      const child = await readFolder(Buffer.concat([top.dir, SLASH, raw]), `${top.prefix}${name.text}/`, top.valid && name.valid);
      if (child && 'problem' in child) yield child.problem;
      else if (child) stack.push(child);
      continue;
    }
    // A run of files, lstat()ed in parallel chunks: one at a time, a folder of 200,000 files takes several times longer.
    const chunk: Array<Promise<ObjectInfo | null>> = [];
    for (; top.next < top.order.length && chunk.length < STAT_CHUNK; top.next++) {
      const e = top.order[top.next]!;
      if (top.names.isDir(e)) break;
      const raw = top.names.name(e);
      const name = decodeUtf8Lenient(raw);
      const key = top.prefix + name.text;
      chunk.push(
        top.valid && name.valid ? entryInfo(Buffer.concat([top.dir, SLASH, raw]), key) : Promise.resolve(problemEntry(key, 'the file name is not valid UTF-8')),
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
  names: PackedNames;
  /** Entry numbers in key order. */
  order: Uint32Array;
  next: number;
}

/**
 * A folder's entry names packed into one buffer: about a dozen bytes per entry instead of
 * the few hundred that a Dirent and its Buffer cost. A flat bucket folder of 570,000 files
 * (300,000 users) is held whole while it is walked, so this sets the listing's memory.
 */
export class PackedNames {
  private bytes = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private starts = new Uint32Array(1024);
  private ends = new Uint32Array(1024);
  private dirs = new Uint8Array(1024);
  count = 0;

  add(name: Buffer, isDir: boolean): number {
    if (this.used + name.length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + name.length));
      this.bytes.copy(grown, 0, 0, this.used);
      this.bytes = grown;
    }
    if (this.count === this.starts.length) {
      this.starts = grow(this.starts);
      this.ends = grow(this.ends);
      this.dirs = grow(this.dirs);
    }
    name.copy(this.bytes, this.used);
    this.starts[this.count] = this.used;
    this.used += name.length;
    this.ends[this.count] = this.used;
    this.dirs[this.count] = isDir ? 1 : 0;
    return this.count++;
  }

  setDir(i: number, isDir: boolean): void {
    this.dirs[i] = isDir ? 1 : 0;
  }

  isDir(i: number): boolean {
    return this.dirs[i] === 1;
  }

  /** A view of entry i's name; valid until the next add(). */
  name(i: number): Buffer {
    return this.bytes.subarray(this.starts[i], this.ends[i]);
  }

  /**
   * Entry numbers in key order: by raw bytes, a folder's name compared as if it ended in "/",
   * so that "a.csv" < "a/x.csv" < "a0.csv", as S3 lists them.
   */
  keyOrder(): Uint32Array {
    const order = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) order[i] = i;
    const { bytes, starts, ends, dirs } = this;
    return order.sort((a, b) => {
      const as = starts[a]!, ae = ends[a]!, bs = starts[b]!, be = ends[b]!;
      const al = ae - as, bl = be - bs;
      const common = Math.min(al, bl);
      const c = bytes.compare(bytes, bs, bs + common, as, as + common);
      if (c !== 0 || al === bl) return c;
      // One name is a prefix of the other: the shorter one's next byte is "/" for a folder,
      // and nothing (which sorts first) for a file.
      if (al < bl) return dirs[a] ? SLASH_BYTE - bytes[bs + common]! || 1 : -1;
      return dirs[b] ? bytes[as + common]! - SLASH_BYTE || -1 : 1;
    });
  }
}

const SLASH_BYTE = 0x2f;

function grow<T extends Uint32Array | Uint8Array>(a: T): T {
  const bigger = new (a.constructor as new (n: number) => T)(a.length * 2);
  bigger.set(a);
  return bigger;
}

/** A folder's entries in key order; a problem entry if it cannot be listed; null if gone. */
async function readFolder(dir: Buffer, prefix: string, valid: boolean): Promise<Folder | { problem: ObjectInfo } | null> {
  const names = new PackedNames();
  try {
    // Streamed, so no array of Dirents for the whole folder is ever held.
    // @types/node leaves out 'buffer' here, but Node supports it: names stay raw bytes.
    const listing = await fs.opendir(dir, { encoding: 'buffer' as BufferEncoding, bufferSize: 256 });
    const unknown: Array<Promise<void>> = [];
    for await (const e of listing as AsyncIterable<Dirent<Buffer>>) {
      if (isTempName(e.name)) continue;
      if (hasKnownType(e)) {
        names.add(e.name, e.isDirectory());
        continue;
      }
      const i = names.add(e.name, false);
      unknown.push(isFolder(Buffer.concat([dir, SLASH, e.name])).then((isDir) => names.setDir(i, isDir)));
      if (unknown.length >= STAT_CHUNK) await Promise.all(unknown.splice(0));
    }
    await Promise.all(unknown);
  } catch (err) {
    // The bucket itself failing is the store's failure; a subfolder failing is its own.
    if (prefix === '') throw err;
    if (isNotFound(err) || errnoCode(err) === 'ENOTDIR') return null; // removed while we walk
    return { problem: problemEntry(prefix, `the folder cannot be listed (${errnoCode(err) ?? 'error'})`) };
  }
  return { dir, prefix, valid, names, order: names.keyOrder(), next: 0 };
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
