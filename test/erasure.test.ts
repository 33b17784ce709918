import { describe, expect, it } from 'vitest';
import { eraseUser } from '../src/db/erasures.js';
import { listenForUserChanges } from '../src/db/changeFeed.js';
import { silentLogger } from '../src/log.js';
import type { TestDatabase } from './support/database.js';
import { makeImage, nextEvent, put, putNewer, readText, remove, userCsv, waitFor } from './support/fixtures.js';
import { GateStore } from './support/gateStore.js';
import { minioRecord } from './support/s3Events.js';
import type { TestService } from './support/service.js';
import { sameBuckets, servicePerTest } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import type { ObjectInfo, ObjectStore } from '../src/storage/index.js';

interface Erasure {
  id: number;
  erased_at: string;
  user_ref: string;
  reason: 'api' | 'source_delete';
  files: number;
  run_id: number | null;
}
interface Run {
  id: number;
  status: string;
  counts: Record<string, number>;
}

/** The store's clock off by ms from the database's: every modification time it reports moves. */
function skewed(inner: ObjectStore, ms: number): ObjectStore {
  const shift = <T extends ObjectInfo | null>(i: T): T => (i ? { ...i, lastModified: new Date(i.lastModified.getTime() + ms) } : i);
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === 'stat' || prop === 'head') return async (...args: unknown[]) => shift((await fn.apply(target, args)) as ObjectInfo | null);
      if (prop === 'list')
        return async function* (...args: unknown[]) {
          for await (const info of fn.apply(target, args) as AsyncIterable<ObjectInfo>) yield shift(info);
        };
      return fn.bind(target);
    },
  });
}

const json = async <T>(res: Response | Promise<Response>) => (await (await res).json()) as T;
const del = (svc: TestService, userId: string) => fetch(`${svc.url}/data/${encodeURIComponent(userId)}`, { method: 'DELETE' });
const run = (svc: TestService, query = '') => json<Run>(svc.post(`/data?wait=true${query}`));
const userIds = async (svc: TestService) => (await json<{ data: Array<{ user_id: string }> }>(svc.get('/data'))).data.map((u) => u.user_id);

