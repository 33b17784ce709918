import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventIntake } from '../src/triggers/eventIntake.js';
import { Metrics } from '../src/metrics.js';
import { silentLogger } from '../src/log.js';
import { forgetEvents, recordEvents, takePendingEvents } from '../src/db/events.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { nextEvent, put, userCsv, waitFor } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { recordingLogger, servicePerTest } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import { minioRecord } from './support/s3Events.js';
import { FlakyProxy } from './support/flakyProxy.js';

// Issue 18, part 1: an event flood is bounded. The backlog has a limit, the webhook has its own
// few slots so GET /data keeps answering, a key recorded after a flood is taken at once, and a
// forged key the store could never hold is refused, never reported as a rejected file.

// The events lock (db/locks.ts): held here, no batch runs, so the backlog stays as the test made it.
const EVENTS_LOCK = 7330104;

describe.each(backends)('event flood (%s)', (_name, startBackend) => {
  let backend: Backend;
  let db: TestDatabase;
  const start = servicePerTest(startBackend, (b, d) => {
    backend = b;
    db = d;
  });

  const body = (svc: TestService, keys: string[], pad = '') => JSON.stringify({ Records: keys.map((k) => minioRecord(svc.srcBucket, k)), pad });
  const notify = (svc: TestService, keys: string[]) => svc.post('/events/s3', { headers: { 'content-type': 'application/json' }, body: body(svc, keys) });
  const pendingKeys = async () => (await db.pool.query<{ key: string }>('SELECT key FROM pending_events ORDER BY key')).rows.map((r) => r.key);
  const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  /** Runs fn while the events lock is held elsewhere: events are recorded, none processed. */
  async function withEventsHeld<T>(fn: () => Promise<T>): Promise<T> {
    const other = await db.pool.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1)', [EVENTS_LOCK]);
      return await fn();
    } finally {
      await other.query('SELECT pg_advisory_unlock($1)', [EVENTS_LOCK]);
      other.release();
    }
  }

  it('past EVENT_BACKLOG_LIMIT, answers 503 with Retry-After and records nothing of the body; takes bodies again once the backlog is processed', async () => {
    const svc = await start({ EVENT_BACKLOG_LIMIT: '3' });
    await withEventsHeld(async () => {
      expect((await notify(svc, ['a/1.csv', 'a/2.csv', 'a/3.csv'])).status).toBe(202);
      const refused = await notify(svc, ['b/4.csv', 'b/5.csv']);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(await errorOf(refused)).toBe('event_backlog_full');
      expect(await pendingKeys()).toEqual(['a/1.csv', 'a/2.csv', 'a/3.csv']);
    });
    await put(backend, svc.srcBucket, 'c/6.csv', userCsv('Six', 'After', 0));
    await waitFor('the backlog to be processed', async () => (await pendingKeys()).length === 0);
    expect((await notify(svc, ['c/6.csv'])).status).toBe(202);
    await waitFor('user 6', async () => (await svc.get('/data/6')).status === 200);
  });

  if (_name === 'folder') {
    it('past EVENT_BACKLOG_LIMIT, the folder watch drops keys, says so once and counts them; the scheduled run finds those files', async () => {
      const { log, messages } = recordingLogger();
      const svc = await start({ EVENT_BACKLOG_LIMIT: '1', WATCH: 'true' }, { log });
      await withEventsHeld(async () => {
        expect((await notify(svc, ['a/1.csv'])).status).toBe(202);
        await put(backend, svc.srcBucket, '8.csv', userCsv('Ei', 'Ght', 0));
        await put(backend, svc.srcBucket, '9.csv', userCsv('Ni', 'Ne', 0));
        await waitFor('the folder keys dropped', async () => /userjoin_events_total\{source="folder",outcome="backlog_full"\} 2/.test(await (await svc.get('/metrics')).text()));
        expect(await pendingKeys()).toEqual(['a/1.csv']);
      });
      expect(messages().filter((m) => m.includes('EVENT_BACKLOG_LIMIT'))).toHaveLength(1);
      expect((await svc.post('/data?wait=true')).status).toBe(200);
      expect((await svc.get('/data/9')).status).toBe(200);
    });
  }

  it('reads at most EVENT_WEBHOOK_CONCURRENCY bodies at once: the next gets 503 before its body is read, and GET /data answers meanwhile', async () => {
    const svc = await start({ EVENT_WEBHOOK_CONCURRENCY: '2' });
    await put(backend, svc.srcBucket, '1000.csv', userCsv('Ann', 'Lee', 0));
    expect((await svc.post('/data?wait=true')).status).toBe(200);

    // Two 1 MiB bodies the test holds open: their first bytes are sent, the rest when it says.
    const bare = Buffer.byteLength(body(svc, ['1000.csv']));
    const full = Buffer.from(body(svc, ['1000.csv'], 'x'.repeat(1024 * 1024 - bare)));
    expect(full.length).toBe(1024 * 1024);
    const held = [0, 1].map(() => holdBody(svc.url, full));
    const inFlight = async () => /userjoin_event_bodies_in_flight (\d+)/.exec(await (await svc.get('/metrics')).text())?.[1];
    await waitFor('both bodies in flight', async () => (await inFlight()) === '2');

    const refused = await notify(svc, ['1000.csv']);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await errorOf(refused)).toBe('events_busy');
    const user = await svc.get('/data/1000');
    expect(user.status).toBe(200);
    expect(await pendingKeys()).toEqual([]);

    const answers = await Promise.all(held.map((h) => h.finish()));
    expect(answers).toEqual([202, 202]);
    expect(await inFlight()).toBe('0');
    expect((await notify(svc, ['1000.csv'])).status).toBe(202);
  });

  it('takes a key recorded after a flood of 20,000 forged keys in the first batch after it', async () => {
    const svc = await start({ EXPORT_INTERVAL: '0' });
    await put(backend, svc.srcBucket, 'real/42.csv', userCsv('Real', 'File', 0));
    const first = await withEventsHeld(async () => {
      // As 15 webhook bodies of forged keys would leave them; the real key's event comes last.
      await db.pool.query(
        `INSERT INTO pending_events (key, seq) SELECT 'forged/' || g || '.csv', nextval('pending_events_seq') FROM generate_series(1, 20000) AS g`,
      );
      expect((await notify(svc, ['real/42.csv'])).status).toBe(202);
      // Listened for before the lock is released, so the first batch cannot be missed.
      return { next: nextEvent(svc.eventLoop.events, 'batch', (b) => b.outcome.kind === 'finished', 60_000) };
    });
    const { outcome } = await first.next;
    if (outcome.kind !== 'finished') throw new Error('not a finished batch');
    // The batch read the one file that exists, and the backlog's oldest half besides.
    expect(outcome.counts).toMatchObject({ new: 1, read: 1, rejected: 0 });
    expect(outcome.more).toBe(true);
    expect((await svc.get('/data/42')).status).toBe(200);
  });

  it('refuses forged keys the store could never hold, and a key that names nothing is not found, never a rejected file', async () => {
    const { log } = recordingLogger();
    const svc = await start({ EXPORT_INTERVAL: '0' }, { log });
    const long = `${'n'.repeat(300)}.csv`;
    const forged = [long, `deep/${'d'.repeat(256)}/1.csv`, 'a/../2.csv', 'a/./3.csv', 'a//4.csv', `${'k/'.repeat(520)}5.csv`];
    const res = await notify(svc, forged);
    expect(res.status).toBe(202);
    const answer = (await res.json()) as { recorded: number; outcomes: Record<string, number> };
    // Over 1024 bytes: refused by every store. The folder store could hold none of the others.
    if (backend.name === 'folder') expect(answer.outcomes).toMatchObject({ refused_key: 6, accepted: 0 });
    else expect(answer.outcomes).toMatchObject({ refused_key: 1, accepted: 5 });

    // Recorded anyway (by an older version, or another instance's store): looked up, not found.
    await db.pool.query(`INSERT INTO pending_events (key, seq) SELECT k, nextval('pending_events_seq') FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING`, [
      forged.slice(0, 5),
    ]);
    for (const key of forged.slice(0, 5)) expect(await backend.store.head(svc.srcBucket, key), key).toBeNull();
    await put(backend, svc.srcBucket, '7.csv', userCsv('Real', 'Seven', 0));
    expect((await notify(svc, ['7.csv'])).status).toBe(202);
    await waitFor('the events to be processed', async () => (await pendingKeys()).length === 0 && (await svc.get('/data/7')).status === 200);
    const runs = ((await (await svc.get('/runs')).json()) as { data: Array<{ status: string; counts: { rejected: number } }> }).data;
    expect(runs.every((r) => r.counts.rejected === 0)).toBe(true);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM run_issues')).rows).toEqual([{ n: 0 }]);
    expect(await (await svc.get('/metrics')).text()).toMatch(/userjoin_objects_rejected_total 0/);
  });

  if (_name !== 'folder') {
    it('a key MinIO calls an invalid object name (400 XMinioInvalidObjectName on its listing) is not found, never a rejected file', async () => {
      const proxy = await FlakyProxy.start({ target: { host: '127.0.0.1', port: backend.config.kind === 's3' ? backend.config.port : 0 } });
      try {
        const forged = 'a/../2.csv';
        // MinIO refuses a listing whose prefix has a "." or ".." part or "//", with 400.
        proxy.rule = ({ method, url }) => (method === 'GET' && url.searchParams.has('list-type') && url.searchParams.get('prefix') === forged ? 'invalid_name' : null);
        const svc = await start({ EXPORT_INTERVAL: '0', MINIO_ENDPOINT: `http://127.0.0.1:${proxy.port}` });
        await put(backend, svc.srcBucket, '7.csv', userCsv('Real', 'Seven', 0));
        expect((await notify(svc, [forged, '7.csv'])).status).toBe(202);
        await waitFor('the events to be processed', async () => (await pendingKeys()).length === 0 && (await svc.get('/data/7')).status === 200);
        expect(proxy.injected.invalidName).toBeGreaterThan(0);
        const runs = ((await (await svc.get('/runs')).json()) as { data: Array<{ counts: { rejected: number } }> }).data;
        expect(runs.map((r) => r.counts.rejected)).toEqual(runs.map(() => 0));
        expect((await db.pool.query('SELECT count(*)::int AS n FROM run_issues')).rows).toEqual([{ n: 0 }]);
        expect(await (await svc.get('/metrics')).text()).toMatch(/userjoin_objects_rejected_total 0/);
      } finally {
        await proxy.close();
      }
    });
  }
});

