import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SourceObject } from '../src/core/model.js';
import { checkKey, classifyKey } from '../src/core/keys.js';
import { listSource } from '../src/pipeline/listSource.js';
import { screenKey } from '../src/triggers/eventIntake.js';
import { parseListPage } from '../src/storage/s3Store.js';
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

describe('checkKey', () => {
  it('refuses a key with a lone surrogate, which an S3 listing can carry as an XML character reference', () => {
    const [listed] = parseListPage('<ListBucketResult><Contents><Key>a&#xD800;.csv</Key><Size>1</Size></Contents></ListBucketResult>').objects;
    expect(listed!.key).toBe('a\ud800.csv');
    expect(checkKey(listed!.key, 'a\ud800')).toMatch(/U\+D800/);
    // A proper pair is one character, and fine.
    expect(checkKey('a\ud83d\ude00.csv', 'a\ud83d\ude00')).toBeNull();
  });

  // The second line: more of Unicode's Default_Ignorable_Code_Point (an invisible separator, the
  // Mongolian vowel separator, the Hangul filler, the combining grapheme joiner, a variation
  // selector, a tag character), which a reviewer found accepted.
  it.each([
    ...['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u200e', '\u200f', '\u061c'],
    ...['\u2063', '\u180e', '\u3164', '\u034f', '\ufe0f', '\u{e0041}'],
  ])(
    'refuses a user_id with the invisible character %j, here and at event intake',
    (char) => {
      const key = `f/1000${char}.csv`;
      const code = `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
      expect(checkKey(key, classifyKey(key)!.userId)).toBe(`the user_id contains the invisible character ${code}`);
      expect(screenKey(key)).toBe('refused_key');
      // In a folder name it makes no second user: the folder is not part of the user_id.
      expect(checkKey(`f${char}/1000.csv`, '1000')).toBeNull();
    },
  );

  it('refuses "." and ".." as user_ids ("..csv", "...csv"), but not other dotted names', () => {
    expect(classifyKey('..csv')).toEqual({ userId: '.', kind: 'csv' });
    expect(classifyKey('a/...png')).toEqual({ userId: '..', kind: 'image' });
    expect(checkKey('..csv', '.')).toBe('the user_id is ".", a path step');
    expect(checkKey('a/...png', '..')).toBe('the user_id is "..", a path step');
    expect(screenKey('..csv')).toBe('refused_key');
    expect(screenKey('a/...png')).toBe('refused_key');
    expect(checkKey('....csv', '...')).toBeNull();
    expect(checkKey('.x.csv', '.x')).toBeNull();
  });

  it('refuses a user_id that is not in NFC, and takes its NFC spelling', () => {
    expect(checkKey('Zoe\u0308.csv', 'Zoe\u0308')).toBe('the user_id is not in Unicode NFC form; rename the file');
    expect(screenKey('Zoe\u0308.csv')).toBe('refused_key');
    expect(checkKey('Zo\u00eb.csv', 'Zo\u00eb')).toBeNull();
    expect(screenKey('Zo\u00eb.csv')).toBe('accepted');
  });
});

describe('listSource', () => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await startFolderBackend();
    await backend.store.ensureBucket('src');
  });
  afterEach(() => backend.stop());

  it('streams user files of nested prefixes with their user_id, and counts the rest as ignored', async () => {
    await put(backend, 'src', '1.csv', 'x');
    await put(backend, 'src', 'a/1.png', 'x');
    await put(backend, 'src', 'a/b/2.csv', 'x');
    await put(backend, 'src', 'notes.txt', 'x');
    const counts = { listed: 0, scanned: 0, ignored: 0 };
    const objects: SourceObject[] = [];
    for await (const o of listSource(backend.store, 'src', counts)) if (!('refused' in o)) objects.push(o);
    expect(objects.map((o) => [o.key, o.userId, o.kind])).toEqual([
      ['1.csv', '1', 'csv'],
      ['a/1.png', '1', 'image'],
      ['a/b/2.csv', '2', 'csv'],
    ]);
    expect(objects[1]).toMatchObject({ size: 1 });
    expect(counts).toEqual({ listed: 4, scanned: 3, ignored: 1 });
  });
});
