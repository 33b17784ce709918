import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { notifyUsersChanged } from '../src/db/changeFeed.js';
import type { CachedPage } from '../src/http/pageCache.js';
import { PageCache } from '../src/http/pageCache.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { nextEvent, put, userCsv, waitFor } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

interface Page {
  data: Array<{ user_id: string; first_name: string }>;
}

describe('PageCache', () => {
  // Not 0: lru-cache takes an entry stored at time 0 for one without a TTL.
  let now = 1_000_000;
  const clock = { now: () => now };
  const page = (text: string): CachedPage => ({ body: Buffer.from(text), type: 'text/plain', headers: {} });
  const bodyOf = (cache: PageCache, key: string) => cache.get(key)?.body.toString();
  const enabled = () => {
    const cache = new PageCache(clock);
    cache.setEnabled(true);
    return cache;
  };

  it('keeps a page for a second of its clock, then drops it, because ages move with the clock', () => {
    const cache = enabled();
    cache.set('k', page('p'), cache.version());
    now += 1000;
    expect(bodyOf(cache, 'k')).toBe('p');
    now += 1;
    expect(bodyOf(cache, 'k')).toBeUndefined();
  });

  it('does not keep a page queried before a change, nor one queried while it was off', () => {
    const cache = enabled();
    const before = cache.version();
    // A change is reported while the page is being queried: the page may predate it.
    cache.invalidate();
    cache.set('k', page('stale'), before);
    expect(bodyOf(cache, 'k')).toBeUndefined();
    cache.set('k', page('fresh'), cache.version());
    expect(bodyOf(cache, 'k')).toBe('fresh');

    cache.setEnabled(false);
    const whileOff = cache.version();
    cache.setEnabled(true);
    cache.set('j', page('unwatched'), whileOff);
    expect(bodyOf(cache, 'j')).toBeUndefined();
  });

  it('keeps nothing while off', () => {
    const cache = new PageCache(clock);
    cache.set('k', page('p'), cache.version());
    expect(bodyOf(cache, 'k')).toBeUndefined();
  });
});

describe('GET /data page cache', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const names = async (query = '?limit=10') => ((await (await svc.get(`/data${query}`)).json()) as Page).data.map((u) => u.first_name);
  /** Changes a row behind the service's back: no run, no notification. */
  const renameSilently = (name: string) => db.pool.query('UPDATE users SET first_name = $1', [name]);
  /** The feed's LISTEN has completed (idle after it), so the cache is on. */
  const listening = async () =>
    (await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND state = 'idle'`)).rowCount === 1;

  beforeEach(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    await put(backend, svc.srcBucket, '1.csv', userCsv('Ada', 'Lovelace', 1));
    expect((await (await svc.post('/data?wait=true')).json()) as { status: string }).toMatchObject({ status: 'succeeded' });
    await waitFor('the change feed to listen', listening);
  });
  afterEach(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  it('serves a repeated page from memory, and drops it as soon as any instance reports a change', async () => {
    expect(await names()).toEqual(['Ada']);
    await renameSilently('Silent');
    expect(await names()).toEqual(['Ada']);
    // Streamed (unbounded) results are never cached.
    expect(await names('')).toEqual(['Silent']);
    await notifyUsersChanged(db.pool);
    // Well inside the one-second lifetime: the notification cleared it.
    await waitFor('the notification to clear the page', async () => (await names())[0] === 'Silent', 500);
  });

  it('a run that changes users is visible to the next request', async () => {
    expect(await names()).toEqual(['Ada']);
    // Another size, so the run sees the change whatever the file system's mtime resolution.
    await put(backend, svc.srcBucket, '1.csv', userCsv('Grace', 'Brewster Hopper', 1));
    await svc.post('/data?wait=true');
    expect(await names()).toEqual(['Grace']);
  });

  it('turns itself off while the change feed is down, and back on when it reconnects', async () => {
    const lost = nextEvent(svc.changeFeed.events, 'lost');
    const back = nextEvent(svc.changeFeed.events, 'listening');
    await db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE $1', ['LISTEN%']);
    await lost;
    expect(await names()).toEqual(['Ada']);
    await renameSilently('Uncached');
    expect(await names()).toEqual(['Uncached']);
    // The service has had LISTEN's answer, not only the server: the cache is on.
    await back;
    expect(await names()).toEqual(['Uncached']);
    await renameSilently('Cached again');
    expect(await names()).toEqual(['Uncached']);
  });
});
