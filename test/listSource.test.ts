import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { classifyKey, listSource } from '../src/pipeline/listSource.js';
import { put } from './support/fixtures.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

describe('classifyKey', () => {
  it.each([
    ['1000.csv', { userId: '1000', kind: 'csv' }],
    ['1000.CSV', { userId: '1000', kind: 'csv' }],
    ['batch1/nested/0042.csv', { userId: '0042', kind: 'csv' }],
    ['1000.png', { userId: '1000', kind: 'image' }],
    ['1000.JPG', { userId: '1000', kind: 'image' }],
    ['a/1000.jpeg', { userId: '1000', kind: 'image' }],
    ['1000.webp', { userId: '1000', kind: 'image' }],
    ['1000.gif', { userId: '1000', kind: 'image' }],
    ['1000.tif', { userId: '1000', kind: 'image' }],
    ['1000.TIFF', { userId: '1000', kind: 'image' }],
    ['1000.avif', { userId: '1000', kind: 'image' }],
    ['jane.doe.csv', { userId: 'jane.doe', kind: 'csv' }],
  ])('%s -> %o', (key, expected) => {
    expect(classifyKey(key)).toEqual(expected);
  });

  it.each(['readme.txt', '1000.svg', '1000', 'folder/', '.csv', 'a/.png', '1000.csv.bak', '1000.heic'])('ignores %s', (key) => {
    expect(classifyKey(key)).toBeNull();
  });
});

describe('listSource', () => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await startFolderBackend();
    await backend.store.ensureBucket('src');
  });
  afterEach(() => backend.stop());

  it('lists nested prefixes, groups by user_id and counts ignored files', async () => {
    await put(backend, 'src', '1.csv', 'x');
    await put(backend, 'src', 'a/1.png', 'x');
    await put(backend, 'src', 'a/b/2.csv', 'x');
    await put(backend, 'src', 'notes.txt', 'x');
    const listing = await listSource(backend.store, 'src');
    expect([...listing.objects.keys()].sort()).toEqual(['1.csv', 'a/1.png', 'a/b/2.csv']);
    expect(listing.byUser.get('1')?.sort()).toEqual(['1.csv', 'a/1.png']);
    expect(listing.byUser.get('2')).toEqual(['a/b/2.csv']);
    expect(listing.ignored).toBe(1);
    expect(listing.objects.get('a/1.png')).toMatchObject({ userId: '1', kind: 'image', size: 1 });
  });
});
