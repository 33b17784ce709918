import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService } from '../src/service.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, userCsv } from './support/fixtures.js';
import { testConfig } from './support/harness.js';
import type { RawResponse } from './support/rawHttp.js';
import { raw, rawSocket } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { recordingLogger, startTestService } from './support/service.js';
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
    // One user with a photo, for the cross-site <img> case.
    await put(backend, open.srcBucket, 'pictured.csv', userCsv('Pat', 'Pictured', 0));
    await put(backend, open.srcBucket, 'pictured.png', await makeImage('png', 64, 64));
    expect(JSON.parse((await raw(open.url, '/data?wait=true', { method: 'POST' })).body)).toMatchObject({ status: 'succeeded' });
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

  describe('Sec-Fetch-Site without a token (cross-site reads: <img>, fetch without Origin)', () => {
    const image = '/data/pictured/image?width=32';

    it('refuses cross-site and same-site requests on GET too, with a JSON 403, before any work', async () => {
      // same-site: a page on another port of 127.0.0.1 is the same site.
      for (const site of ['cross-site', 'same-site']) {
        for (const path of [image, '/data?format=csv', '/data/pictured', '/health', '/']) {
          const res = await raw(open.url, path, { headers: { 'Sec-Fetch-Site': site, 'Sec-Fetch-Mode': 'no-cors', 'Sec-Fetch-Dest': 'image' } });
          expect(res.status, `${site} ${path}`).toBe(403);
          expect(res.headers['content-type']).toMatch(/application\/json/);
          expect(errorCode(res)).toBe('cross_site');
        }
      }
      expect((await raw(open.url, '/data', { method: 'POST', headers: { 'Sec-Fetch-Site': 'cross-site' } })).status).toBe(403);
    });

    it('serves same-origin requests, typed URLs (none) and requests without the header (curl)', async () => {
      for (const headers of [{ 'Sec-Fetch-Site': 'same-origin' }, { 'Sec-Fetch-Site': 'none' }, {}] as Array<Record<string, string>>) {
        const res = await raw(open.url, image, { headers });
        expect(res.status, JSON.stringify(headers)).toBe(200);
        expect(res.headers['content-type']).toMatch(/^image\//);
      }
    });

    it('leaves it to the token when one is set', async () => {
      const site = { 'Sec-Fetch-Site': 'cross-site' };
      // A page cannot send the header; without it the answer is 401, as for anyone.
      expect((await raw(guarded.url, '/data/pictured/image', { headers: site })).status).toBe(401);
      expect((await raw(guarded.url, '/data', { headers: { ...site, Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    });
  });

  describe('METRICS_TOKEN', () => {
    const METRICS = 'metrics-token-0123456789';
    const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });

    it('opens GET /metrics, as API_TOKEN does, and nothing else', async () => {
      // Each refusal below counts as a wrong token: a limit they stay under.
      const svc = await startTestService(backend, db, { API_TOKEN: TOKEN, METRICS_TOKEN: METRICS, AUTH_FAILURE_LIMIT: '1000' });
      try {
        expect((await raw(svc.url, '/metrics', bearer(METRICS))).status).toBe(200);
        expect((await raw(svc.url, '/metrics', bearer(TOKEN))).status).toBe(200);
        expect((await raw(svc.url, '/metrics')).status).toBe(401);
        expect((await raw(svc.url, '/metrics', bearer('wrong'))).status).toBe(401);
        // Bearer only, as the rest of the API: a browser would send cached Basic credentials.
        const basic = { headers: { Authorization: `Basic ${Buffer.from(`prometheus:${METRICS}`).toString('base64')}` } };
        expect((await raw(svc.url, '/metrics', basic)).status).toBe(401);
        // Every other operation the service documents, and paths it does not, refuse it.
        const doc = JSON.parse((await raw(svc.url, '/openapi.json')).body) as { paths: Record<string, Record<string, { security?: unknown[] }>> };
        const others = Object.entries(doc.paths).flatMap(([p, methods]) =>
          Object.entries(methods)
            .filter(([, op]) => p !== '/metrics' && !(Array.isArray(op.security) && op.security.length === 0))
            .map(([m]) => ({ method: m.toUpperCase(), path: p.replace('{user_id}', 'pictured').replace('{id}', '1') })),
        );
        expect(others.length).toBeGreaterThan(5);
        for (const { method, path } of [...others, { method: 'GET', path: '/nope' }]) {
          expect((await raw(svc.url, path, { method, ...bearer(METRICS) })).status, `${method} ${path}`).toBe(401);
        }
        expect((await raw(svc.url, '/data', bearer(TOKEN))).status).toBe(200);
      } finally {
        await svc.stop();
      }
    });

    it('without API_TOKEN, guards GET /metrics alone; the rest keeps the loopback rules', async () => {
      const svc = await startTestService(backend, db, { METRICS_TOKEN: METRICS });
      try {
        expect((await raw(svc.url, '/metrics')).status).toBe(401);
        expect((await raw(svc.url, '/metrics', bearer(METRICS))).status).toBe(200);
        expect((await raw(svc.url, '/data')).status).toBe(200);
      } finally {
        await svc.stop();
      }
    });
  });

  describe('failed authentication, per client address', () => {
    const LIMIT = 3;
    let svc: TestService;
    beforeAll(async () => {
      svc = await startTestService(backend, db, { API_TOKEN: TOKEN, EVENTS_TOKEN: 'events-token-0123456789', AUTH_FAILURE_LIMIT: String(LIMIT) });
    });
    afterAll(async () => {
      await svc?.stop();
    });
    const as = (localAddress: string, token?: string) => ({ localAddress, headers: token ? { Authorization: `Bearer ${token}` } : ({} as Record<string, string>) });

    it('answers 429 with Retry-After once an address has sent too many wrong tokens, even with the right one, and leaves other addresses be', async () => {
      // Requests without a token guess nothing and are not counted.
      for (let i = 0; i < LIMIT + 2; i++) expect((await raw(svc.url, '/data', as('127.0.0.3'))).status).toBe(401);
      // Wrong tokens count on every token-guarded route together.
      expect((await raw(svc.url, '/data', as('127.0.0.3', 'wrong-1'))).status).toBe(401);
      expect((await raw(svc.url, '/events/s3', { ...as('127.0.0.3', 'wrong-2'), method: 'POST' })).status).toBe(401);
      expect((await raw(svc.url, '/runs', as('127.0.0.3', 'wrong-3'))).status).toBe(401);

      for (const token of ['wrong-4', TOKEN, undefined]) {
        const locked = await raw(svc.url, '/data', as('127.0.0.3', token));
        expect(locked.status, token).toBe(429);
        expect(errorCode(locked)).toBe('too_many_failures');
        const retryAfter = Number(locked.headers['retry-after']);
        expect(retryAfter).toBeGreaterThan(0);
        expect(retryAfter).toBeLessThanOrEqual(300);
      }
      // Routes without a token stay open to it.
      expect((await raw(svc.url, '/health', as('127.0.0.3'))).status).toBe(200);
      // Another address: its own count, and the right token works.
      expect((await raw(svc.url, '/data', as('127.0.0.4', 'wrong-1'))).status).toBe(401);
      expect((await raw(svc.url, '/data', as('127.0.0.4', TOKEN))).status).toBe(200);
    });

    it('never limits an address that sends the right token', async () => {
      for (let i = 0; i < LIMIT * 3; i++) expect((await raw(svc.url, '/data', as('127.0.0.5', TOKEN))).status).toBe(200);
    });
  });

  // Behind a reverse proxy every client comes from the proxy's address: without TRUST_PROXY one
  // client's wrong tokens locked out all of them.
  describe('failed authentication behind a reverse proxy (TRUST_PROXY)', () => {
    const LIMIT = 3;
    const from = (forwardedFor: string, token: string, localAddress = '127.0.0.1') => ({
      localAddress,
      headers: { Authorization: `Bearer ${token}`, 'X-Forwarded-For': forwardedFor },
    });

    it('with TRUST_PROXY=true, counts by the address the proxy put last in X-Forwarded-For', async () => {
      const svc = await startTestService(backend, db, { API_TOKEN: TOKEN, AUTH_FAILURE_LIMIT: String(LIMIT), TRUST_PROXY: 'true' });
      try {
        for (let i = 0; i < LIMIT; i++) expect((await raw(svc.url, '/data', from('203.0.113.1', `wrong-${i}`))).status).toBe(401);
        expect((await raw(svc.url, '/data', from('203.0.113.1', TOKEN))).status).toBe(429);
        // Another client behind the same proxy is not locked out.
        expect((await raw(svc.url, '/data', from('203.0.113.2', TOKEN))).status).toBe(200);
        // An entry the client forged comes first; the proxy appends the address it saw, and only that counts.
        expect((await raw(svc.url, '/data', from('203.0.113.2, 203.0.113.1', TOKEN))).status).toBe(429);
      } finally {
        await svc.stop();
      }
    });

    it('with TRUST_PROXY=false (the default), ignores X-Forwarded-For', async () => {
      const svc = await startTestService(backend, db, { API_TOKEN: TOKEN, AUTH_FAILURE_LIMIT: String(LIMIT) });
      try {
        for (let i = 0; i < LIMIT; i++) expect((await raw(svc.url, '/data', from(`203.0.113.${i + 1}`, `wrong-${i}`, '127.0.0.6'))).status).toBe(401);
        // The connection's address is locked out, whatever the header says.
        expect((await raw(svc.url, '/data', from('203.0.113.9', TOKEN, '127.0.0.6'))).status).toBe(429);
        expect((await raw(svc.url, '/data', from('203.0.113.1', TOKEN, '127.0.0.7'))).status).toBe(200);
      } finally {
        await svc.stop();
      }
    });
  });

  describe('the start without a token', () => {
    it('warns that the loopback trust extends to a proxy on this host, and only without API_TOKEN', async () => {
      const warnings = async (env: Record<string, string>) => {
        const rec = recordingLogger();
        const svc = await startTestService(backend, db, env, { log: rec.log });
        await svc.stop();
        return rec.entries().filter((e) => e.level === 40).map((e) => e.msg);
      };
      expect(await warnings({})).toEqual([expect.stringMatching(/no API_TOKEN: .*reverse proxy on this host.*set API_TOKEN/)]);
      expect(await warnings({ API_TOKEN: TOKEN })).toEqual([]);
    });
  });

  describe('response headers', () => {
    const expectHeaders = (res: RawResponse, what: string) => {
      expect(res.headers['x-content-type-options'], what).toBe('nosniff');
      expect(res.headers['cache-control'], what).toBe('no-store');
      expect(res.headers['cross-origin-resource-policy'], what).toBe('same-origin');
    };

    it('sends Cross-Origin-Resource-Policy: same-origin on photos and console files, whose caching differs', async () => {
      const photo = await raw(open.url, '/data/pictured/image');
      const page = await raw(guarded.url, '/');
      const asset = /\/assets\/[^"]+\.js/.exec(page.body)![0];
      for (const [what, res] of [['photo', photo], ['resized photo', await raw(open.url, '/data/pictured/image?width=16')], ['console page', page], ['console asset', await raw(guarded.url, asset)]] as const) {
        expect(res.status, what).toBe(200);
        expect(res.headers['cross-origin-resource-policy'], what).toBe('same-origin');
      }
    });

    it('sends nosniff, no-store and CORP on 200, 400, 401, 403, 404 and 405 answers', async () => {
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
