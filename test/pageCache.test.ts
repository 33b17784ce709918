import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { notifyUsersChanged } from '../src/db/changeFeed.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { nextSecond, put, sleep, userCsv } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

interface Page {
  data: Array<{ user_id: string; first_name: string }>;
}

describe('GET /data page cache', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const names = async (query = '?limit=10') => ((await (await svc.get(`/data${query}`)).json()) as Page).data.map((u) => u.first_name);
  /** Changes a row behind the service's back: no run, no notification. */
  const renameSilently = (name: string) => db.pool.query('UPDATE users SET first_name = $1', [name]);
  const listening = () => db.pool.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`);

  beforeEach(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    await put(backend, svc.srcBucket, '1.csv', userCsv('Ada', 'Lovelace', 1));
    expect((await (await svc.post('/data?wait=true')).json()) as { status: string }).toMatchObject({ status: 'succeeded' });
    for (let i = 0; i < 50 && (await listening()).rowCount === 0; i++) await sleep(20);
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
    let seen: string[] = [];
    for (let i = 0; i < 20 && seen[0] !== 'Silent'; i++) {
      seen = await names();
      await sleep(10);
    }
    // Well inside the one-second lifetime: the notification cleared it.
    expect(seen).toEqual(['Silent']);
  });

  it('a run that changes users is visible to the next request', async () => {
    expect(await names()).toEqual(['Ada']);
    await nextSecond();
    await put(backend, svc.srcBucket, '1.csv', userCsv('Grace', 'Hopper', 1));
    await svc.post('/data?wait=true');
    expect(await names()).toEqual(['Grace']);
  });

  it('expires a page after a second, because ages move with the clock', async () => {
    expect(await names()).toEqual(['Ada']);
    await renameSilently('Later');
    await sleep(1100);
    expect(await names()).toEqual(['Later']);
  });

  it('turns itself off while the change feed is down, and back on when it reconnects', async () => {
    await db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE $1', ['LISTEN%']);
    await sleep(100);
    expect(await names()).toEqual(['Ada']);
    await renameSilently('Uncached');
    expect(await names()).toEqual(['Uncached']);
    for (let i = 0; i < 100 && (await listening()).rowCount === 0; i++) await sleep(20);
    expect((await listening()).rowCount).toBe(1);
    expect(await names()).toEqual(['Uncached']);
    await renameSilently('Cached again');
    expect(await names()).toEqual(['Uncached']);
  });
});