describe.each(backends)('erasure on the %s backend', (_name, startBackend) => {
  let backend: Backend;
  let db: TestDatabase;
  const service = servicePerTest(startBackend, (b, d) => {
    backend = b;
    db = d;
  });
  const fileRows = async (userId: string) =>
    (
      await db.pool.query<{ key: string; status: string; first_name: string | null; birthts: number | null }>(
        'SELECT key, status, first_name, birthts FROM source_files WHERE user_id = $1 ORDER BY key',
        [userId],
      )
    ).rows;

  it('DELETE /data/:user_id erases the row, logs it without the personal data, scrubs the records and rewrites output.csv', async () => {
    const svc = await service({ EXPORT_INTERVAL: '0' });
    await put(backend, svc.srcBucket, 'erase-me-42.csv', userCsv('Zebulon', 'Quux', 123_456_789));
    await put(backend, svc.srcBucket, 'erase-me-42.png', await makeImage('png'));
    await put(backend, svc.srcBucket, 'keep-7.csv', userCsv('Kept', 'K', 1));
    await put(backend, svc.srcBucket, 'old/erase-me-42.csv', 'first_name,last_name,birthts\nZebulon,Quux,not-a-number\n');
    expect((await run(svc)).counts).toMatchObject({ new: 2, rejected: 1 });
    expect(await readText(backend, svc.resBucket, 'output.csv')).toContain('Zebulon');

    const res = await del(svc, 'erase-me-42');
    expect(res.status).toBe(200);
    const body = await json<{ erasure: Erasure; already_erased: boolean }>(res);
    expect(body.already_erased).toBe(false);
    expect(body.erasure).toMatchObject({ reason: 'api', files: 3, run_id: null, user_ref: expect.stringMatching(/^[0-9a-f]{16}$/) });

    expect((await svc.get('/data/erase-me-42')).status).toBe(404);
    expect(await (await svc.get('/metrics')).text()).toMatch(/^userjoin_erasures_total\{reason="api"\} 1$/m);
    expect(await userIds(svc)).toEqual(['keep-7']);
    // Nothing of the person stays in the log, the file records or the run issues.
    const log = await (await svc.get('/erasures')).text();
    expect(log).not.toMatch(/erase-me-42|Zebulon|Quux/);
    expect(JSON.parse(log)).toEqual({ data: [body.erasure], next_after: null });
    expect(await fileRows('erase-me-42')).toEqual([
      { key: 'erase-me-42.csv', status: 'erased', first_name: null, birthts: null },
      { key: 'erase-me-42.png', status: 'erased', first_name: null, birthts: null },
      { key: 'old/erase-me-42.csv', status: 'erased', first_name: null, birthts: null },
    ]);
    expect((await db.pool.query(`SELECT 1 FROM run_issues WHERE key LIKE '%erase-me-42%'`)).rowCount).toBe(0);
    const dump = (await db.pool.query<{ t: string }>(`SELECT (SELECT json_agg(e) FROM erasures e)::text || (SELECT json_agg(t) FROM erasure_tombstones t)::text AS t`)).rows[0]!.t;
    expect(dump).not.toMatch(/erase-me-42|Zebulon/);
    // An operator who knows the id can ask about it; another id finds nothing.
    expect((await json<{ data: Erasure[] }>(svc.get('/erasures?user_id=erase-me-42'))).data).toEqual([body.erasure]);
    expect((await json<{ data: Erasure[] }>(svc.get('/erasures?user_id=keep-7'))).data).toEqual([]);
    // output.csv follows soon, without a run.
    await waitFor('output.csv rewritten without the user', async () => !(await readText(backend, svc.resBucket, 'output.csv')).includes('Zebulon'));

    // Again: harmless, the same entry. An id never stored: 404.
    const again = await del(svc, 'erase-me-42');
    expect(again.status).toBe(200);
    expect(await json(again)).toEqual({ erasure: body.erasure, already_erased: true });
    expect((await json<{ data: Erasure[] }>(svc.get('/erasures'))).data).toHaveLength(1);
    const missing = await del(svc, 'never-was');
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ error: { code: 'not_found' } });
  });

  it('the tombstone holds across full=true, and gives way to a new version of a file', async () => {
    const svc = await service();
    await put(backend, svc.srcBucket, 'u1.csv', userCsv('First', 'Version', 1));
    await put(backend, svc.srcBucket, 'u1.png', await makeImage('png'));
    await run(svc);
    const { erasure } = await json<{ erasure: Erasure }>(del(svc, 'u1'));
    const erasedAt = new Date(erasure.erased_at);

    const full = await run(svc, '&full=true');
    expect(full).toMatchObject({ status: 'succeeded', counts: { new: 0, updated: 0 } });
    expect(await userIds(svc)).toEqual([]);
    expect((await fileRows('u1')).map((f) => f.status)).toEqual(['erased', 'erased']);

    // A new version of the CSV imports; the photo is the same version, so it stays out.
    await putNewer(backend, svc.srcBucket, 'u1.csv', userCsv('Second', 'Version', 2), erasedAt);
    expect((await run(svc)).counts).toMatchObject({ new: 1 });
    expect(await json(svc.get('/data/u1'))).toMatchObject({ first_name: 'Second', img_path: null });
    // A new version of the photo joins it.
    await putNewer(backend, svc.srcBucket, 'u1.png', await makeImage('png', 9, 9), erasedAt);
    expect((await run(svc)).counts).toMatchObject({ updated: 1 });
    expect(await json(svc.get('/data/u1'))).toMatchObject({ first_name: 'Second', img_path: `${svc.srcBucket}/u1.png` });
  });

  it('an erasure during a run on another replica holds: the run read the files before, and does not bring the user back', async () => {
    let gate: GateStore | undefined;
    const a = await service({}, { wrapStore: (s) => (gate = new GateStore(s)) });
    const b = await service(sameBuckets(a));
    await put(backend, a.srcBucket, 'r1.csv', userCsv('Before', 'B', 1));
    await run(a);
    await put(backend, a.srcBucket, 'r1.csv', userCsv('During', 'D', 2));
    const held = gate!.holdRead('r1.csv');
    const running = run(a, '&full=true');
    await held.reached;
    // Replica b erases while a's item holds the new bytes, read before the erasure.
    expect((await del(b, 'r1')).status).toBe(200);
    held.open();
    expect(await running).toMatchObject({ status: 'succeeded', counts: { new: 0, updated: 0 } });
    expect(await userIds(a)).toEqual([]);
    expect(await userIds(b)).toEqual([]);
    expect((await fileRows('r1')).map((f) => [f.status, f.first_name])).toEqual([['erased', null]]);
  });

  it('a version written before the erasure, and not read yet, stays out', async () => {
    const svc = await service();
    await put(backend, svc.srcBucket, 'v1.csv', userCsv('First', 'V', 1));
    await run(svc);
    // Another size, so every store sees a new version; written now, so before the erasure.
    await put(backend, svc.srcBucket, 'v1.csv', userCsv('Second version', 'V', 2));
    // The tombstone holds the recorded version only; the newer one was in the bucket all the same.
    expect((await del(svc, 'v1')).status).toBe(200);
    expect((await run(svc)).counts).toMatchObject({ read: 1, new: 0 });
    expect(await userIds(svc)).toEqual([]);
  });

  it("holds when the store's clock runs ahead of the database's: what a run read before the erasure stays out", async () => {
    let gate: GateStore | undefined;
    const a = await service({}, { wrapStore: (s) => (gate = new GateStore(skewed(s, 10 * 60_000))) });
    const b = await service(sameBuckets(a));
    await put(backend, a.srcBucket, 's1.csv', userCsv('Before', 'B', 1));
    await run(a);
    await put(backend, a.srcBucket, 's1.csv', userCsv('During', 'D', 2));
    const held = gate!.holdRead('s1.csv');
    const running = run(a, '&full=true');
    await held.reached;
    expect((await del(b, 's1')).status).toBe(200);
    held.open();
    expect(await running).toMatchObject({ status: 'succeeded', counts: { new: 0, updated: 0 } });
    expect(await userIds(a)).toEqual([]);
  });

  it('an erasure that waits for the user lock is dated when it gets it: a version a run read meanwhile stays out', async () => {
    let gate: GateStore | undefined;
    const a = await service({}, { wrapStore: (s) => (gate = new GateStore(s)) });
    const b = await service(sameBuckets(a));
    await put(backend, a.srcBucket, 'w1.csv', userCsv('Before', 'B', 1));
    await run(a);
    // A commit of another user holds w1's lock bucket.
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock(7330103, hashtext('w1') & 255)`);
      const erasing = del(b, 'w1');
      await waitFor('the erasure waiting for the lock', async () =>
        ((await db.pool.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rowCount ?? 0) > 0);
      const waitingSince = (await db.pool.query<{ t: Date }>('SELECT now() AS t')).rows[0]!.t;
      await putNewer(backend, a.srcBucket, 'w1.csv', userCsv('During', 'D', 2), waitingSince);
      const held = gate!.holdRead('w1.csv');
      const running = run(a);
      await held.reached;
      await holder.query('COMMIT');
      expect((await erasing).status).toBe(200);
      held.open();
      expect((await running).counts).toMatchObject({ new: 0, updated: 0 });
      expect(await userIds(a)).toEqual([]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
  });

  it('a targeted run that names a user erased while it runs drops the user_id from its scope when it ends', async () => {
    let gate: GateStore | undefined;
    const svc = await service({}, { wrapStore: (s) => (gate = new GateStore(s)) });
    await put(backend, svc.srcBucket, 'sc1.csv', userCsv('Scoped', 'S', 1));
    await put(backend, svc.srcBucket, 'sc2.csv', userCsv('Other', 'S', 2));
    await run(svc);
    const held = gate!.holdRead('sc1.csv');
    const running = run(svc, '&user_id=sc1&user_id=sc2');
    await held.reached;
    expect((await del(svc, 'sc1')).status).toBe(200);
    held.open();
    const r = await running;
    const report = await json<{ scope: { user_ids: string[] | null } }>(svc.get(`/runs/${r.id}`));
    expect(report.scope.user_ids).toEqual(['sc2']);
    expect(JSON.stringify(await json(svc.get('/runs')))).not.toContain('sc1');
  });

  it('every instance hears of an erasure, to drop its cached thumbnails', async () => {
    const svc = await service();
    await put(backend, svc.srcBucket, 't1.csv', userCsv('T', 'T', 1));
    await run(svc);
    const erased: string[] = [];
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    const feed = listenForUserChanges(db.pool, { onChange: () => undefined, onErased: () => erased.push('erased'), onListening: () => listening(), onLost: () => undefined }, silentLogger());
    try {
      await ready;
      expect(await eraseUser(db.pool, 't1')).toMatchObject({ kind: 'erased' });
      await waitFor('the erasure heard', () => erased.length === 1);
    } finally {
      await feed.close();
    }
  });

  describe('ON_SOURCE_DELETE', () => {
    it('keep (the default): a user whose CSV went stays', async () => {
      const svc = await service();
      await put(backend, svc.srcBucket, 'k1.csv', userCsv('K', 'K', 1));
      await run(svc);
      await remove(backend, svc.srcBucket, 'k1.csv');
      expect((await run(svc)).counts).toMatchObject({ erased: 0 });
      expect(await userIds(svc)).toEqual(['k1']);
      expect((await json<{ data: Erasure[] }>(svc.get('/erasures'))).data).toEqual([]);
    });

    it('erase: a user whose last CSV went is erased, found by a listing; a user with a CSV left is not', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase' });
      await put(backend, svc.srcBucket, 'gone.csv', userCsv('Gone', 'G', 1));
      await put(backend, svc.srcBucket, 'gone.png', await makeImage('png'));
      await put(backend, svc.srcBucket, 'two.csv', userCsv('Two', 'T', 1));
      await put(backend, svc.srcBucket, 'old/two.csv', userCsv('Two', 'Old', 1));
      await put(backend, svc.srcBucket, 'bad.csv', userCsv('Bad', 'B', 1));
      await run(svc);
      await remove(backend, svc.srcBucket, 'gone.csv');
      await remove(backend, svc.srcBucket, 'two.csv');
      // A broken new version is still a CSV in the bucket: not a delete.
      await put(backend, svc.srcBucket, 'bad.csv', 'not,a,csv\n');
      const r = await run(svc);
      expect(r.counts).toMatchObject({ erased: 1 });
      expect(await (await svc.get('/metrics')).text()).toMatch(/^userjoin_erasures_total\{reason="source_delete"\} 1$/m);
      expect(await userIds(svc)).toEqual(['bad', 'two']);
      const [entry] = (await json<{ data: Erasure[] }>(svc.get('/erasures?user_id=gone'))).data;
      expect(entry).toMatchObject({ reason: 'source_delete', run_id: r.id, files: 1 });
      // The photo, still in the bucket, keeps its record: only the CSV that went is tombstoned.
      expect((await fileRows('gone')).map((f) => [f.key, f.status])).toEqual([['gone.png', 'ok']]);
      // The same bytes put back stay erased where the etag is the content's (S3); a new version imports.
      const erasedAt = new Date(entry!.erased_at);
      await putNewer(backend, svc.srcBucket, 'gone.csv', userCsv('Gone', 'G', 1), erasedAt);
      await run(svc, '&full=true');
      if (backend.server !== 'folder') expect(await userIds(svc)).toEqual(['bad', 'two']);
      await putNewer(backend, svc.srcBucket, 'gone.csv', userCsv('Returned', 'G', 1), erasedAt);
      await run(svc);
      expect(await json(svc.get('/data/gone'))).toMatchObject({ first_name: 'Returned', img_path: `${svc.srcBucket}/gone.png` });
    });

    it('a dry run says who a run would erase, and erases no one; after an API erasure it predicts no import', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase' });
      await put(backend, svc.srcBucket, 'dry.csv', userCsv('Dry', 'D', 1));
      await put(backend, svc.srcBucket, 'api.csv', userCsv('Api', 'A', 1));
      await run(svc);
      expect((await del(svc, 'api')).status).toBe(200);
      await remove(backend, svc.srcBucket, 'dry.csv');
      const dry = await json<{ erased: Array<{ user_id: string }>; new: unknown[]; counts: Record<string, number> }>(svc.post('/data?dry_run=true&full=true'));
      expect(dry.erased).toEqual([{ user_id: 'dry' }]);
      expect(dry.new).toEqual([]);
      expect(dry.counts).toMatchObject({ erased: 1, new: 0, updated: 0 });
      expect(await userIds(svc)).toEqual(['dry']);
      expect((await run(svc, '&full=true')).counts).toMatchObject({ erased: 1, new: 0, updated: 0 });
      expect(await userIds(svc)).toEqual([]);
    });

    it('erase: a photo deleted with the CSV is not tombstoned, only the CSV is', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase' });
      await put(backend, svc.srcBucket, 'both.csv', userCsv('Both', 'B', 1));
      await put(backend, svc.srcBucket, 'both.png', await makeImage('png'));
      await run(svc);
      await remove(backend, svc.srcBucket, 'both.csv');
      await remove(backend, svc.srcBucket, 'both.png');
      expect((await run(svc)).counts).toMatchObject({ erased: 1 });
      expect((await json<{ data: Erasure[] }>(svc.get('/erasures'))).data).toMatchObject([{ reason: 'source_delete', files: 1 }]);
    });

    it('erase: the photo, read again by the run that erases its user, comes back with a new CSV', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase' });
      await put(backend, svc.srcBucket, 'p1.csv', userCsv('P', 'P', 1));
      await put(backend, svc.srcBucket, 'p1.png', await makeImage('png'));
      await run(svc);
      await remove(backend, svc.srcBucket, 'p1.csv');
      // full=true reads the photo again, in the item that erases the user.
      expect((await run(svc, '&full=true')).counts).toMatchObject({ erased: 1 });
      expect((await fileRows('p1')).map((f) => [f.key, f.status])).toEqual([['p1.png', 'ok']]);
      const [entry] = (await json<{ data: Erasure[] }>(svc.get('/erasures'))).data;
      await putNewer(backend, svc.srcBucket, 'p1.csv', userCsv('Again', 'P', 2), new Date(entry!.erased_at));
      await run(svc);
      expect(await json(svc.get('/data/p1'))).toMatchObject({ first_name: 'Again', img_path: `${svc.srcBucket}/p1.png` });
    });

    it('erase: a CSV moved to another folder, its delete seen first, erases the user; the copy then brings it back', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase' });
      await put(backend, svc.srcBucket, 'z/mv.csv', userCsv('Moved', 'M', 1));
      await put(backend, svc.srcBucket, 'mv.png', await makeImage('png'));
      await run(svc);
      // The copy lands first, unseen; the old key goes, and its event is handled.
      await put(backend, svc.srcBucket, 'a/mv.csv', userCsv('Moved', 'M', 1));
      await remove(backend, svc.srcBucket, 'z/mv.csv');
      const batch = nextEvent(svc.runner.events, 'eventBatch');
      await svc.post('/events/s3', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ Records: [minioRecord(svc.srcBucket, 'z/mv.csv', 'ObjectRemoved:Delete')] }),
      });
      await batch;
      await waitFor('the user erased', async () => (await userIds(svc)).length === 0);
      // A source delete tombstones the key that went, not the same bytes under another key.
      expect((await run(svc)).counts).toMatchObject({ new: 1 });
      expect(await json(svc.get('/data/mv'))).toMatchObject({ first_name: 'Moved', img_path: `${svc.srcBucket}/mv.png`, source: { csv: { key: 'a/mv.csv' } } });
    });

    it('erase: a removal event erases the user without a listing', async () => {
      const svc = await service({ ON_SOURCE_DELETE: 'erase', EXPORT_INTERVAL: '0' });
      await put(backend, svc.srcBucket, 'ev.csv', userCsv('Evented', 'E', 1));
      await run(svc);
      await remove(backend, svc.srcBucket, 'ev.csv');
      const batch = nextEvent(svc.runner.events, 'eventBatch');
      const res = await svc.post('/events/s3', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ EventName: 's3:ObjectRemoved:Delete', Records: [minioRecord(svc.srcBucket, 'ev.csv', 'ObjectRemoved:Delete')] }),
      });
      expect(res.status).toBe(202);
      await batch;
      await waitFor('the user erased', async () => (await userIds(svc)).length === 0);
      expect((await json<{ data: Erasure[] }>(svc.get('/erasures'))).data).toMatchObject([{ reason: 'source_delete' }]);
      await waitFor('output.csv without the user', async () => !(await readText(backend, svc.resBucket, 'output.csv')).includes('Evented'));
    });
  });
});
