import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, modifiedAt, put, putNewer, remove, userCsv } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

interface FileVersion {
  key: string;
  etag: string;
}
interface Source {
  csv: FileVersion | null;
  image: FileVersion | null;
  run_id: number | null;
  changed_at: string | null;
}
interface User {
  user_id: string;
  first_name: string;
  updated_at: string;
  source: Source;
}
interface Run {
  id: number;
  status: string;
  started_at: string;
  finished_at: string;
  counts: { new: number; updated: number; unchanged: number };
}

// Each test has its own user_ids, so the tests share one service and run in order.
describe.each(backends)('lineage (GET /data source) on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let src: string;

  const run = async (query = ''): Promise<Run> => {
    const res = await svc.post(`/data?wait=true${query}`);
    expect(res.status).toBe(200);
    const r = (await res.json()) as Run;
    expect(r.status).toBe('succeeded');
    return r;
  };
  const user = async (userId: string): Promise<User> => {
    const res = await svc.get(`/data/${encodeURIComponent(userId)}`);
    expect(res.status).toBe(200);
    return (await res.json()) as User;
  };
  /** The key and etag as the store lists it now. */
  const version = async (key: string): Promise<FileVersion> => {
    const info = await backend.store.stat(src, key);
    if (!info) throw new Error(`${key} is not in ${src}`);
    return { key, etag: info.etag };
  };
  /** changed_at lies within the run: the run wrote it. */
  const expectWrittenBy = (s: Source, r: Run) => {
    expect(s.run_id).toBe(r.id);
    expect(s.changed_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(s.changed_at!)).toBeGreaterThanOrEqual(Date.parse(r.started_at));
    expect(Date.parse(s.changed_at!)).toBeLessThanOrEqual(Date.parse(r.finished_at));
  };

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    src = svc.srcBucket;
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  it('names the files and the run a row came from, in GET /data and GET /data/:user_id; format=csv keeps its columns', async () => {
    await put(backend, src, 'l1.csv', userCsv('Ann', 'A', 0));
    await put(backend, src, 'photos/l1.png', await makeImage('png'));
    await put(backend, src, 'l2.csv', userCsv('Bob', 'B', 0));
    const r = await run();

    const l1 = await user('l1');
    expect(l1.source).toEqual({ csv: await version('l1.csv'), image: await version('photos/l1.png'), run_id: r.id, changed_at: expect.any(String) });
    expectWrittenBy(l1.source, r);
    const l2 = await user('l2');
    expect(l2.source).toMatchObject({ csv: await version('l2.csv'), image: null, run_id: r.id });

    const listed = ((await (await svc.get('/data')).json()) as { data: User[] }).data;
    expect(listed.find((u) => u.user_id === 'l1')!.source).toEqual(l1.source);
    const paged = ((await (await svc.get('/data?limit=10')).json()) as { data: User[] }).data;
    expect(paged.find((u) => u.user_id === 'l2')!.source).toEqual(l2.source);

    const header = (await (await svc.get('/data?format=csv')).text()).split('\r\n')[0];
    expect(header).toBe('id,user_id,first_name,last_name,birthdate,birthts,img_path,img_format,img_width,img_height,created_at,updated_at');
  });

  it('a new CSV version moves key, etag, run and time; a run that changes nothing keeps them', async () => {
    await put(backend, src, 'l3.csv', userCsv('Cy', 'C', 0));
    const first = await run();
    const before = await user('l3');
    expectWrittenBy(before.source, first);

    const idle = await run('&full=true');
    expect(idle.counts.updated).toBe(0);
    expect((await user('l3')).source).toEqual(before.source);

    await putNewer(backend, src, 'l3.csv', userCsv('Cyrus', 'C', 0), await modifiedAt(backend, src, 'l3.csv'));
    const second = await run();
    expect(second.counts.updated).toBe(1);
    const after = await user('l3');
    expect(after.first_name).toBe('Cyrus');
    expect(after.source.csv).toEqual(await version('l3.csv'));
    expect(after.source.csv!.etag).not.toBe(before.source.csv!.etag);
    expectWrittenBy(after.source, second);
    expect(Date.parse(after.source.changed_at!)).toBeGreaterThan(Date.parse(before.source.changed_at!));
  });

  it('a new version with the same values moves the lineage, but counts as unchanged and keeps updated_at', async () => {
    await put(backend, src, 'l4.csv', userCsv('Dee', 'D', 0));
    await run();
    const before = await user('l4');

    // Other bytes (CRLF), so every store gives a new etag; the same values.
    await putNewer(backend, src, 'l4.csv', userCsv('Dee', 'D', 0, { eol: '\r\n' }), await modifiedAt(backend, src, 'l4.csv'));
    const r = await run();
    expect(r.counts).toMatchObject({ new: 0, updated: 0 });
    const after = await user('l4');
    expect(after.source.csv).toEqual(await version('l4.csv'));
    expect(after.source.csv!.etag).not.toBe(before.source.csv!.etag);
    expectWrittenBy(after.source, r);
    expect(after.updated_at).toBe(before.updated_at);
  });

  it('a photo removed gives image null, by the run that saw it go', async () => {
    await put(backend, src, 'l5.csv', userCsv('Eve', 'E', 0));
    await put(backend, src, 'l5.jpg', await makeImage('jpeg'));
    await run();
    expect((await user('l5')).source.image).toEqual(await version('l5.jpg'));

    await remove(backend, src, 'l5.jpg');
    const r = await run();
    const after = await user('l5');
    expect(after.source.image).toBeNull();
    expect(after.source.csv).toEqual(await version('l5.csv'));
    expectWrittenBy(after.source, r);
  });

  it('a user in two folders names the winning CSV: the newest', async () => {
    await put(backend, src, 'a/l6.csv', userCsv('Old', 'F', 0));
    await putNewer(backend, src, 'b/l6.csv', userCsv('New', 'F', 0), await modifiedAt(backend, src, 'a/l6.csv'));
    const r = await run();
    const l6 = await user('l6');
    expect(l6.first_name).toBe('New');
    expect(l6.source.csv).toEqual(await version('b/l6.csv'));
    expectWrittenBy(l6.source, r);

    // The winner goes: the other folder's CSV takes over, and the source says so.
    await remove(backend, src, 'b/l6.csv');
    const next = await run();
    const after = await user('l6');
    expect(after.first_name).toBe('Old');
    expect(after.source.csv).toEqual(await version('a/l6.csv'));
    expectWrittenBy(after.source, next);
  });
});
