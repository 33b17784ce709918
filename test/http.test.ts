import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertUsers } from '../src/db/users.js';
import { errorAnswer } from '../src/http/errors.js';
import { RunInProgressElsewhereError } from '../src/runs/coordinator.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, userCsv, waitFor } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import { csvSource } from './support/rows.js';

const YEAR_MS = 365.2425 * 24 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;
/** Born this many years ago, give or take a few days, so filters in whole years are unambiguous. */
const bornYearsAgo = (years: number, plusDays = 0) => Math.round(Date.now() - years * YEAR_MS + plusDays * DAY_MS);

interface User {
  id: number;
  user_id: string;
  birthdate: string;
  birthts: number;
  img_path: string | null;
}
interface Page {
  data: User[];
  next_cursor: string | null;
}
interface ErrorBody {
  error: { code: string; message: string };
}

describe.each(backends)('HTTP API on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;

  const json = async <T>(res: Response) => (await res.json()) as T;
  const ids = async (query: string) => (await json<Page>(await svc.get(`/data${query}`))).data.map((u) => u.user_id);
  const expectBadRequest = async (query: string, param: string) => {
    const res = await svc.get(`/data${query}`);
    expect(res.status, query).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const body = await json<ErrorBody>(res);
    expect(body.error.code).toBe('invalid_parameter');
    expect(body.error.message.startsWith(`${param}:`), body.error.message).toBe(true);
  };

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    const src = svc.srcBucket;
    // Ages 20, 30.25, 40 and 66; photos for the 30.25- and 66-year-olds.
    await put(backend, src, 'u20.csv', userCsv('Twenty', 'A', bornYearsAgo(20, -3)));
    await put(backend, src, 'u30.csv', userCsv('Thirty', 'B', bornYearsAgo(30.25)));
    await put(backend, src, 'u30.png', await makeImage('png'));
    await put(backend, src, 'u40.csv', userCsv('Forty', 'C', bornYearsAgo(40)));
    await put(backend, src, 'old/u66.csv', userCsv('Sixty', 'D', Date.UTC(1960, 0, 1)));
    await put(backend, src, 'old/u66.jpg', await makeImage('jpeg'));
    await put(backend, src, '007.csv', userCsv('Bond', 'J', bornYearsAgo(45)));
    const res = await svc.post('/data?wait=true');
    expect(res.status).toBe(200);
    expect(await json<{ status: string }>(res)).toMatchObject({ status: 'succeeded', counts: { new: 5 } });
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  describe('GET /data', () => {
    it('returns every user, ordered by user_id, with the documented fields', async () => {
      const res = await svc.get('/data');
      expect(res.status).toBe(200);
      const body = await json<Page>(res);
      expect(body.next_cursor).toBeNull();
      expect(body.data.map((u) => u.user_id)).toEqual(['007', 'u20', 'u30', 'u40', 'u66']);
      const u66 = body.data.find((u) => u.user_id === 'u66')!;
      expect(u66).toEqual({
        id: expect.any(Number),
        user_id: 'u66',
        first_name: 'Sixty',
        last_name: 'D',
        birthdate: '1960-01-01T00:00:00.000Z',
        birthts: Date.UTC(1960, 0, 1),
        img_path: `${svc.srcBucket}/old/u66.jpg`,
        img_format: 'jpeg',
        img_width: 8,
        img_height: 8,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        updated_at: expect.stringMatching(/Z$/),
        source: {
          csv: { key: 'old/u66.csv', etag: expect.any(String) },
          image: { key: 'old/u66.jpg', etag: expect.any(String) },
          run_id: expect.any(Number),
          changed_at: expect.stringMatching(/Z$/),
        },
      });
      expect(body.data.find((u) => u.user_id === 'u20')!.img_path).toBeNull();
    });

    it('filters on is_image_exists', async () => {
      expect(await ids('?is_image_exists=true')).toEqual(['u30', 'u66']);
      expect(await ids('?is_image_exists=false')).toEqual(['007', 'u20', 'u40']);
    });

    it('filters on min_age and max_age, with decimals', async () => {
      expect(await ids('?min_age=30')).toEqual(['007', 'u30', 'u40', 'u66']);
      expect(await ids('?max_age=30')).toEqual(['u20']);
      expect(await ids('?min_age=30.2&max_age=30.3')).toEqual(['u30']);
      expect(await ids('?min_age=30.3')).toEqual(['007', 'u40', 'u66']);
      expect(await ids('?min_age=20&max_age=40.5')).toEqual(['u20', 'u30', 'u40']);
      expect(await ids('?min_age=0&max_age=1000')).toHaveLength(5);
      expect(await ids('?min_age=100')).toEqual([]);
    });

    it('combines every filter with AND', async () => {
      expect(await ids('?min_age=30&is_image_exists=true')).toEqual(['u30', 'u66']);
      expect(await ids('?min_age=30&max_age=50&is_image_exists=true')).toEqual(['u30']);
      expect(await ids('?min_age=30&max_age=50&is_image_exists=false')).toEqual(['007', 'u40']);
      expect(await ids('?max_age=25&is_image_exists=true')).toEqual([]);
    });

    it('pages with limit and a keyset cursor', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await svc.get(`/data?limit=2&is_image_exists=false${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.status).toBe(200);
        const page = await json<Page>(res);
        seen.push(...page.data.map((u) => u.user_id));
        cursor = page.next_cursor;
        pages++;
      } while (cursor);
      expect(seen).toEqual(['007', 'u20', 'u40']);
      expect(pages).toBe(2);
      // An exact last page has no next cursor.
      expect((await json<Page>(await svc.get('/data?limit=5'))).next_cursor).toBeNull();
    });

    it('answers CSV with format=csv, paged with an X-Next-Cursor header', async () => {
      const res = await svc.get('/data?format=csv&is_image_exists=true');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = (await res.text()).trimEnd().split('\r\n');
      expect(lines[0]).toBe('id,user_id,first_name,last_name,birthdate,birthts,img_path,img_format,img_width,img_height,created_at,updated_at');
      expect(lines.slice(1).map((l) => l.split(',')[1])).toEqual(['u30', 'u66']);

      const paged = await svc.get('/data?format=csv&limit=1');
      expect(paged.headers.get('x-next-cursor')).toMatch(/\S/);
      expect((await paged.text()).trimEnd().split('\r\n')).toHaveLength(2);
    });

    it.each([
      ['?min_age=abc', 'min_age'],
      ['?min_age=-1', 'min_age'],
      ['?max_age=-0.5', 'max_age'],
      ['?min_age=', 'min_age'],
      ['?max_age=1e3', 'max_age'],
      ['?max_age=1001', 'max_age'],
      ['?min_age=40&max_age=30', 'min_age'],
      ['?is_image_exists=yes', 'is_image_exists'],
      ['?is_image_exists=1', 'is_image_exists'],
      ['?limit=0', 'limit'],
      ['?limit=abc', 'limit'],
      ['?limit=10001', 'limit'],
      ['?limit=2.5', 'limit'],
      ['?cursor=not-a-cursor', 'cursor'],
      ['?cursor=eyJ4IjoxfQ', 'cursor'],
      ['?format=xml', 'format'],
      ['?min_age=1&min_age=2', 'min_age'],
      ['?minage=3', 'minage'],
    ])('rejects %s with 400 naming %s', async (query, param) => {
      await expectBadRequest(query, param);
    });
  });

  describe('GET /data/:user_id', () => {
    it('returns one user, keeping leading zeros', async () => {
      const res = await svc.get('/data/007');
      expect(res.status).toBe(200);
      expect(await json<User>(res)).toMatchObject({ user_id: '007', first_name: 'Bond' });
    });

    it('answers 404 JSON for an unknown user', async () => {
      const res = await svc.get('/data/7');
      expect(res.status).toBe(404);
      expect(await json<ErrorBody>(res)).toEqual({ error: { code: 'not_found', message: 'no user with user_id "7"' } });
    });
  });

  describe('POST /data and /runs', () => {
    it('POST /data answers 202 with the run and its Location, then the run can be followed', async () => {
      const res = await svc.post('/data');
      expect(res.status).toBe(202);
      const run = await json<{ id: number; status: string; url: string }>(res);
      expect(res.headers.get('location')).toBe(`/runs/${run.id}`);
      expect(run.url).toBe(`/runs/${run.id}`);
      const status = await waitFor('GET /runs/:id to show the run finished', async () => {
        const { status } = await json<{ status: string }>(await svc.get(`/runs/${run.id}`));
        return status !== 'running' && status;
      });
      expect(status).toBe('succeeded');
    });

    it('POST /data?wait=true&full=true answers 200 with the finished report', async () => {
      const res = await svc.post('/data?wait=true&full=true');
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        status: 'succeeded',
        full: true,
        trigger: 'http',
        counts: { scanned: 7, read: 7, new: 0, updated: 0, unchanged: 5, rejected: 0 },
        rejected: [],
        output_written: true,
      });
    });

    it('POST /data rejects a bad wait or full flag, and unknown parameters', async () => {
      const res = await svc.post('/data?wait=maybe');
      expect(res.status).toBe(400);
      expect((await json<ErrorBody>(res)).error.message).toMatch(/^wait: /);
      const unknown = await svc.post('/data?force=true');
      expect(unknown.status).toBe(400);
      expect((await json<ErrorBody>(unknown)).error.message).toBe('force: unknown parameter');
    });

    it('GET /runs lists runs newest first and pages with before', async () => {
      const all = await json<{ data: Array<{ id: number }>; next_before: number | null }>(await svc.get('/runs'));
      expect(all.data.length).toBeGreaterThanOrEqual(3);
      const ids = all.data.map((r) => r.id);
      expect(ids).toEqual([...ids].sort((a, b) => b - a));
      const first = await json<{ data: Array<{ id: number }>; next_before: number | null }>(await svc.get('/runs?limit=1'));
      expect(first.data).toHaveLength(1);
      expect(first.next_before).toBe(ids[0]);
      const second = await json<{ data: Array<{ id: number }> }>(await svc.get(`/runs?limit=1&before=${first.next_before}`));
      expect(second.data[0]!.id).toBe(ids[1]);
    });

    it('GET /runs/:id shows counts, progress and rejected files with reasons', async () => {
      await put(backend, svc.srcBucket, 'broken.csv', 'first_name,last_name,birthts\nA,B,soon\n');
      const run = await json<{ id: number }>(await svc.post('/data?wait=true'));
      const res = await svc.get(`/runs/${run.id}`);
      expect(await res.json()).toMatchObject({
        id: run.id,
        status: 'succeeded',
        progress: { phase: 'done' },
        counts: { rejected: 1 },
        rejected: [{ key: 'broken.csv', reason: 'birthts must be an integer number of milliseconds, got "soon"' }],
      });
    });

    it('GET /runs/:id?issues=N includes at most N rejected files and N warnings; issues=0 just the counts', async () => {
      // Two more rejected files, and the same user (same content) in a second folder: a warning.
      await put(backend, svc.srcBucket, 'broken2.csv', 'first_name,last_name,birthts\nA,,1\n');
      await put(backend, svc.srcBucket, 'broken3.csv', 'first_name,last_name,birthts\nA,,1\n');
      await put(backend, svc.srcBucket, 'again/u20.csv', userCsv('Twenty', 'A', bornYearsAgo(20, -3)));
      const { id } = await json<{ id: number }>(await svc.post('/data?wait=true'));
      type Lists = { counts: { rejected: number }; rejected: Array<{ key: string }>; warnings: Array<{ key: string }> };
      const all = await json<Lists>(await svc.get(`/runs/${id}`));
      expect(all.rejected.map((i) => i.key)).toEqual(['broken2.csv', 'broken3.csv']);
      expect(all.warnings).toHaveLength(1);

      const none = await json<Lists>(await svc.get(`/runs/${id}?issues=0`));
      expect(none).toMatchObject({ id, counts: { rejected: 2 }, rejected: [], warnings: [] });
      const one = await json<Lists>(await svc.get(`/runs/${id}?issues=1`));
      expect(one.rejected).toEqual([all.rejected[0]]);
      expect(one.warnings).toEqual(all.warnings);

      for (const bad of ['-1', '10001', 'all', '']) {
        const res = await svc.get(`/runs/${id}?issues=${bad}`);
        expect(res.status, bad).toBe(400);
        expect((await json<ErrorBody>(res)).error.message).toMatch(/^issues: /);
      }
    });

    it('GET /runs/:id answers 400 for a bad id and 404 for an unknown one', async () => {
      expect((await svc.get('/runs/abc')).status).toBe(400);
      const res = await svc.get('/runs/999999');
      expect(res.status).toBe(404);
      expect((await json<ErrorBody>(res)).error.code).toBe('not_found');
      expect((await svc.get('/runs?limit=0')).status).toBe(400);
    });
  });

  describe('health and errors', () => {
    it('GET /health answers 200 when PostgreSQL and the store answer', async () => {
      const res = await svc.get('/health');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok', checks: { database: 'ok', store: 'ok' } });
    });

    it('unknown routes get 404 JSON and wrong methods 405 JSON', async () => {
      const res = await svc.get('/nope');
      expect(res.status).toBe(404);
      expect(await json<ErrorBody>(res)).toEqual({ error: { code: 'not_found', message: 'no route for GET /nope' } });
      const del = await fetch(`${svc.url}/data`, { method: 'DELETE' });
      expect(del.status).toBe(405);
      expect((await json<ErrorBody>(del)).error.code).toBe('method_not_allowed');
      // A method no route knows: the router's 501, not a 500.
      const propfind = await fetch(`${svc.url}/data`, { method: 'PROPFIND' });
      expect(propfind.status).toBe(501);
      expect((await json<ErrorBody>(propfind)).error.code).toBe('not_implemented');
    });
  });
});

describe('HTTP API: large results', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const N = 2500;

  beforeAll(async () => {
    backend = await backends[0]![1]();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    const rows = Array.from({ length: N }, (_, i) => ({
      userId: `u${String(i).padStart(5, '0')}`,
      firstName: `F${i}`,
      lastName: 'L',
      birthts: i * 1000,
      imgPath: i % 2 === 0 ? `src/u${i}.png` : null,
      imgFormat: i % 2 === 0 ? 'png' : null,
      imgWidth: i % 2 === 0 ? 1 : null,
      imgHeight: i % 2 === 0 ? 1 : null,
      source: csvSource(`u${i}`),
    }));
    await upsertUsers(db.pool, rows);
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  it('streams every match across database pages as one valid JSON document', async () => {
    const res = await svc.get('/data');
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    const body = (await res.json()) as Page;
    expect(body.data).toHaveLength(N);
    expect(body.data[0]!.user_id).toBe('u00000');
    expect(body.data[N - 1]!.user_id).toBe(`u0${N - 1}`);
    expect(new Set(body.data.map((u) => u.user_id)).size).toBe(N);
    const withPhoto = (await (await svc.get('/data?is_image_exists=true')).json()) as Page;
    expect(withPhoto.data).toHaveLength(N / 2);
  });

  it('streams CSV the same way', async () => {
    const text = await (await svc.get('/data?format=csv')).text();
    const lines = text.trimEnd().split('\r\n');
    expect(lines).toHaveLength(N + 1);
    expect(lines[N]!.split(',')[1]).toBe(`u0${N - 1}`);
  });
});

describe('HTTP API: authentication and unexpected errors', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const TOKEN = 's3cret-token-for-tests';

  beforeAll(async () => {
    backend = await backends[0]![1]();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, { API_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  it('requires the bearer token on every route but /health, and before telling a wrong path or method', async () => {
    const guarded = [['GET', '/data'], ['GET', '/data/1'], ['POST', '/data'], ['GET', '/runs'], ['GET', '/runs/1'], ['GET', '/nope'], ['DELETE', '/data']];
    for (const [method, path] of guarded) {
      const res = await fetch(svc.url + path!, { method });
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(((await res.json()) as ErrorBody).error.code).toBe('unauthorized');
    }
    expect((await svc.get('/data', { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await svc.get('/data', { headers: { authorization: TOKEN } })).status).toBe(401);
    expect((await svc.get('/data', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await svc.get('/health')).status).toBe(200);
    // A wrong method on a public route is checked as that route: no token needed to learn it.
    expect((await svc.post('/health')).status).toBe(405);
  });

  it('answers an unexpected error with 500 JSON, no stack trace and no SQL', async () => {
    await db.pool.query('ALTER TABLE users RENAME TO users_gone');
    try {
      const res = await svc.get('/data', { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ error: { code: 'internal_error', message: 'internal server error' } });
      expect(text).not.toMatch(/SELECT|users|at \w+ \(/);
    } finally {
      await db.pool.query('ALTER TABLE users_gone RENAME TO users');
    }
  });
});

describe('HTTP API: domain errors', () => {
  it('answers a run lock held elsewhere, with no run to join, with 409 run_in_progress', () => {
    const message = 'another instance holds the run lock without running a run';
    expect(errorAnswer(new RunInProgressElsewhereError(message))).toMatchObject({ status: 409, code: 'run_in_progress', message });
  });
});
