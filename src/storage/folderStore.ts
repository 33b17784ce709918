import { constants, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { watchFolder } from './folderWatch.js';
import type { ObjectInfo, ObjectStore, ReadHint, StoreWatch } from './objectStore.js';
import { ObjectNotFoundError, ObjectUnreadableError } from './objectStore.js';
import { entryInfo, errnoCode, kindOf, tempName, walkFolder } from './folderWalk.js';

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
   * Every object, in key order, as walkFolder lists them; see there. With a prefix, only the
   * folder the prefix ends in is walked ("a/b/x" walks a/b), and only keys with the prefix come.
   */
  async *list(bucket: string, prefix = ''): AsyncIterable<ObjectInfo> {
    const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    if (folder !== '') {
      const parts = folder.slice(0, -1).split('/');
      // No file is under such a folder; and a folder on the way that is a link would lead
      // elsewhere, which the whole listing never follows.
      if (this.keyProblem(folder.slice(0, -1)) !== null) return;
      const real = await fs.realpath(path.join(this.bucketDir(bucket), ...parts)).catch(() => null);
      if (real !== path.join(await this.realBucketDir(bucket), ...parts)) return;
    }
    for await (const info of walkFolder(Buffer.from(this.bucketDir(bucket)), folder)) if (info.key.startsWith(prefix)) yield info;
  }

  async stat(bucket: string, key: string): Promise<ObjectInfo | null> {
    const info = await entryInfo(Buffer.from(this.filePath(bucket, key)), key);
    return info && !info.problem ? info : null;
  }

  /** Keys that name no file of a bucket, whatever is on disk. */
  keyProblem(key: string): string | null {
    for (const part of key.split('/')) {
      // "a//b.csv" or "../x.csv" can be an S3 key, but never a file in this bucket.
      if (part === '') return 'the key has an empty path part, which no file name can be';
      if (part === '.' || part === '..') return `the key has "${part}" as a path part, which no file name can be`;
      const bytes = Buffer.byteLength(part);
      if (bytes > MAX_NAME_BYTES) return `a path part of the key is ${bytes} bytes long, over the ${MAX_NAME_BYTES}-byte limit of a file name`;
    }
    return null;
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | null> {
    // Not found, never a file that cannot be read: lstat would fail with ENAMETOOLONG.
    if (this.keyProblem(key) !== null) return null;
    const file = this.filePath(bucket, key);
    // As in read(): a folder on the way that is a link would lead elsewhere, and the listing
    // never follows one. Such a key names no object of this bucket.
    if (key.includes('/')) {
      const parent = await fs.realpath(path.dirname(file)).catch(() => null);
      if (parent !== path.join(await this.realBucketDir(bucket), ...key.split('/').slice(0, -1))) return null;
    }
    const info = await entryInfo(Buffer.from(file), key);
    // A folder is walked by list(), never reported as an object; so here.
    if (info?.problem && (await fs.lstat(file).then((st) => st.isDirectory(), () => false))) return null;
    return info;
  }

  async watch(bucket: string, onKeys: (keys: string[]) => void, onError: (err: Error) => void): Promise<StoreWatch> {
    return watchFolder(this.bucketDir(bucket), onKeys, onError);
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
      // Closed here unless readOpened took it over (it closes it, or hands it to a stream).
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
    const tmp = path.join(path.dirname(target), tempName(randomBytes(6).toString('hex')));
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

// NAME_MAX on Linux file systems: a longer path part fails with ENAMETOOLONG.
const MAX_NAME_BYTES = 255;

// Errors of opening one file that say nothing about the store as a whole.
const OBJECT_ERRNO: Record<string, string> = {
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
  ELOOP: 'it is a symbolic link, which is not followed',
  EISDIR: 'it is a folder, not a regular file',
  ENXIO: 'it is a socket or device, not a regular file',
  ENAMETOOLONG: 'its path is too long for this file system (ENAMETOOLONG)',
};

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
