import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Limits } from '../src/config.js';
import type { SourceObject } from '../src/model.js';
import { processObject } from '../src/pipeline/processObject.js';
import { makeImage, put, userCsv } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

const LIMITS: Limits = { maxCsvBytes: 1024, maxImageBytes: 4096, maxImagePixels: 50_000_000 };

describe('processObject', () => {
  let backend: Backend;
  let store: ObservedStore;
  beforeEach(async () => {
    backend = await startFolderBackend();
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
    const csv = await processObject(await listed('1.csv', userCsv('A', 'B', 5)), store, 'src', LIMITS);
    expect(csv).toMatchObject({ read: true, state: { status: 'ok', csv: { firstName: 'A', lastName: 'B', birthts: 5 } } });
    const img = await processObject(await listed('1.png', await makeImage('png', 3, 4)), store, 'src', LIMITS);
    expect(img).toMatchObject({ read: true, state: { status: 'ok', image: { format: 'png', width: 3, height: 4 } } });
  });

  it('rejects an empty file without reading it', async () => {
    const r = await processObject(await listed('2.csv', ''), store, 'src', LIMITS);
    expect(r).toMatchObject({ read: false, state: { status: 'rejected', reason: 'the file is empty' } });
    expect(store.reads).toEqual([]);
  });

  it('rejects an image over MAX_IMAGE_BYTES without reading it', async () => {
    const big = Buffer.alloc(5000, 1);
    const r = await processObject(await listed('3.png', big), store, 'src', LIMITS);
    expect(r).toMatchObject({ read: false, state: { status: 'rejected', reason: 'image is 5000 bytes, over the 4096-byte limit' } });
    expect(store.reads).toEqual([]);
  });

  it('stops reading an object that grew past the limit since it was listed', async () => {
    const obj = await listed('4.csv', 'x'.repeat(2000), 10);
    const r = await processObject(obj, store, 'src', LIMITS);
    expect(r).toMatchObject({ read: true, state: { status: 'rejected', reason: 'CSV is larger than the 1024-byte limit' } });
  });

  it('reports an object deleted since the listing as vanished, not as an error', async () => {
    const obj = await listed('5.csv', userCsv('A', 'B', 1));
    const { rm } = await import('node:fs/promises');
    await rm(`${(backend.config as { dir: string }).dir}/src/5.csv`);
    expect(await processObject(obj, store, 'src', LIMITS)).toEqual({ vanished: true });
  });

  it('lets a storage failure through: it is not the file’s fault', async () => {
    const obj = await listed('6.csv', userCsv('A', 'B', 1));
    store.failReads = new Error('socket hang up');
    await expect(processObject(obj, store, 'src', LIMITS)).rejects.toThrow('socket hang up');
  });
});
