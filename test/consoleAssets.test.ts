import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { raw } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

const TOKEN = 'assets-test-token-99';

describe.each(backends)('serving the console on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let open: TestService;
  let guarded: TestService;

  beforeAll(async () => {
    backend = await start();
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

  /** The asset URLs the page names. */
  const assetsOf = (html: string) => [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);

  it('serves the page with a strict CSP, revalidated by ETag, saying whether a token is needed', async () => {
    const res = await open.get('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const html = await res.text();
    expect(html).toContain('<meta name="userjoin-auth" content="none">');
    // Self-contained: nothing from another origin.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const etag = res.headers.get('etag')!;
    expect((await raw(open.url, '/', { headers: { 'If-None-Match': etag } })).status).toBe(304);

    const withToken = await guarded.get('/');
    expect(withToken.status).toBe(200);
    expect(await withToken.text()).toContain('<meta name="userjoin-auth" content="bearer">');
  });

  it('serves every asset under a versioned URL, cacheable for good, without a token', async () => {
    const html = await (await guarded.get('/')).text();
    const assets = assetsOf(html);
    expect(assets.map((a) => a.split('/').pop())).toEqual(expect.arrayContaining(['app.js', 'style.css', 'icon.svg']));
    const version = assets[0]!.split('/')[2];
    expect(assets.every((a) => a.startsWith(`/assets/${version}/`))).toBe(true);
    for (const asset of assets) {
      const res = await guarded.get(asset);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(res.headers.get('etag')).toMatch(/^"/);
      await res.arrayBuffer();
    }
    // Modules import each other by relative paths, so they resolve under the same version.
    const app = await (await guarded.get(`/assets/${version}/app.js`)).text();
    for (const m of app.matchAll(/from '\.\/([\w.]+)'/g)) expect((await guarded.get(`/assets/${version}/${m[1]}`)).status, m[1]).toBe(200);
    expect((await guarded.get(`/assets/${version}/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
  });

  it('answers 404 for another version or an unknown file, and keeps the data behind the token', async () => {
    const version = assetsOf(await (await open.get('/')).text())[0]!.split('/')[2];
    expect((await open.get('/assets/0000000000000000/app.js')).status).toBe(404);
    expect((await open.get(`/assets/${version}/nope.js`)).status).toBe(404);
    expect((await open.get(`/assets/${version}/index.html`)).status).toBe(404);
    expect((await open.get(`/assets/${version}/..%2Fpackage.json`)).status).toBe(404);
    expect((await guarded.get('/data')).status).toBe(401);
    expect((await guarded.get('/assets/x/y')).status).toBe(404);
  });

  it('keeps the Host check on the console without a token (DNS rebinding)', async () => {
    expect((await raw(open.url, '/', { headers: { Host: 'evil.example' } })).status).toBe(403);
  });
});
