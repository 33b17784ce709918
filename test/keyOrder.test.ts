import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PackedNames } from '../src/storage/folderWalk.js';
import { compareKeys } from '../src/storage/keyOrder.js';

const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('compareKeys', () => {
  it('agrees with UTF-8 byte order, including astral characters against the end of the BMP', () => {
    const samples = ['', 'a', 'a.csv', 'a/x', 'a0', 'A', 'é', '\uFF21', '\u{1F600}', '\u{1F600}b', '\uE000', '\uD7FF', 'zz', '日本.csv'];
    for (const a of samples) {
      for (const b of samples) expect(Math.sign(compareKeys(a, b)), `${a} vs ${b}`).toBe(Math.sign(bytes(a, b)));
    }
  });
});

describe('PackedNames.keyOrder (the folder store listing)', () => {
  // The order S3 lists in: raw bytes, with a folder's name compared as if it ended in "/".
  const expected = (names: Array<{ raw: Buffer; isDir: boolean }>) =>
    [...names].sort((x, y) => Buffer.compare(x.isDir ? Buffer.concat([x.raw, Buffer.from('/')]) : x.raw, y.isDir ? Buffer.concat([y.raw, Buffer.from('/')]) : y.raw));

  it('sorts names and folders as S3 lists keys, for any bytes', () => {
    // Few distinct bytes around "/" (0x2f), so that prefixes are common. A name never holds "/" itself.
    const name = fc.uint8Array({ minLength: 1, maxLength: 6 }).map((a) => Buffer.from(a.map((b) => [0x2e, 0x30, 0x31, 0x41, 0xc3, b === 0x2f || b === 0 ? 0x2e : b][b % 6]!)));
    fc.assert(
      fc.property(fc.uniqueArray(fc.record({ raw: name, isDir: fc.boolean() }), { selector: (e) => e.raw.toString('hex'), maxLength: 40 }), (entries) => {
        const packed = new PackedNames();
        for (const e of entries) packed.add(e.raw, e.isDir);
        const got = [...packed.keyOrder()].map((i) => `${packed.name(i).toString('hex')}${packed.isDir(i) ? '/' : ''}`);
        expect(got).toEqual(expected(entries).map((e) => `${e.raw.toString('hex')}${e.isDir ? '/' : ''}`));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps names intact as the buffer grows', () => {
    const packed = new PackedNames();
    const names = Array.from({ length: 5000 }, (_, i) => Buffer.from(`user-${i}-${'x'.repeat(i % 50)}.csv`));
    for (const n of names) packed.add(n, false);
    expect(packed.count).toBe(5000);
    expect(names.every((n, i) => packed.name(i).equals(n))).toBe(true);
  });
});
