import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService } from '../src/service.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { testConfig } from './support/harness.js';
import type { RawResponse } from './support/rawHttp.js';
import { raw, rawSocket } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

const errorCode = (res: RawResponse) => (JSON.parse(res.body) as { error: { code: string; message: string } }).error.code;

describe('HTTP security', () => {
  let backend: Backend;
  let db: TestDatabase;
  let open: TestService;
  let guarded: TestService;
  const TOKEN = 'test-token-0123456789';

  beforeAll(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    open = await startTestService(backend, db);
    guarded = await startTestService(backend, db, { API_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await open?.stop();
    await guarded?.stop();
    await db?.drop();
    await backend?.stop();
  });

  describe('Host header without a token, on loopback (DNS rebinding)', () => {
    it('refuses a foreign Host with a JSON 403', async () => {
      for (const host of ['evil.example:3000', 'evil.example', '127.0.0.1.evil.example', 'localhost.evil.example:80', '[::2]:3000', '10.0.0.1']) {
        const res = await raw(open.url, '/data', { headers: { Host: host } });
        expect(res.status, host).toBe(403);
        expect(res.headers['content-type']).toMatch(/application\/json/);
        expect(errorCode(res)).toBe('forbidden_host');
      }
      // /health and unknown paths too: a rebinding page must learn nothing.
      expect((await raw(open.url, '/health', { headers: { Host: 'evil.example:3000' } })).status).toBe(403);
      expect((await raw(open.url, '/nope', { headers: { Host: 'evil.example:3000' } })).status).toBe(403);
    });

    it('serves loopback Host headers, with or without a port', async () => {
      const { port } = new URL(open.url);
      for (const host of [`localhost:${port}`, 'localhost', `LOCALHOST:${port}`, `127.0.0.1:${port}`, `127.0.0.2:${port}`, `[::1]:${port}`, '[::1]']) {
        expect((await raw(open.url, '/data', { headers: { Host: host } })).status, host).toBe(200);
      }
    });

    it('refuses a request without Host', async () => {
      // Node answers HTTP/1.1 without Host with 400 itself; HTTP/1.0 reaches the app.
      const answer = await rawSocket(open.url, 'GET /data HTTP/1.0\r\n\r\n');
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).toContain('"code":"forbidden_host"');
    });

    it('is off with a token: bearer auth decides', async () => {
      const auth = { Authorization: `Bearer ${TOKEN}` };
      expect((await raw(guarded.url, '/data', { headers: { Host: 'evil.example:3000', ...auth } })).status).toBe(200);
      expect((await raw(guarded.url, '/data', { headers: { Host: 'evil.example:3000' } })).status).toBe(401);
    });
  });

  describe('Origin on state-changing requests without a token (CSRF)', () => {
    // Its own database, so the runs table shows whether a refused POST started anything.
    let odb: TestDatabase;
    let svc: TestService;
    beforeAll(async () => {
      odb = await createTestDatabase();
      svc = await startTestService(backend, odb);
    });
    afterAll(async () => {
      await svc?.stop();
      await odb?.drop();
    });
    const runCount = async () => (await odb.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM runs')).rows[0]!.n;

    it('refuses POST /data from another origin, or from "null", and starts no run', async () => {
      for (const origin of ['https://evil.example', 'http://evil.example', `http://localhost:${new URL(svc.url).port}`, 'null']) {
        const res = await raw(svc.url, '/data', { method: 'POST', headers: { Origin: origin } });
        expect(res.status, origin).toBe(403);
        expect(errorCode(res)).toBe('cross_origin');
      }
      for (const method of ['PUT', 'PATCH', 'DELETE']) {
        expect((await raw(svc.url, '/data', { method, headers: { Origin: 'https://evil.example' } })).status, method).toBe(403);
      }
      expect(await runCount()).toBe(0);
    });

    it('lets GET from another origin through (the browser keeps the answer from that page)', async () => {
      expect((await raw(svc.url, '/data', { headers: { Origin: 'https://evil.example' } })).status).toBe(200);
    });

    it('accepts a same-origin POST and a POST without Origin (curl)', async () => {
      const same = await raw(svc.url, '/data?wait=true', { method: 'POST', headers: { Origin: svc.url } });
      expect(same.status).toBe(200);
      expect(JSON.parse(same.body)).toMatchObject({ status: 'succeeded' });
      expect((await raw(svc.url, '/data?wait=true', { method: 'POST' })).status).toBe(200);
      expect(await runCount()).toBe(2);
    });

    it('is off with a token', async () => {
      const res = await raw(guarded.url, '/runs', { method: 'POST', headers: { Origin: 'https://evil.example', Authorization: `Bearer ${TOKEN}` } });
      // Not refused for its Origin: the router answers that /runs takes no POST.
      expect(res.status).toBe(405);
    });
  });

  describe('response headers', () => {
    const expectHeaders = (res: RawResponse, what: string) => {
      expect(res.headers['x-content-type-options'], what).toBe('nosniff');
      expect(res.headers['cache-control'], what).toBe('no-store');
    };

    it('sends nosniff and no-store on 200, 400, 401, 403, 404 and 405 answers', async () => {
      const auth = { Authorization: `Bearer ${TOKEN}` };
      const cases: Array<[string, Promise<RawResponse>, number]> = [
        ['200 /data', raw(open.url, '/data'), 200],
        ['200 /health', raw(open.url, '/health'), 200],
        ['200 csv', raw(open.url, '/data?format=csv'), 200],
        ['400', raw(open.url, '/data?min_age=x'), 400],
        ['401', raw(guarded.url, '/data'), 401],
        ['403', raw(open.url, '/data', { headers: { Host: 'evil.example' } }), 403],
        ['404 route', raw(open.url, '/nope'), 404],
        ['404 user', raw(guarded.url, '/data/nobody', { headers: auth }), 404],
        ['405', raw(open.url, '/health', { method: 'POST' }), 405],
      ];
      for (const [what, pending, status] of cases) {
        const res = await pending;
        expect(res.status, what).toBe(status);
        expectHeaders(res, what);
      }
    });
  });

  describe('INSECURE_ALLOW_NO_TOKEN', () => {
    it('starts beyond loopback without a token, warns, keeps the Origin check and drops the Host check', async () => {
      const lines: string[] = [];
      const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const config = testConfig(backend, db, { HOST: '0.0.0.0', PORT: '0', INSECURE_ALLOW_NO_TOKEN: 'true' });
      const svc = await startService(config, log, { waitMs: 0 });
      try {
        const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
        expect(warnings.map((w) => w.msg)).toEqual([expect.stringMatching(/INSECURE_ALLOW_NO_TOKEN.*without authentication/)]);
        const url = `http://127.0.0.1:${new URL(svc.url).port}`;
        // Reached by any name (the operator chose an open service)...
        expect((await raw(url, '/data', { headers: { Host: 'userjoin.internal:3000' } })).status).toBe(200);
        // ...but still not drivable by other web pages.
        expect((await raw(url, '/data', { method: 'POST', headers: { Origin: 'https://evil.example' } })).status).toBe(403);
      } finally {
        await svc.stop();
      }
    });
  });
});
