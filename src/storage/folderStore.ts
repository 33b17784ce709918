import type { Dirent } from 'node:fs';
import { constants, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { ObjectInfo, ObjectStore, ReadHint } from './objectStore.js';
import { ObjectNotFoundError, ObjectUnreadableError } from './objectStore.js';
import { decodeUtf8Lenient } from '../text.js';

// Temporary files of in-progress writes carry this prefix and are never listed.
const TMP_PREFIX_TEXT = '.userjoin-tmp-';
const TMP_NAME = /^\.userjoin-tmp-[0-9a-f]{12}$/;
const SLASH = Buffer.from('/');
const STAT_CHUNK = 64;

/**
 * The embedded store: each bucket is a subfolder of `root`, each object a file. Keys use
 * "/" whatever the platform.
 */
export class FolderStore implements ObjectStore {
  readonly description: string;

  constructor(private readonly root: string) {
    this.description = `folder:${root}`;
  }

  private bucketDir(bucket: string): string {
    return path.join(this.root, bucket);
  }

  private filePath(bucket: string, key: string): string {
    const parts = key.split('/');
    if (key === '' || parts.some((p) => p === '' || p === '.' || p === '..')) {
      throw new Error(`invalid object key: ${JSON.stringify(key)}`);
    }
    return path.join(this.bucketDir(bucket), ...parts);
  }

  async ensureBucket(bucket: string): Promise<void> {
    await fs.mkdir(this.bucketDir(bucket), { recursive: true });
  }

  async ping(bucket: string): Promise<void> {
    const st = await fs.stat(this.bucketDir(bucket));
    if (!st.isDirectory()) throw new Error(`bucket ${bucket} is not a folder`);
  }

  /**
   * Depth-first, each folder's entries sorted by their raw bytes with a "/" after folder
   * names: that yields keys in byte order, as S3 lists them ("a.csv" < "a/x.csv" < "a0.csv").
   * Names are read as bytes, so a name that is not UTF-8 is reported rather than lost. The
   * walk keeps its own stack instead of recursing: anyone can nest folders thousands deep.
   */
  async *list(bucket: string): AsyncIterable<ObjectInfo> {
    const root = await readFolder(Buffer.from(this.bucketDir(bucket)), '', true);
    if (!root || 'problem' in root) throw new Error(`bucket ${bucket} cannot be listed`);
    const stack: Folder[] = [root];
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

  async stat(bucket: string, key: string): Promise<ObjectInfo | null> {
    const info = await entryInfo(Buffer.from(this.filePath(bucket, key)), key);
    return info && !info.problem ? info : null;
  }

  async read(bucket: string, key: string, hint: ReadHint = {}): Promise<Readable> {
    const file = this.filePath(bucket, key);
    let handle: fs.FileHandle;
    try {
      // O_NOFOLLOW: a symbolic link could point anywhere on this machine. O_NONBLOCK: opening a
      // FIFO would otherwise wait for a writer forever.
      handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new ObjectNotFoundError(bucket, key);
      const reason = code ? OBJECT_ERRNO[code] : undefined;
      if (reason) throw new ObjectUnreadableError(key, reason, { cause: err });
      throw err;
    }
    let handedOver = false;
    try {
      // O_NOFOLLOW covers the last part of the path only: a folder on the way, swapped for a
      // link since the listing, would lead outside the bucket. Linux says where the file really
      // is. A key without a folder has no such part.
      if (key.includes('/')) {
        const real = await fs.readlink(`/proc/self/fd/${handle.fd}`).catch(() => null);
        if (real !== null && !real.startsWith(`${await this.realBucketDir(bucket)}${path.sep}`)) {
          throw new ObjectUnreadableError(key, 'its path leads outside the bucket through a symbolic link');
        }
      }
      // The usual case: the file is as listed, and one read gets it all. Exactly the listed
      // size, and no byte more, is what a regular file gives; a pipe or device would not.
      const expected = hint.size;
      if (expected !== undefined && expected > 0 && expected < ONE_READ_MAX) {
        const buf = Buffer.allocUnsafe(expected + 1);
        const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
        if (bytesRead === expected) return Readable.from([buf.subarray(0, bytesRead)]);
      }
      const st = await handle.stat();
      if (!st.isFile()) throw new ObjectUnreadableError(key, `it is ${kindOf(st)}, not a regular file`);
      const stream = await readOpened(handle, st.size);
      handedOver = true;
      return stream;
    } catch (err) {
      if (err instanceof ObjectUnreadableError) throw err;
      // Reading a pipe or a folder fails (EAGAIN, EISDIR): say what it is.
      const st = await handle.stat().catch(() => null);
      const reason = st && !st.isFile() ? `it is ${kindOf(st)}, not a regular file` : OBJECT_ERRNO[errnoCode(err) ?? ''];
      throw reason ? new ObjectUnreadableError(key, reason, { cause: err }) : err;
    } finally {
      // Closed here unless a stream took it over; closing twice is harmless.
      if (!handedOver) await handle.close().catch(() => undefined);
    }
  }

  private readonly realDirs = new Map<string, Promise<string>>();
  private realBucketDir(bucket: string): Promise<string> {
    let real = this.realDirs.get(bucket);
    if (!real) {
      real = fs.realpath(this.bucketDir(bucket));
      real.catch(() => this.realDirs.delete(bucket));
      this.realDirs.set(bucket, real);
    }
    return real;
  }

  async write(bucket: string, key: string, body: Readable | Buffer): Promise<void> {
    const target = this.filePath(bucket, key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = path.join(path.dirname(target), `${TMP_PREFIX_TEXT}${randomBytes(6).toString('hex')}`);
    try {
      const out = createWriteStream(tmp, { flags: 'wx' });
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, out);
      // rename() within one folder is atomic: readers see the old file or the new one.
      await fs.rename(tmp, target);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }
}

function isNotFound(err: unknown): boolean {
  return errnoCode(err) === 'ENOENT';
}

function errnoCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

// Errors of opening one file that say nothing about the store as a whole.
const OBJECT_ERRNO: Record<string, string> = {
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
  ELOOP: 'it is a symbolic link, which is not followed',
  EISDIR: 'it is a folder, not a regular file',
  ENXIO: 'it is a socket or device, not a regular file',
  ENAMETOOLONG: 'its path is too long for this file system (ENAMETOOLONG)',
};

function kindOf(st: { isSymbolicLink(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
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

// Files up to this size are read in one call: every call is a trip through libuv's thread
// pool, which sharp uses too, and a stream takes three (read, read to see the end, close).
const ONE_READ_MAX = 1024 * 1024;

/**
 * The bytes of an opened regular file of the given size, closing the handle. One read covers
 * a small file, with one byte to spare to notice that it grew; a larger or growing file is
 * streamed, and the caller stops reading at its own limit.
 */
export async function readOpened(handle: fs.FileHandle, size: number): Promise<Readable> {
  if (size >= ONE_READ_MAX) return handle.createReadStream();
  const buf = Buffer.allocUnsafe(size + 1);
  const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
  if (bytesRead <= size) {
    await handle.close();
    return Readable.from([buf.subarray(0, bytesRead)]);
  }
  return Readable.from(
    (async function* () {
      try {
        yield buf;
        yield* handle.createReadStream({ start: buf.length, autoClose: false }) as AsyncIterable<Buffer>;
      } finally {
        // Also when the reader stops early, at its byte limit.
        await handle.close();
      }
    })(),
  );
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
async function entryInfo(file: Buffer, key: string): Promise<ObjectInfo | null> {
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
