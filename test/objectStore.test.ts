import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOpened } from '../src/storage/folderStore.js';
import { ObjectNotFoundError } from '../src/storage/index.js';
import { put, readText } from './support/fixtures.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

/** One contract, two implementations: the pipeline must not care which store it talks to. */
describe.each(backends)('ObjectStore contract: %s', (_name, start) => {
  let backend: Backend;
  let n = 0;
  // A fresh bucket per test keeps tests independent on one server.
  const freshBucket = async () => {
    const bucket = `b${++n}-${Date.now().toString(36)}`;
    await backend.store.ensureBucket(bucket);
    return bucket;
  };

  beforeAll(async () => {
    backend = await start();
  });
  afterAll(() => backend.stop());

  it('ensureBucket creates a missing bucket and is idempotent, also when called concurrently', async () => {
    const bucket = `c-${Date.now().toString(36)}`;
    await Promise.all([backend.store.ensureBucket(bucket), backend.store.ensureBucket(bucket), backend.store.ensureBucket(bucket)]);
    await backend.store.ensureBucket(bucket);
    const seen = [];
    for await (const o of backend.store.list(bucket)) seen.push(o);
    expect(seen).toEqual([]);
  });

  it('writes, stats and reads an object', async () => {
    const bucket = await freshBucket();
    const before = Date.now() - 2000;
    await put(backend, bucket, 'a/b/hello.csv', 'hello, world');
    const info = await backend.store.stat(bucket, 'a/b/hello.csv');
    expect(info).toMatchObject({ key: 'a/b/hello.csv', size: 12 });
    expect(info!.etag).not.toBe('');
    expect(info!.lastModified.getTime()).toBeGreaterThanOrEqual(before);
    expect(await readText(backend, bucket, 'a/b/hello.csv')).toBe('hello, world');
  });

  it('stat returns null and read throws ObjectNotFoundError for a missing object', async () => {
    const bucket = await freshBucket();
    expect(await backend.store.stat(bucket, 'nope.csv')).toBeNull();
    await expect(backend.store.read(bucket, 'nope.csv')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('lists every object, nested prefixes included, with size, etag and last-modified', async () => {
    const bucket = await freshBucket();
    const keys = ['1.csv', '1.png', 'x/2.csv', 'x/y/z/3.csv'];
    for (const k of keys) await put(backend, bucket, k, `content of ${k}`);
    const listed = [];
    for await (const o of backend.store.list(bucket)) listed.push(o);
    expect(listed.map((o) => o.key).sort()).toEqual(keys);
    for (const o of listed) {
      expect(o.size).toBe(`content of ${o.key}`.length);
      expect(o.etag).toMatch(/\S/);
      expect(o.lastModified).toBeInstanceOf(Date);
    }
    const statted = await backend.store.stat(bucket, 'x/2.csv');
    expect(listed.find((o) => o.key === 'x/2.csv')?.etag).toBe(statted?.etag);
  });

  // Real S3 and MinIO list in byte order; s3rver, like some S3-compatible servers, lists folder
  // by folder. Runs are correct in any order (test/pipeline.test.ts) and leanest in this one.
  it.runIf(_name === 'folder')('lists keys in UTF-8 byte order, across folders', async () => {
    const bucket = await freshBucket();
    // "/" sorts between "." and "0", "-" before ".", and é and the emoji are multi-byte.
    const keys = ['a0.csv', 'a/x.csv', 'a.csv', 'a-b.csv', 'a/b/c.csv', 'B.csv', 'é.csv', 'z.csv', '\u{1F600}.csv', '\uFF21.csv'];
    for (const k of keys) await put(backend, bucket, k, 'x');
    const listed: string[] = [];
    for await (const o of backend.store.list(bucket)) listed.push(o.key);
    const byteOrder = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(listed).toEqual(byteOrder);
    expect(byteOrder.slice(0, 6)).toEqual(['B.csv', 'a-b.csv', 'a.csv', 'a/b/c.csv', 'a/x.csv', 'a0.csv']);
  });

  it('lists more than one page of objects', async () => {
    const bucket = await freshBucket();
    // S3 pages listings at 1000 keys; going past it exercises continuation tokens.
    const count = 1100;
    const body = Buffer.from('x');
    for (let i = 0; i < count; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, j) => backend.store.write(bucket, `p/${i + j}.csv`, body)));
    }
    let listed = 0;
    for await (const _ of backend.store.list(bucket)) listed++;
    expect(listed).toBe(count);
  });

  it('writes a stream and replaces an existing object whole, changing its etag', async () => {
    const bucket = await freshBucket();
    await put(backend, bucket, 'out.csv', 'old content that is long');
    const first = await backend.store.stat(bucket, 'out.csv');
    await backend.store.write(bucket, 'out.csv', Readable.from([Buffer.from('new '), Buffer.from('content')]), 'text/csv');
    expect(await readText(backend, bucket, 'out.csv')).toBe('new content');
    const second = await backend.store.stat(bucket, 'out.csv');
    expect(second?.etag).not.toBe(first?.etag);
  });

  it('leaves the old object in place when a streamed write fails', async () => {
    const bucket = await freshBucket();
    await put(backend, bucket, 'out.csv', 'intact');
    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(new Error('source broke'));
      },
    });
    await expect(backend.store.write(bucket, 'out.csv', failing)).rejects.toThrow();
    expect(await readText(backend, bucket, 'out.csv')).toBe('intact');
    const keys = [];
    for await (const o of backend.store.list(bucket)) keys.push(o.key);
    expect(keys).toEqual(['out.csv']);
  });

  it('ping succeeds while the store is up', async () => {
    const bucket = await freshBucket();
    await expect(backend.store.ping(bucket)).resolves.toBeUndefined();
    await expect(backend.store.ping('no-such-bucket-here')).rejects.toThrow();
  });
});

describe('FolderStore: reading a file that grows while it is read', () => {
  it('reads past the size it was opened with, and closes the file when the reader stops early', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-grow-'));
    try {
      const file = path.join(dir, 'f');
      await fs.writeFile(file, 'x'.repeat(100));
      const whole = await fs.open(file);
      const chunks: Buffer[] = [];
      // Opened when it had 10 bytes; it has 100 now.
      for await (const c of await readOpened(whole, 10)) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).length).toBe(100);
      expect(whole.fd).toBe(-1);

      const early = await fs.open(file);
      const stream = await readOpened(early, 10);
      for await (const _ of stream) break;
      const deadline = Date.now() + 5000;
      while (early.fd !== -1 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      expect(early.fd).toBe(-1);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
