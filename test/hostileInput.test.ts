import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, readText, userCsv } from './support/fixtures.js';
import { ObservedStore, runToCompletion, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

/** Hostile files found by hand; test/fuzz.test.ts generates many more. */
describe.each(backends)('hostile input on the %s backend', (name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let config: Config;
  let store: ObservedStore;
  let src: string;

  const run = () => runToCompletion(store, db, config);
  const userIds = async () => (await db.pool.query<{ user_id: string }>('SELECT user_id FROM users ORDER BY user_id')).rows.map((r) => r.user_id);
  const srcPath = (key: string) => path.join((backend.config as { dir: string }).dir, src, key);

  beforeAll(async () => {
    backend = await start();
  });
  afterAll(() => backend.stop());
  beforeEach(async () => {
    db = await createTestDatabase();
    config = testConfig(backend, db);
    src = config.srcBucket;
    store = new ObservedStore(backend.store);
    await store.ensureBucket(src);
    await store.ensureBucket(config.resBucket);
    await put(backend, src, 'good/1.csv', userCsv('Ann', 'Lee', 1000));
    await put(backend, src, 'z/2.csv', userCsv('Bob', 'Ray', 2000));
  });
  afterEach(() => db.drop());

  it('a NUL byte in first_name is rejected with its reason; every other user is stored, now and in later runs', async () => {
    await put(backend, src, 'm/666.csv', Buffer.from('first_name,last_name,birthts\nMal\u0000lory,Evil,5\n'));
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([{ key: 'm/666.csv', reason: 'first_name contains the control character U+0000 at position 4' }]);
    expect(await userIds()).toEqual(['1', '2']);

    await put(backend, src, 'z/3.csv', userCsv('Cy', 'Orr', 3000));
    store.reset();
    const again = await run();
    expect(again).toMatchObject({ status: 'succeeded', counts: { new: 1, rejected: 0 } });
    expect(store.reads).toEqual(['z/3.csv']);
  });

  // Folder store only: S3 servers, and the minio client, refuse keys over 1024 bytes.
  it.runIf(name === 'folder')('a CSV under a deep path of random folders (a 3 KB key) is refused on its name; the run goes on', async () => {
    const deep = Array.from({ length: 15 }, (_, i) => `${String(i).padStart(2, '0')}${'q'.repeat(198)}`).join('/');
    const key = `${deep}/7.csv`;
    expect(Buffer.byteLength(key)).toBeGreaterThan(3000);
    await put(backend, src, key, userCsv('Deep', 'Path', 7));
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([{ key, reason: `the key is ${Buffer.byteLength(key)} bytes long, over the 1024-byte limit of S3` }]);
    expect(r.counts).toMatchObject({ new: 2, rejected: 1 });
    expect(store.reads).not.toContain(key);
    expect(await userIds()).toEqual(['1', '2']);
  });

  it('keys with %, +, spaces, quotes and Unicode are read under their exact names', async () => {
    const keys = ['100%.csv', '%41.csv', 'a+b.csv', 'a b.csv', "it's \"q\".csv", 'dir with space/Zoë 名前 😀.csv', '&amp;.csv', '0x10.csv', '...x.csv'];
    for (const k of keys) await put(backend, src, k, userCsv('N', 'M', 1));
    const r = await run();
    expect(r).toMatchObject({ status: 'succeeded', rejected: [] });
    expect(await userIds()).toEqual(['%41', '&amp;', '...x', '0x10', '1', '100%', '2', 'Zoë 名前 😀', 'a b', 'a+b', "it's \"q\""].sort());
    expect(await readText(backend, config.resBucket, 'output.csv')).toContain(`"it's ""q""",N,M,1,\r\n`);
  });

  // Issue 18: each of these showed up as a second user that looks exactly like user 1.
  it('a user_id with a zero-width character, a soft hyphen or a direction mark is refused, so no user looks like another', async () => {
    const marks = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u200e', '\u200f', '\u061c', '\u2063', '\u3164', '\u{e0041}'];
    for (const m of marks) await put(backend, src, `look/1${m}.csv`, userCsv('Eve', 'Fake', 1));
    await put(backend, src, 'look/\ufeff1.png', await makeImage('png'));
    const r = await run();
    expect(r.status).toBe('succeeded');
    const code = (m: string) => `U+${m.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    expect(r.rejected).toEqual(
      expect.arrayContaining([
        ...marks.map((m) => ({ key: `look/1${m}.csv`, reason: `the user_id contains the invisible character ${code(m)}` })),
        { key: 'look/\ufeff1.png', reason: 'the user_id contains the invisible character U+FEFF' },
      ]),
    );
    expect(r.counts).toMatchObject({ new: 2, rejected: marks.length + 1 });
    expect(await userIds()).toEqual(['1', '2']);
  });

  it('"..csv" and "...csv" (user_ids "." and "..") are refused as path steps', async () => {
    await put(backend, src, '..csv', userCsv('Dot', 'One', 1));
    await put(backend, src, 'd/...csv', userCsv('Dot', 'Two', 1));
    await put(backend, src, 'd/...png', await makeImage('png'));
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([
      { key: '..csv', reason: 'the user_id is ".", a path step' },
      { key: 'd/...csv', reason: 'the user_id is "..", a path step' },
      { key: 'd/...png', reason: 'the user_id is "..", a path step' },
    ]);
    expect(await userIds()).toEqual(['1', '2']);
  });

  it('a user_id not in Unicode NFC is refused, so one key is one user; names are stored in NFC', async () => {
    await put(backend, src, 'n/Zoe\u0301.csv', userCsv('Zoe\u0301', 'Ame\u0301lie', 1));
    await put(backend, src, 'n/Zoë.csv', userCsv('Zoe\u0301', 'Ame\u0301lie', 1));
    await put(backend, src, 'n/3.csv', userCsv('Ann', 'Le\u200be', 1));
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([
      { key: 'n/3.csv', reason: 'last_name contains the invisible character U+200B at position 3' },
      { key: 'n/Zoe\u0301.csv', reason: 'the user_id is not in Unicode NFC form; rename the file' },
    ]);
    const { rows } = await db.pool.query('SELECT user_id, first_name, last_name FROM users WHERE user_id = $1', ['Zoë']);
    expect(rows).toEqual([{ user_id: 'Zoë', first_name: 'Zo\u00e9', last_name: 'Am\u00e9lie' }]);
  });

  it.runIf(name === 'folder')('file names with control characters or bytes that are not UTF-8 are reported, printable, never silently dropped', async () => {
    await fs.writeFile(srcPath('a\u0001b.csv'), userCsv('Ctl', 'Key', 1));
    await fs.writeFile(srcPath('new\nline.png'), await makeImage('png'));
    await fs.writeFile(Buffer.concat([Buffer.from(srcPath('') + '/'), Buffer.from([0xff, 0xfe]), Buffer.from('.csv')]), userCsv('Bad', 'Bytes', 1));
    await fs.writeFile(Buffer.concat([Buffer.from(srcPath('') + '/'), Buffer.from([0xc3]), Buffer.from('.txt')]), 'not a user file');
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([
      { key: '\\xff\\xfe.csv', reason: 'the file name is not valid UTF-8' },
      { key: 'a\\x01b.csv', reason: 'the key contains the control character U+0001' },
      { key: 'new\\x0aline.png', reason: 'the key contains the control character U+000A' },
    ]);
    expect(r.counts).toMatchObject({ new: 2, rejected: 3, ignored: 1 });
  });

  it.runIf(name === 'folder')('symbolic links, named pipes and sockets in the bucket are reported and never opened', async () => {
    const outside = path.join(srcPath(''), '..', 'secret.csv');
    await fs.writeFile(outside, userCsv('Not', 'Yours', 1));
    await fs.symlink(outside, srcPath('link.csv'));
    await fs.symlink(path.join(srcPath(''), 'good'), srcPath('linkdir'));
    execFileSync('mkfifo', [srcPath('pipe.csv')]);
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([
      { key: 'link.csv', reason: 'it is a symbolic link, not a regular file' },
      { key: 'linkdir/', reason: 'it is a symbolic link to a folder, which is not followed' },
      { key: 'pipe.csv', reason: 'it is a named pipe, not a regular file' },
    ]);
    expect(r.counts).toMatchObject({ new: 2, ignored: 0 });
    expect(await userIds()).toEqual(['1', '2']);
  });

  it.runIf(name === 'folder')('folders nested 2,000 deep are walked without recursion: the run goes on and the deep file is refused', async () => {
    const deep = Array.from({ length: 2000 }, () => 'a').join('/');
    await fs.mkdir(srcPath(deep), { recursive: true });
    await fs.writeFile(srcPath(`${deep}/9.csv`), userCsv('Deep', 'Down', 9));
    await fs.writeFile(srcPath(`${deep}/notes.txt`), 'x');
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toEqual([{ key: `${deep}/9.csv`, reason: 'the key is 4005 bytes long, over the 1024-byte limit of S3' }]);
    expect(r.counts).toMatchObject({ new: 2, ignored: 1 });
  });

  it.runIf(name === 'folder')('a user file named like the store\'s own temporary files is processed like any other', async () => {
    await put(backend, src, '.userjoin-tmp-5.csv', userCsv('Tmp', 'Name', 5));
    await put(backend, src, 'sub/.userjoin-tmp-abc.csv', userCsv('Tmp', 'Two', 6));
    const r = await run();
    expect(r).toMatchObject({ status: 'succeeded', counts: { new: 4, scanned: 4 } });
    expect(await userIds()).toEqual(['.userjoin-tmp-5', '.userjoin-tmp-abc', '1', '2']);
  });

  // Issue 18: 20,000 folders holding one user's CSV made 387,977 run_issues rows in one run
  // (each batch warned once per other file), and one work item held 20,212 objects.
  it.runIf(name === 'folder')('one user in 20,000 folders: items stay under ITEM_MAX_OBJECTS, the newest valid files win, one warning for the user', async () => {
    const base = Date.UTC(2026, 0, 1) / 1000;
    const folder = (i: number) => `f${String(i).padStart(6, '0')}`;
    const files: Array<{ key: string; body: string | Buffer; at: number }> = [];
    const png = await makeImage('png');
    for (let i = 0; i < 20_000; i++) {
      files.push({ key: `${folder(i)}/u.csv`, body: userCsv('Same', 'User', 1), at: base + i });
      if (i % 20 === 0) files.push({ key: `${folder(i)}/u.png`, body: png, at: base + i });
    }
    // The newest valid CSV and image sit mid-way; newer still, but broken, are one of each.
    const set = (key: string, body: string | Buffer, at: number) => Object.assign(files.find((f) => f.key === key)!, { body, at });
    set('f007777/u.csv', userCsv('Newest', 'User', 1), base + 30_000);
    set('f019999/u.csv', 'first_name,last_name,birthts\nX,Y,nope\n', base + 40_000);
    set('f004440/u.png', png, base + 50_000);
    set('f000020/u.png', 'not a png', base + 60_000);
    // Written straight to the folder, 500 at a time: 21,000 puts would take longer than the run.
    for (let i = 0; i < files.length; i += 500) {
      await Promise.all(
        files.slice(i, i + 500).map(async (f) => {
          await fs.mkdir(path.dirname(srcPath(f.key)), { recursive: true });
          await fs.writeFile(srcPath(f.key), f.body);
          await fs.utimes(srcPath(f.key), f.at, f.at);
        }),
      );
    }

    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.counts).toMatchObject({ scanned: 21_002, read: 21_002, new: 3, rejected: 2 });
    expect(r.rejected.map((i) => i.key)).toEqual(['f000020/u.png', 'f019999/u.csv']);
    const { rows } = await db.pool.query('SELECT first_name, img_path FROM users WHERE user_id = $1', ['u']);
    expect(rows).toEqual([{ first_name: 'Newest', img_path: `${src}/f004440/u.png` }]);
    const warned = r.warnings.filter((w) => w.reason.startsWith('user_id "u"'));
    expect(warned).toHaveLength(1);
    expect(warned[0]!.reason).toMatch(/^user_id "u" also has the newer CSV f007777\/u\.csv; this one is ignored, and so are \d+( or more)? other CSVs of this user_id, such as f\d{6}\/u\.csv, /);
    const issues = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM run_issues WHERE run_id = $1', [r.id]);
    expect(issues.rows[0]!.n).toBe(3);
    // Split by objects, not only by users: 21,002 objects in items of at most 1,000.
    const items = await db.pool.query<{ n: number; most: number }>('SELECT count(*)::int AS n, max(read)::int AS most FROM run_items WHERE run_id = $1', [r.id]);
    expect(items.rows[0]!.n).toBeGreaterThanOrEqual(22);
    expect(items.rows[0]!.most).toBeLessThanOrEqual(config.work.maxObjects);
  }, 120_000);

  it('a run records at most RUN_ISSUES_LIMIT issues and counts the rest as left out', async () => {
    config = testConfig(backend, db, { RUN_ISSUES_LIMIT: '25', ITEM_MAX_OBJECTS: '10', SRC_BUCKET: src, RES_BUCKET: config.resBucket });
    for (let i = 0; i < 60; i++) await put(backend, src, `bad/${100 + i}.csv`, 'first_name,last_name,birthts\nX,Y,nope\n');
    const r = await run();
    expect(r.status).toBe('succeeded');
    // Counts (and the metrics, which follow them) take every one.
    expect(r.counts).toMatchObject({ new: 2, rejected: 60 });
    expect(r.rejected).toHaveLength(25);
    expect(r.issues_left_out).toBe(35);
    const issues = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM run_issues WHERE run_id = $1', [r.id]);
    expect(issues.rows[0]!.n).toBe(25);
  });

  it('a CSV with half a million columns is rejected with a short reason, and the run goes on', async () => {
    const wide = `${'c,'.repeat(500_000)}c\n`;
    for (let i = 0; i < 3; i++) await put(backend, src, `wide/${i}.csv`, wide);
    await put(backend, src, 'wide/big.csv', `first_name,last_name,birthts\nA,B,${'9'.repeat(900_000)}\n`);
    const r = await run();
    expect(r.status).toBe('succeeded');
    expect(r.rejected).toHaveLength(4);
    expect(r.rejected[0]!.reason).toBe('header is missing columns first_name, last_name, birthts (found: "c", "c", "c", "c", "c", "c", "c", "c" and 499993 more)');
    for (const i of r.rejected) expect(i.reason.length).toBeLessThanOrEqual(500);
    expect(await userIds()).toEqual(['1', '2']);
  });
});
