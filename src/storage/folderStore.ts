import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { ObjectInfo, ObjectStore } from './objectStore.js';
import { ObjectNotFoundError } from './objectStore.js';
import { compareKeys } from './keyOrder.js';

// Temporary files of in-progress writes carry this prefix and are never listed.
const TMP_PREFIX = '.userjoin-tmp-';
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

  async ping(): Promise<void> {
    await fs.access(this.root);
  }

  async *list(bucket: string): AsyncIterable<ObjectInfo> {
    yield* this.listFolder(bucket, '');
  }

  /**
   * Depth-first, each folder's entries sorted with a "/" after folder names: that yields keys
   * in byte order, as S3 lists them ("a.csv" < "a/x.csv" < "a0.csv").
   */
  private async *listFolder(bucket: string, rel: string): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.bucketDir(bucket), rel), { withFileTypes: true });
    } catch (err) {
      // A folder removed while we walk is simply no longer there.
      if (isNotFound(err) && rel !== '') return;
      throw err;
    }
    const sorted = entries
      .filter((e) => !e.name.startsWith(TMP_PREFIX) && (e.isDirectory() || e.isFile()))
      .map((e) => ({ key: rel === '' ? e.name : `${rel}/${e.name}`, dir: e.isDirectory(), order: e.isDirectory() ? `${e.name}/` : e.name }))
      .sort((x, y) => compareKeys(x.order, y.order));
    let files: string[] = [];
    const flush = async function* (this: FolderStore): AsyncGenerator<ObjectInfo> {
      // stat() in parallel chunks: one at a time, a folder of 200,000 files takes several times longer.
      for (let i = 0; i < files.length; i += STAT_CHUNK) {
        const infos = await Promise.all(files.slice(i, i + STAT_CHUNK).map((key) => this.stat(bucket, key)));
        for (const info of infos) if (info) yield info;
      }
      files = [];
    }.bind(this);
    for (const entry of sorted) {
      if (!entry.dir) {
        files.push(entry.key);
        continue;
      }
      yield* flush();
      yield* this.listFolder(bucket, entry.key);
    }
    yield* flush();
  }

  async stat(bucket: string, key: string): Promise<ObjectInfo | null> {
    try {
      const st = await fs.stat(this.filePath(bucket, key));
      if (!st.isFile()) return null;
      // A folder has no content hash for free; size plus nanosecond mtime changes on every rewrite.
      return { key, size: st.size, etag: `${st.size.toString(16)}-${st.mtimeMs.toString(16)}`, lastModified: st.mtime };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async read(bucket: string, key: string): Promise<Readable> {
    const file = this.filePath(bucket, key);
    const handle = await fs.open(file, 'r').catch((err: unknown) => {
      throw isNotFound(err) ? new ObjectNotFoundError(bucket, key) : err;
    });
    return handle.createReadStream();
  }

  async write(bucket: string, key: string, body: Readable | Buffer): Promise<void> {
    const target = this.filePath(bucket, key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = path.join(path.dirname(target), `${TMP_PREFIX}${randomBytes(6).toString('hex')}`);
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
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'ENOENT';
}
