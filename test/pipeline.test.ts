import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { tryAcquireLock } from '../src/db/locks.js';
import { silentLogger } from '../src/log.js';
import { RunFailedError, runPipeline } from '../src/runs/fullRun.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, modifiedAt, put, putNewer, readText, remove, userCsv } from './support/fixtures.js';
import { ObservedStore, runToCompletion, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import { PixelBudget } from '../src/images/budget.js';

interface UserRecord {
  id: number;
  user_id: string;
  first_name: string;
  last_name: string;
  birthts: number;
  img_path: string | null;
  img_format: string | null;
  updated_at: Date;
}

describe.each(backends)('pipeline on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let config: Config;
  let store: ObservedStore;
  let src: string;
  let res: string;

  const run = (opts: { full?: boolean } = {}) => runToCompletion(store, db, config, opts);
  const users = async (): Promise<UserRecord[]> =>
    (
      await db.pool.query<UserRecord>(
        `SELECT id, user_id, first_name, last_name, (extract(epoch FROM birthdate) * 1000)::bigint AS birthts,
                img_path, img_format, updated_at FROM users ORDER BY user_id`,
      )
    ).rows;
  const user = async (id: string) => (await users()).find((u) => u.user_id === id);
  const output = () => readText(backend, res, 'output.csv');

  beforeAll(async () => {
    backend = await start();
  });
  afterAll(() => backend.stop());
  beforeEach(async () => {
    db = await createTestDatabase();
    config = testConfig(backend, db);
    src = config.srcBucket;
    res = config.resBucket;
    store = new ObservedStore(backend.store);
    await store.ensureBucket(src);
    await store.ensureBucket(res);
  });
  afterEach(() => db.drop());

  // Rewrites here change an object's size, so the store reports a new fingerprint at once,
  // whatever its clock; putNewer is for a rewrite of the same bytes, and for the newer of two.
  async function seedThreeUsers() {
    await put(backend, src, '1000.csv', userCsv('Susan', 'Lee', 612302400000));
    await put(backend, src, '1000.png', await makeImage('png'));
    await put(backend, src, '1001.csv', userCsv('Rosa', 'Garcia', -670626000000));
    await put(backend, src, 'batch1/1002.csv', userCsv('Nathan', 'Emery', 697237200000));
    await put(backend, src, 'batch1/photos/1002.JPG', await makeImage('jpeg'));
  }

  it('first run: joins CSVs with images into the table and output.csv, reporting bad files', async () => {
    await seedThreeUsers();
    await put(backend, src, 'bad.csv', 'first_name,last_name,birthts\nX,Y,not-a-number\n');
    await put(backend, src, '1001.png', Buffer.from('this is not a png'));
    await put(backend, src, 'orphan.png', await makeImage('png'));
    await put(backend, src, 'README.txt', 'ignored');

    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.counts).toEqual({ scanned: 8, read: 8, new: 3, updated: 0, unchanged: 0, rejected: 2, ignored: 1, erased: 0 });
    expect(r.rejected).toEqual([
      { key: '1001.png', reason: expect.stringMatching(/^not a readable image: /) },
      { key: 'bad.csv', reason: 'birthts must be an integer number of milliseconds, got "not-a-number"' },
    ]);
    expect(r.output_written).toBe(true);

    expect(await users()).toMatchObject([
      { user_id: '1000', first_name: 'Susan', last_name: 'Lee', birthts: 612302400000, img_path: `${src}/1000.png`, img_format: 'png' },
      { user_id: '1001', first_name: 'Rosa', birthts: -670626000000, img_path: null, img_format: null },
      { user_id: '1002', first_name: 'Nathan', img_path: `${src}/batch1/photos/1002.JPG`, img_format: 'jpeg' },
    ]);
    expect(await output()).toBe(
      'user_id,first_name,last_name,birthts,img_path\r\n' +
        `1000,Susan,Lee,612302400000,${src}/1000.png\r\n` +
        '1001,Rosa,Garcia,-670626000000,\r\n' +
        `1002,Nathan,Emery,697237200000,${src}/batch1/photos/1002.JPG\r\n`,
    );
  });

  it('re-run with nothing changed reads no object, writes no row and leaves output.csv alone', async () => {
    await seedThreeUsers();
    await run();
    const before = await users();
    const outBefore = await store.stat(res, 'output.csv');
    store.reset();

    const r = await run();
    expect(r.counts).toEqual({ scanned: 5, read: 0, new: 0, updated: 0, unchanged: 3, rejected: 0, ignored: 0, erased: 0 });
    expect(r.output_written).toBe(false);
    expect(store.reads).toEqual([]);
    expect(store.writes).toEqual([]);
    expect(await users()).toEqual(before);
    expect((await store.stat(res, 'output.csv'))?.etag).toBe(outBefore?.etag);
  });

  it('updates a changed CSV in place, keeping the id, and rewrites output.csv', async () => {
    await seedThreeUsers();
    await run();
    const before = (await user('1001'))!;
    store.reset();
    await put(backend, src, '1001.csv', userCsv('Rosalind', 'Garcia', -670626000000));

    const r = await run();
    expect(r.counts).toMatchObject({ read: 1, new: 0, updated: 1, unchanged: 2 });
    expect(store.reads).toEqual(['1001.csv']);
    const after = (await user('1001'))!;
    expect(after).toMatchObject({ id: before.id, first_name: 'Rosalind' });
    expect(after.updated_at.getTime()).toBeGreaterThan(before.updated_at.getTime());
    expect(await users()).toHaveLength(3);
    expect(await output()).toContain('1001,Rosalind,Garcia,-670626000000,\r\n');
  });

  it('a rewrite with identical content changes nothing', async () => {
    await seedThreeUsers();
    await run();
    // Same bytes: only the modification time tells the store's report apart.
    await putNewer(backend, src, '1000.csv', userCsv('Susan', 'Lee', 612302400000), await modifiedAt(backend, src, '1000.csv'));
    const r = await run();
    expect(r.counts).toMatchObject({ read: 1, new: 0, updated: 0, unchanged: 3 });
    expect(r.output_written).toBe(false);
  });

  it('an image added later is joined; an image removed clears img_path', async () => {
    await seedThreeUsers();
    await run();
    await put(backend, src, 'late/1001.webp', await makeImage('webp'));
    let r = await run();
    expect(r.counts).toMatchObject({ read: 1, updated: 1 });
    expect(await user('1001')).toMatchObject({ img_path: `${src}/late/1001.webp`, img_format: 'webp' });
    expect(await output()).toContain(`1001,Rosa,Garcia,-670626000000,${src}/late/1001.webp\r\n`);

    await remove(backend, src, 'late/1001.webp');
    r = await run();
    expect(r.counts).toMatchObject({ read: 0, updated: 1 });
    expect(await user('1001')).toMatchObject({ img_path: null, img_format: null });
    expect(await output()).toContain('1001,Rosa,Garcia,-670626000000,\r\n');
  });

  it('a deleted CSV never deletes the user', async () => {
    await seedThreeUsers();
    await run();
    await remove(backend, src, '1000.csv');
    await remove(backend, src, '1000.png');
    const r = await run();
    expect(r.counts).toMatchObject({ scanned: 3, new: 0, updated: 0 });
    expect(await user('1000')).toMatchObject({ first_name: 'Susan', img_path: `${src}/1000.png` });
    expect(await output()).toContain('1000,Susan,Lee,612302400000');
  });

  it('an invalid update keeps the last good record and reports the file', async () => {
    await seedThreeUsers();
    await run();
    await put(backend, src, '1000.csv', 'first_name,last_name,birthts\n,Lee,612302400000\n');
    const r = await run();
    expect(r.rejected).toEqual([{ key: '1000.csv', reason: 'first_name is empty' }]);
    expect(r.counts).toMatchObject({ rejected: 1, updated: 0 });
    expect(await user('1000')).toMatchObject({ first_name: 'Susan', img_path: `${src}/1000.png` });

    // Fixing the file brings updates back.
    await put(backend, src, '1000.csv', userCsv('Sue', 'Lee', 612302400000));
    expect((await run()).counts).toMatchObject({ updated: 1, rejected: 0 });
    expect(await user('1000')).toMatchObject({ first_name: 'Sue' });
  });

  it('regenerates a missing output.csv even when nothing else changed', async () => {
    await seedThreeUsers();
    await run();
    const expected = await output();
    await remove(backend, res, 'output.csv');
    const r = await run();
    expect(r.counts).toMatchObject({ read: 0, new: 0, updated: 0 });
    expect(r.output_written).toBe(true);
    expect(await output()).toBe(expected);
  });

  it('--full rereads every object and rewrites output.csv', async () => {
    await seedThreeUsers();
    await run();
    store.reset();
    const r = await run({ full: true });
    expect(r.full).toBe(true);
    expect(r.counts).toMatchObject({ read: 5, new: 0, updated: 0, unchanged: 3 });
    expect(store.reads.sort()).toEqual(['1000.csv', '1000.png', '1001.csv', 'batch1/1002.csv', 'batch1/photos/1002.JPG']);
    expect(r.output_written).toBe(true);
  });

  it('keeps leading zeros: 0042 and 42 are different users', async () => {
    await put(backend, src, '0042.csv', userCsv('Zero', 'Lead', 1));
    await put(backend, src, '42.csv', userCsv('Forty', 'Two', 2));
    await run();
    expect((await users()).map((u) => u.user_id)).toEqual(['0042', '42']);
    expect(await output()).toMatch(/^user_id.*\r\n0042,Zero,Lead,1,\r\n42,Forty,Two,2,\r\n$/);
  });

  it('an image without a CSV creates no user until the CSV arrives', async () => {
    await put(backend, src, '7.png', await makeImage('png'));
    expect((await run()).counts).toMatchObject({ new: 0 });
    expect(await users()).toEqual([]);
    expect(await output()).toBe('user_id,first_name,last_name,birthts,img_path\r\n');

    await put(backend, src, '7.csv', userCsv('Late', 'Comer', 3));
    const r = await run();
    expect(r.counts).toMatchObject({ read: 1, new: 1 });
    expect(await user('7')).toMatchObject({ img_path: `${src}/7.png` });
  });

  it('one user_id with CSVs in two folders: the newest wins and the run reports it', async () => {
    await put(backend, src, 'a/5.csv', userCsv('Old', 'Name', 1));
    // Strictly newer: on equal times the smaller key, a/5.csv, would win.
    await putNewer(backend, src, 'b/5.csv', userCsv('New', 'Name', 1), await modifiedAt(backend, src, 'a/5.csv'));
    const r = await run();
    expect(await user('5')).toMatchObject({ first_name: 'New' });
    expect(r.warnings).toEqual([{ key: 'a/5.csv', reason: 'user_id "5" also has the newer CSV b/5.csv; this one is ignored' }]);
    expect(await users()).toHaveLength(1);
  });

  it('a store that lists out of key order gets the same results, and still reads only what changed', async () => {
    store.listOrder = 'reversed';
    await seedThreeUsers();
    let r = await run();
    expect(r.counts).toMatchObject({ scanned: 5, read: 5, new: 3 });
    await put(backend, src, '1001.csv', userCsv('Rosa', 'Garcia-Lopez', -670626000000));
    await remove(backend, src, '1000.png');
    store.reads = [];
    r = await run();
    expect(store.reads).toEqual(['1001.csv']);
    expect(r.counts).toMatchObject({ scanned: 4, read: 1, new: 0, updated: 2 });
    expect(await user('1000')).toMatchObject({ img_path: null });
    expect(await user('1001')).toMatchObject({ last_name: 'Garcia-Lopez' });
    store.reads = [];
    r = await run();
    expect(store.reads).toEqual([]);
    expect(r.counts).toMatchObject({ read: 0, new: 0, updated: 0, unchanged: 3 });
  });

  it('a user whose files are far apart in key order ends up joined, whatever the batch size', async () => {
    config = { ...config, batchSize: 1 };
    await put(backend, src, 'a/5.csv', userCsv('Five', 'Apart', 1));
    await put(backend, src, 'b/6.csv', userCsv('Six', 'Between', 1));
    await put(backend, src, 'z/5.png', await makeImage('png'));
    const report = await run();
    expect(await user('5')).toMatchObject({ first_name: 'Five', img_path: `${src}/z/5.png` });
    expect(await output()).toContain(`5,Five,Apart,1,${src}/z/5.png\r\n`);
    // Written by two batches, but one new user: never also counted as updated.
    expect(report.counts).toMatchObject({ new: 2, updated: 0, unchanged: 0 });
    await put(backend, src, 'a/5.csv', userCsv('Five', 'Changed', 1));
    await put(backend, src, 'z/5.png', await makeImage('jpeg'));
    // Both of its files changed, in two batches: one updated user.
    expect((await run()).counts).toMatchObject({ new: 0, updated: 1, unchanged: 1 });
    expect(await user('5')).toMatchObject({ last_name: 'Changed', img_format: 'jpeg' });
  });

  it('rejects a CSV over the size limit without reading it', async () => {
    config = { ...config, limits: { ...config.limits, maxCsvBytes: 64 } };
    const big = userCsv('A'.repeat(80), 'B', 1);
    await put(backend, src, 'big.csv', big);
    await put(backend, src, 'small.csv', userCsv('A', 'B', 1));
    const r = await run();
    expect(r.rejected).toEqual([{ key: 'big.csv', reason: `CSV is ${big.length} bytes, over the 64-byte limit` }]);
    expect(store.reads).toEqual(['small.csv']);
  });

  it('processes in batches and gets the same result', async () => {
    config = { ...config, batchSize: 2, readConcurrency: 3 };
    for (let i = 0; i < 7; i++) await put(backend, src, `${100 + i}.csv`, userCsv(`F${i}`, `L${i}`, i));
    const r = await run();
    expect(r.counts).toMatchObject({ new: 7, read: 7 });
    expect(r.progress).toEqual({ phase: 'done', done: 7, total: 7 });
    // Live progress reaches the caller after every batch (the CLI draws it).
    const seen: number[] = [];
    config = { ...config, batchSize: 3 };
    await runToCompletion(store, db, config, { full: true, onProgress: (p) => p.phase === 'processing' && seen.push(p.done) });
    // One report per batch, each with what is committed by then: two batches are in flight at
    // once, so two reports may both see 6.
    const reports = seen.filter((d) => d > 0);
    expect(reports).toHaveLength(3);
    expect(reports).toEqual([...reports].sort((a, b) => a - b));
    expect(reports.at(-1)).toBe(7);
    const runs = await db.pool.query<{ progress: unknown }>('SELECT progress FROM runs');
    expect(runs.rows[0]!.progress).toEqual({ phase: 'done', done: 7, total: 7 });
    expect((await output()).split('\r\n')).toHaveLength(9);
  });

  it('repairs output.csv on the next run when the export failed after users were saved', async () => {
    await seedThreeUsers();
    // An S3 server refusing connections: the same error code as a database that does.
    store.failWrites = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:9000'), { code: 'ECONNREFUSED' });
    const failed = await runPipeline({ db: db.pool, store, config, log: silentLogger(), budget: new PixelBudget(config.limits.maxImagePixels) }, { trigger: 'cli' }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(RunFailedError);
    const { rows } = await db.pool.query('SELECT status, error FROM runs ORDER BY id');
    // A short, stable description: the host and port stay in the log.
    expect(rows).toEqual([{ status: 'failed', error: 'the object store failed while writing output.csv' }]);
    expect(await users()).toHaveLength(3);

    store.failWrites = null;
    store.reset();
    const r = await run();
    expect(r.counts).toMatchObject({ read: 0, new: 0, updated: 0 });
    expect(r.output_written).toBe(true);
    expect((await output()).split('\r\n')).toHaveLength(5);
  });

  it('a storage failure while reading fails the run and loses nothing', async () => {
    await seedThreeUsers();
    await run();
    await put(backend, src, '1000.csv', userCsv('Changed', 'Lee', 1));
    store.failReads = new Error('connection reset');
    store.failPing = new Error('connection refused');
    await expect(run()).rejects.toThrow('the object store failed while reading objects');
    expect(await user('1000')).toMatchObject({ first_name: 'Susan' });

    store.failReads = null;
    store.failPing = null;
    expect((await run()).counts).toMatchObject({ read: 1, updated: 1 });
    expect(await user('1000')).toMatchObject({ first_name: 'Changed' });
  });

  it('a read failing for one object while the store answers skips that object only, and the next run tries it again', async () => {
    await seedThreeUsers();
    await put(backend, src, '1003.csv', userCsv('Ida', 'Brown', 2));
    store.beforeRead = (key) =>
      key === '1001.csv' ? Promise.reject(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })) : Promise.resolve();
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([{ key: '1001.csv', reason: 'it could not be read (EIO)' }]);
    expect((await users()).map((u) => u.user_id)).toEqual(['1000', '1002', '1003']);

    store.beforeRead = null;
    store.reset();
    const again = await run();
    expect(store.reads).toEqual(['1001.csv']);
    expect(again).toMatchObject({ counts: { read: 1, new: 1 }, rejected: [] });
    expect(await user('1001')).toMatchObject({ first_name: 'Rosa' });
  });

  it('does not run while another process holds the run lock', async () => {
    const lock = await tryAcquireLock(db.pool, 'run');
    try {
      const outcome = await runPipeline({ db: db.pool, store, config, log: silentLogger(), budget: new PixelBudget(config.limits.maxImagePixels) }, { trigger: 'cli' });
      expect(outcome).toEqual({ kind: 'busy', runId: null });
    } finally {
      await lock!.release();
    }
    expect((await run()).status).toBe('succeeded');
  });

  it('records the run with counts and rejected files', async () => {
    await put(backend, src, 'x.csv', 'nonsense');
    const r = await run();
    const { rows } = await db.pool.query('SELECT status, scanned, rejected, finished_at IS NOT NULL AS finished FROM runs WHERE id = $1', [r.id]);
    expect(rows).toEqual([{ status: 'succeeded', scanned: 1, rejected: 1, finished: true }]);
    const issues = await db.pool.query('SELECT severity, key, reason FROM run_issues WHERE run_id = $1', [r.id]);
    expect(issues.rows).toEqual([{ severity: 'rejected', key: 'x.csv', reason: 'header is missing columns first_name, last_name, birthts (found: "nonsense")' }]);
  });

  it('quotes output.csv fields as RFC 4180 requires', async () => {
    await put(backend, src, 'q.csv', 'first_name,last_name,birthts\n"Mary, Jr.","O""Neil",7\n');
    await run();
    expect(await output()).toBe('user_id,first_name,last_name,birthts,img_path\r\nq,"Mary, Jr.","O""Neil",7,\r\n');
  });
});
