import { describe, expect, it } from 'vitest';
import type { StoredFingerprint } from '../src/db/sourceFiles.js';
import type { SourceObject } from '../src/core/model.js';
import { fingerprintOf } from '../src/core/model.js';
import type { SourceChange } from '../src/pipeline/diffSource.js';
import { batchByUser, diffSource } from '../src/pipeline/diffSource.js';
import { classifyKey } from '../src/core/keys.js';

const object = (key: string, etag = 'e1'): SourceObject => ({ key, userId: classifyKey(key)!.userId, kind: classifyKey(key)!.kind, size: 1, etag, lastModifiedMs: 1000 });
const recorded = (key: string, etag = 'e1'): StoredFingerprint => ({ key, userId: classifyKey(key)!.userId, fingerprint: fingerprintOf(etag, 1, 1000) });

async function* from<T>(items: T[]): AsyncGenerator<T> {
  for (const i of items) yield await Promise.resolve(i);
}
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const summary = (changes: SourceChange[]) => changes.map((c) => `${c.kind}:${c.kind === 'changed' ? c.object.key : c.key}`);

describe('diffSource', () => {
  const stored = ['1.csv', '1.png', '2.csv', 'a/3.csv', 'a/4.csv'].map((k) => recorded(k));

  it('yields new and changed objects in listing order, and removals at the end', async () => {
    const listing = [object('0.csv'), object('1.csv'), object('1.png', 'e2'), object('a/3.csv'), object('a/5.csv')];
    const stats = { outOfOrder: 0 };
    const changes = await collect(diffSource(from(listing), from(stored), { full: false, stats }));
    expect(summary(changes)).toEqual(['changed:0.csv', 'changed:1.png', 'changed:a/5.csv', 'removed:2.csv', 'removed:a/4.csv']);
    expect(changes.at(-1)).toMatchObject({ userId: '4' });
    expect(stats.outOfOrder).toBe(0);
  });

  it('gives the same answer when the store lists out of key order', async () => {
    const listing = [object('a/4.csv'), object('a/3.csv', 'e2'), object('1.png'), object('0.csv'), object('1.csv')];
    const stats = { outOfOrder: 0 };
    const changes = await collect(diffSource(from(listing), from(stored), { full: false, stats }));
    expect(summary(changes).sort()).toEqual(['changed:0.csv', 'changed:a/3.csv', 'removed:2.csv']);
    expect(stats.outOfOrder).toBe(3);
  });

  it('flags a change whose record is younger than the listing: an event recorded it after the listing saw it', async () => {
    const listing = [object('1.csv', 'e2'), object('2.csv', 'e2')];
    const old = { ...recorded('1.csv'), recordedAtMs: 500 };
    const late = { ...recorded('2.csv'), recordedAtMs: 2000 };
    const changes = await collect(diffSource(from(listing), from([old, late]), { full: false, listedFromMs: 1000 }));
    expect(changes.map((c) => (c.kind === 'changed' ? [c.object.key, c.verify ?? false] : []))).toEqual([
      ['1.csv', false],
      ['2.csv', true],
    ]);
    const [batch] = await collect(batchByUser(from(changes), 10));
    expect(batch!.verify).toEqual(['2.csv']);
  });

  it('with full, yields every listed object', async () => {
    const changes = await collect(diffSource(from(stored.map((s) => object(s.key))), from(stored), { full: true }));
    expect(summary(changes)).toEqual(stored.map((s) => `changed:${s.key}`));
  });
});

describe('batchByUser', () => {
  const change = (key: string): SourceChange => ({ kind: 'changed', userId: classifyKey(key)!.userId, object: object(key), recorded: null });

  it('cuts batches at user boundaries only, keeping each user once per batch', async () => {
    const changes = ['1.csv', '1.png', '2.csv', '3.csv', '3.png', '4.csv'].map(change);
    changes.push({ kind: 'removed', userId: '4', key: 'x/4.png', recorded: 'fp' });
    const batches = await collect(batchByUser(from(changes), 2));
    expect(batches.map((b) => b.users)).toEqual([['1', '2'], ['3', '4']]);
    expect(batches[1]!.changed.map((o) => o.key)).toEqual(['3.csv', '3.png', '4.csv']);
    expect(batches[1]!.removed).toEqual([{ key: 'x/4.png', userId: '4' }]);
    // What each change saw recorded travels with the batch, for the commit's newest-wins check.
    expect(batches[1]!.seen).toEqual([...['3.csv', '3.png', '4.csv'].map((key) => ({ key, fingerprint: null })), { key: 'x/4.png', fingerprint: 'fp' }]);
  });

  it('with a span, also cuts a batch once the listing has moved that far since it began', async () => {
    let listed = 0;
    // Sparse changes: one changed user per 100 listed objects.
    async function* sparse(): AsyncGenerator<SourceChange> {
      for (const key of ['1.csv', '2.csv', '3.csv', '4.csv', '5.csv']) {
        listed += 100;
        yield await Promise.resolve(change(key));
      }
    }
    const batches = await collect(batchByUser(sparse(), 1000, { listed: () => listed, objects: 200 }));
    expect(batches.map((b) => b.users)).toEqual([['1', '2'], ['3', '4'], ['5']]);
  });

  it('cuts a user with many objects into items of at most the object and byte caps (issue 18: one job held 20,212 objects)', async () => {
    const many = Array.from({ length: 25 }, (_, i) => change(`f${String(i).padStart(2, '0')}/u.png`));
    const batches = await collect(batchByUser(from([change('a.csv'), ...many, change('z.csv')]), 1000, undefined, { objects: 10, bytes: Infinity }));
    expect(batches.map((b) => b.changed.length + b.removed.length)).toEqual([10, 10, 7]);
    expect(batches.map((b) => b.users)).toEqual([['a', 'u'], ['u'], ['u', 'z']]);
    expect(batches.flatMap((b) => b.seen.map((s) => s.key))).toEqual(['a.csv', ...many.map((c) => (c.kind === 'changed' ? c.object.key : '')), 'z.csv']);
    // By listed bytes: a cap of 25 takes two 10-byte CSVs; a 100-byte image, over the cap on its own, goes alone.
    const sized = (key: string, size: number): SourceChange => ({ kind: 'changed', userId: classifyKey(key)!.userId, object: { ...object(key), size }, recorded: null });
    const byBytes = await collect(batchByUser(from([sized('1.csv', 10), sized('2.csv', 10), sized('3.png', 100), sized('4.csv', 10)]), 1000, undefined, { objects: 1000, bytes: 25 }));
    expect(byBytes.map((b) => b.users)).toEqual([['1', '2'], ['3'], ['4']]);
  });
});