describe('pending events (database only)', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db.drop();
  });

  // Another instance's keys, recorded straight into the table.
  const recordElsewhere = (n: number) =>
    db.pool.query(`INSERT INTO pending_events (key, seq) SELECT 'other/' || g || '.csv', nextval('pending_events_seq') FROM generate_series(1, $1::int) AS g`, [n]);

  function intake(now: () => number): EventIntake {
    const metrics = new Metrics(() => Promise.reject(new Error('not scraped')), silentLogger());
    return new EventIntake(db.pool, metrics, { wake: () => {} }, { backlogLimit: 10, now }, silentLogger());
  }

  it("reuses its count for a second: others' keys recorded meanwhile are seen once the second is past", async () => {
    let now = 0;
    const events = intake(() => now);
    expect(await events.backlogFull()).toBe(false);
    await recordElsewhere(10);
    expect(await events.backlogFull()).toBe(false);
    now = 999;
    expect(await events.backlogFull()).toBe(false);
    now = 1000;
    expect(await events.backlogFull()).toBe(true);
  });

  it('adds the keys it recorded itself, and counts again before it says full', async () => {
    const now = 0;
    const events = intake(() => now);
    expect(await events.backlogFull()).toBe(false);
    await events.accept('s3', ['a/1.csv', 'a/2.csv', 'a/3.csv']);
    await recordElsewhere(7);
    // Its own 3 keys are not enough to say full; the others' 7 are not seen yet.
    expect(await events.backlogFull()).toBe(false);
    await events.accept('s3', Array.from({ length: 7 }, (_, i) => `b/${i}.csv`));
    expect(await events.backlogFull()).toBe(true);
    // The estimate says full, so it counts: the backlog was processed meanwhile.
    await db.pool.query('DELETE FROM pending_events');
    expect(await events.backlogFull()).toBe(false);
  });

  it('a key named again keeps its place, by the first event that named it: a flood cannot hold it in the middle', async () => {
    const forged = (from: number) => Array.from({ length: 1000 }, (_, i) => `forged/${from + i}.csv`);
    await recordEvents(db.pool, ['real/42.csv']);
    await recordEvents(db.pool, forged(0));
    // Named again, then buried under more keys: neither the 500 oldest nor the 500 newest by its last event.
    await recordEvents(db.pool, ['real/42.csv']);
    await recordEvents(db.pool, forged(1000));
    const batch = await takePendingEvents(db.pool, 1000);
    const real = batch.find((e) => e.key === 'real/42.csv');
    expect(real).toBeDefined();
    // Named again while it is processed: kept for the next batch, as the latest event says.
    await recordEvents(db.pool, ['real/42.csv']);
    await forgetEvents(db.pool, batch);
    expect((await db.pool.query('SELECT key FROM pending_events WHERE key = $1', ['real/42.csv'])).rows).toHaveLength(1);
    expect((await takePendingEvents(db.pool, 1000)).some((e) => e.key === 'real/42.csv')).toBe(true);
  });
});

/** A POST whose body the test sends in two parts: its first KiB now, the rest on finish(). */
function holdBody(url: string, full: Buffer): { finish(): Promise<number> } {
  const { hostname, port } = new URL(url);
  const req = http.request({ host: hostname, port, path: '/events/s3', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': full.length } });
  const status = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
  });
  req.write(full.subarray(0, 1024));
  return {
    finish: () => {
      req.end(full.subarray(1024));
      return status;
    },
  };
}
