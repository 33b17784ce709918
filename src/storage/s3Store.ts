import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, S3Error } from 'minio';
import type { StoreConfig } from '../config.js';
import type { ObjectInfo, ObjectStore } from './objectStore.js';
import { ObjectNotFoundError } from './objectStore.js';

export type S3Options = Omit<Extract<StoreConfig, { kind: 's3' }>, 'kind'>;

// Streams of unknown length are uploaded in parts of this size, so this bounds the memory an
// upload of output.csv holds. 5 MiB is the S3 minimum.
const PART_SIZE = 16 * 1024 * 1024;

const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchObject']);
const ALREADY_EXISTS_CODES = new Set(['BucketAlreadyOwnedByYou', 'BucketAlreadyExists']);

/**
 * Any S3-compatible server through the `minio` client: MinIO, AWS S3, Garage, SeaweedFS.
 * Path-style addressing, because self-hosted servers rarely have wildcard DNS for buckets.
 */
export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: Client;

  constructor(private readonly opts: S3Options) {
    this.description = `s3:${opts.useSSL ? 'https' : 'http'}://${opts.endPoint}:${opts.port}`;
    this.client = new Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      region: opts.region,
      pathStyle: true,
      partSize: PART_SIZE,
    });
  }

  async ensureBucket(bucket: string): Promise<void> {
    if (await this.client.bucketExists(bucket)) return;
    try {
      await this.client.makeBucket(bucket, this.opts.region);
    } catch (err) {
      // Another instance created it between our check and our request.
      if (err instanceof S3Error && ALREADY_EXISTS_CODES.has(err.code ?? '')) return;
      throw err;
    }
  }

  async ping(): Promise<void> {
    await this.client.listBuckets();
  }

  async *list(bucket: string): AsyncIterable<ObjectInfo> {
    const stream = this.client.listObjectsV2(bucket, '', true);
    for await (const item of stream as AsyncIterable<{ name?: string; size: number; etag?: string; lastModified?: Date }>) {
      if (item.name === undefined) continue; // a common prefix, not an object
      yield {
        key: item.name,
        size: item.size,
        etag: normalizeEtag(item.etag ?? ''),
        lastModified: item.lastModified ?? new Date(0),
      };
    }
  }

  async stat(bucket: string, key: string): Promise<ObjectInfo | null> {
    try {
      const st = await this.client.statObject(bucket, key);
      return { key, size: st.size, etag: normalizeEtag(st.etag), lastModified: st.lastModified };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async read(bucket: string, key: string): Promise<Readable> {
    try {
      return await this.client.getObject(bucket, key);
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(bucket, key);
      throw err;
    }
  }

  async write(bucket: string, key: string, body: Readable | Buffer, contentType = 'application/octet-stream'): Promise<void> {
    const meta = { 'Content-Type': contentType };
    // An S3 PUT (single or multipart) becomes visible only once complete: readers never see a part.
    if (Buffer.isBuffer(body)) {
      await this.client.putObject(bucket, key, body, body.length, meta);
      return;
    }
    // A stream of unknown length makes the client size parts for a 5 TiB object (about 550 MB
    // each, held in memory) and resume whatever unfinished upload of the key it finds, even
    // another writer's. Spooling to a temp file gives a known size: one PUT up to PART_SIZE,
    // PART_SIZE parts beyond.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-upload-'));
    try {
      const file = path.join(dir, 'body');
      await pipeline(body, createWriteStream(file));
      const { size } = await fs.stat(file);
      await this.client.putObject(bucket, key, createReadStream(file), size, meta);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}

function normalizeEtag(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

function isNotFound(err: unknown): boolean {
  return err instanceof S3Error && NOT_FOUND_CODES.has(err.code ?? '');
}
