import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Limits } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import type { SourceObject } from '../src/core/model.js';
import { StoreFailure } from '../src/pipeline/failures.js';
import { processObject } from '../src/pipeline/processObject.js';
import { makeImage, put, userCsv } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';
import { PixelBudget } from '../src/images/budget.js';

const LIMITS: Limits = { maxCsvBytes: 1024, maxImageBytes: 4096, maxImagePixels: 50_000_000, objectTimeoutMs: 10_000 };

describe('processObject', () => {
  let backend: Backend;
  let store: ObservedStore;
  let dir: string;
  const opts = (limits: Partial<Limits> = {}) => ({ limits: { ...LIMITS, ...limits }, budget: new PixelBudget(limits.maxImagePixels ?? LIMITS.maxImagePixels), log: silentLogger() });
  beforeEach(async () => {
    backend = await startFolderBackend();
    dir = path.join((backend.config as { dir: string }).dir, 'src');
    store = new ObservedStore(backend.store);
    await store.ensureBucket('src');
  });
  afterEach(() => backend.stop());

  /** The object as the listing saw it; `size` may be overridden to simulate a change since. */
  async function listed(key: string, body: string | Buffer, size?: number): Promise<SourceObject> {
    await put(backend, 'src', key, body);
    const info = (await store.stat('src', key))!;
    const kind = key.endsWith('.csv') ? 'csv' : 'image';
    return { key, userId: key.split('.')[0]!, kind, size: size ?? info.size, etag: info.etag, lastModifiedMs: info.lastModified.getTime() };
  }

  it('parses a valid CSV and checks a valid image', async () => {
    const csv = await processObject(await listed('1.csv', userCsv('A', 'B', 5)), store, 'src', opts());
    expect(csv).toMatchObject({ kind: 'checked', read: true, state: { status: 'ok', csv: { firstName: 'A', lastName: 'B', birthts: 5 } } });
    const img = await processObject(await listed('1.png', await makeImage('png', 3, 4)), store, 'src', opts());
    expect(img).toMatchObject({ kind: 'checked', read: true, state: { status: 'ok', image: { format: 'png', width: 3, height: 4 } } });
  });

  it('rejects an empty file without reading it', async () => {
    const r = await processObject(await listed('2.csv', ''), store, 'src', opts());
    expect(r).toMatchObject({ read: false, state: { status: 'rejected', reason: 'the file is empty' } });
    expect(store.reads).toEqual([]);
  });

  it('rejects an image over MAX_IMAGE_BYTES without reading it', async () => {
    const big = Buffer.alloc(5000, 1);
    const r = await processObject(await listed('3.png', big), store, 'src', opts());
    expect(r).toMatchObject({ read: false, state: { status: 'rejected', reason: 'image is 5000 bytes, over the 4096-byte limit' } });
    expect(store.reads).toEqual([]);
  });

  it('stops reading an object that grew past the limit since it was listed', async () => {
    const obj = await listed('4.csv', 'x'.repeat(2000), 10);
    const r = await processObject(obj, store, 'src', opts());
    expect(r).toMatchObject({ read: true, state: { status: 'rejected', reason: 'CSV is larger than the 1024-byte limit' } });
  });

  it('reports an object deleted since the listing as vanished, not as an error', async () => {
    const obj = await listed('5.csv', userCsv('A', 'B', 1));
    await fs.rm(path.join(dir, '5.csv'));
    expect(await processObject(obj, store, 'src', opts())).toEqual({ kind: 'vanished' });
  });

  it('skips an object whose read fails while the store answers: the object is at fault, and the next run tries again', async () => {
    const obj = await listed('6.csv', userCsv('A', 'B', 1));
    store.failReads = Object.assign(new Error('EIO: i/o error, open /secret/path/6.csv'), { code: 'EIO' });
    expect(await processObject(obj, store, 'src', opts())).toEqual({ kind: 'skipped', reason: 'it could not be read (EIO)' });
  });

  it('throws a StoreFailure when a read fails and the store does not answer either', async () => {
    const obj = await listed('6.csv', userCsv('A', 'B', 1));
    store.failReads = new Error('connect ECONNREFUSED 10.0.0.1:9000');
    store.failPing = new Error('connect ECONNREFUSED 10.0.0.1:9000');
    const err = await processObject(obj, store, 'src', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreFailure);
    expect((err as Error).message).toBe('the object store failed while reading objects');
  });

  it('throws a StoreFailure when a read fails and the store does not answer in time', async () => {
    const obj = await listed('6.csv', userCsv('A', 'B', 1));
    store.failReads = Object.assign(new Error('read ETIMEDOUT'), { code: 'ETIMEDOUT' });
    store.hangPing = true;
    const err = await processObject(obj, store, 'src', opts({ objectTimeoutMs: 200 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreFailure);
  });

  it('gives up on an object that stalls mid-read, closes it, and skips it', async () => {
    const obj = await listed('7.csv', userCsv('A', 'B', 1));
    store.stallReads.add('7.csv');
    const r = await processObject(obj, store, 'src', opts({ objectTimeoutMs: 200 }));
    expect(r).toEqual({ kind: 'skipped', reason: 'reading it took longer than 200 ms' });
    expect(store.stalled[0]?.destroyed).toBe(true);
  });

  it('never opens a named pipe swapped in after the listing (opening one for reading would wait forever)', async () => {
    const obj = await listed('8.csv', userCsv('A', 'B', 1));
    await fs.rm(path.join(dir, '8.csv'));
    execFileSync('mkfifo', [path.join(dir, '8.csv')]);
    expect(await processObject(obj, store, 'src', opts())).toEqual({
      kind: 'skipped',
      reason: 'it could not be read: it is a named pipe, not a regular file',
    });
  });

  it('does not follow a symbolic link swapped in after the listing', async () => {
    const obj = await listed('9.csv', userCsv('A', 'B', 1));
    const outside = path.join(dir, '..', 'outside.csv');
    await fs.writeFile(outside, userCsv('Secret', 'File', 1));
    await fs.rm(path.join(dir, '9.csv'));
    await fs.symlink(outside, path.join(dir, '9.csv'));
    expect(await processObject(obj, store, 'src', opts())).toEqual({
      kind: 'skipped',
      reason: 'it could not be read: it is a symbolic link, which is not followed',
    });
  });

  it('skips a file that became a folder since the listing', async () => {
    const obj = await listed('10.csv', userCsv('A', 'B', 1));
    await fs.rm(path.join(dir, '10.csv'));
    await fs.mkdir(path.join(dir, '10.csv'));
    expect(await processObject(obj, store, 'src', opts())).toEqual({ kind: 'skipped', reason: 'it could not be read: it is a folder, not a regular file' });
  });

  it('does not read through a folder swapped for a link to somewhere outside the bucket since the listing', async () => {
    const obj = await listed('d/11.csv', userCsv('A', 'B', 1));
    const outside = path.join(dir, '..', 'outside');
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, '11.csv'), userCsv('Secret', 'File', 1));
    await fs.rm(path.join(dir, 'd'), { recursive: true });
    await fs.symlink(outside, path.join(dir, 'd'));
    expect(await processObject(obj, store, 'src', opts())).toEqual({
      kind: 'skipped',
      reason: 'it could not be read: its path leads outside the bucket through a symbolic link',
    });
  });
});
