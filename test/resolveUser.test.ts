import { describe, expect, it } from 'vitest';
import type { FileState } from '../src/core/model.js';
import { resolveUser } from '../src/pipeline/resolveUser.js';

const at = (s: number) => Date.UTC(2026, 0, 1, 0, 0, s);
const csv = (key: string, t: number, first = 'Ann', ok = true): FileState =>
  ok
    ? { key, userId: 'u', kind: 'csv', size: 1, etag: key, lastModifiedMs: at(t), status: 'ok', reason: null, csv: { firstName: first, lastName: 'L', birthts: 1 }, image: null }
    : { key, userId: 'u', kind: 'csv', size: 1, etag: key, lastModifiedMs: at(t), status: 'rejected', reason: 'bad', csv: null, image: null };
const img = (key: string, t: number, ok = true): FileState =>
  ok
    ? { key, userId: 'u', kind: 'image', size: 1, etag: key, lastModifiedMs: at(t), status: 'ok', reason: null, csv: null, image: { format: 'png', width: 1, height: 2 } }
    : { key, userId: 'u', kind: 'image', size: 1, etag: key, lastModifiedMs: at(t), status: 'rejected', reason: 'bad', csv: null, image: null };

describe('resolveUser', () => {
  it('joins the CSV with the image, img_path prefixed by the source bucket', () => {
    const r = resolveUser('u', [csv('u.csv', 1), img('x/u.png', 1)], 'src');
    expect(r).toEqual({
      row: {
        userId: 'u',
        firstName: 'Ann',
        lastName: 'L',
        birthts: 1,
        imgPath: 'src/x/u.png',
        imgFormat: 'png',
        imgWidth: 1,
        imgHeight: 2,
        source: { csvKey: 'u.csv', csvEtag: 'u.csv', imgKey: 'x/u.png', imgEtag: 'x/u.png' },
      },
      warnings: [],
    });
  });

  it('names the winning CSV and image in the source, and no image without a valid one', () => {
    const withEtag = (f: FileState, etag: string): FileState => ({ ...f, etag });
    const files = [withEtag(csv('a/u.csv', 1), 'old'), withEtag(csv('b/u.csv', 5), 'new'), withEtag(img('u.png', 2), 'p'), img('v.png', 3, false)];
    expect(resolveUser('u', files, 'src').row?.source).toEqual({ csvKey: 'b/u.csv', csvEtag: 'new', imgKey: 'u.png', imgEtag: 'p' });
    expect(resolveUser('u', [csv('u.csv', 1), img('u.png', 2, false)], 'src').row?.source).toMatchObject({ imgKey: null, imgEtag: null });
  });

  it('stores a user without an image when there is none or it was rejected', () => {
    expect(resolveUser('u', [csv('u.csv', 1)], 'src').row?.imgPath).toBeNull();
    expect(resolveUser('u', [csv('u.csv', 1), img('u.png', 2, false)], 'src').row).toMatchObject({ imgPath: null, imgFormat: null });
  });

  it('leaves the user alone without a valid CSV', () => {
    expect(resolveUser('u', [img('u.png', 1)], 'src').row).toBeNull();
    expect(resolveUser('u', [csv('u.csv', 1, 'Ann', false), img('u.png', 1)], 'src').row).toBeNull();
    expect(resolveUser('u', [], 'src').row).toBeNull();
  });

  it('picks the most recently modified image, and on a tie the smallest key', () => {
    expect(resolveUser('u', [csv('u.csv', 1), img('a/u.png', 1), img('b/u.jpg', 5)], 'src').row?.imgPath).toBe('src/b/u.jpg');
    expect(resolveUser('u', [csv('u.csv', 1), img('b/u.png', 5), img('a/u.webp', 5)], 'src').row?.imgPath).toBe('src/a/u.webp');
  });

  it('skips a newer rejected image for an older valid one', () => {
    expect(resolveUser('u', [csv('u.csv', 1), img('a/u.png', 1), img('b/u.png', 9, false)], 'src').row?.imgPath).toBe('src/a/u.png');
  });

  it('uses the newest of CSVs in two folders and warns about the others', () => {
    const r = resolveUser('u', [csv('old/u.csv', 1, 'Old'), csv('new/u.csv', 7, 'New')], 'src');
    expect(r.row?.firstName).toBe('New');
    expect(r.warnings).toEqual([{ key: 'old/u.csv', reason: 'user_id "u" also has the newer CSV new/u.csv; this one is ignored', userId: 'u' }]);
  });

  it('makes one warning for a user with many CSVs, naming a few and counting the rest (issue 18: one per file grew with the square)', () => {
    const files = Array.from({ length: 6 }, (_, i) => csv(`f${i}/u.csv`, i, `N${i}`));
    const r = resolveUser('u', files, 'src');
    expect(r.row?.firstName).toBe('N5');
    expect(r.warnings).toEqual([
      {
        key: 'f4/u.csv',
        reason: 'user_id "u" also has the newer CSV f5/u.csv; this one is ignored, and so are 4 other CSVs of this user_id, such as f3/u.csv, f2/u.csv, f1/u.csv',
        userId: 'u',
      },
    ]);
    // Given only its newest CSVs, with the count of all (as the database loads them).
    const counted = resolveUser('u', files.slice(3), 'src', { n: 10_000, atLeast: true });
    expect(counted.warnings[0]!.reason).toBe(
      'user_id "u" also has the newer CSV f5/u.csv; this one is ignored, and so are 9998 or more other CSVs of this user_id, such as f3/u.csv',
    );
  });

  it('falls back to an older valid CSV when the newest is rejected', () => {
    const r = resolveUser('u', [csv('old/u.csv', 1, 'Old'), csv('new/u.csv', 7, 'New', false)], 'src');
    expect(r.row?.firstName).toBe('Old');
    expect(r.warnings).toEqual([]);
  });
});
