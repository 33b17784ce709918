import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../src/storage/index.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, nextEvent, put, remove, userCsv } from './support/fixtures.js';
import { GateStore } from './support/gateStore.js';
import { ObservedStore } from './support/harness.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

// Targeted reprocessing (POST /data?user_id=...&prefix=...) and dry runs (dry_run=true), through
// the HTTP API on each backend.

interface Run {
  id: number;
  status: string;
  full: boolean;
  joined_existing_run?: boolean;
  scope: { user_ids: string[] | null; prefix: string | null } | null;
  counts: Record<string, number>;
  rejected: Array<{ key: string; reason: string }>;
  output_written: boolean;
}

interface DryRun {
  dry_run: true;
  counts: Record<string, number>;
  new: Array<{ user_id: string; fields: Record<string, unknown> }>;
  updated: Array<{ user_id: string; changes: Record<string, { old: unknown; new: unknown }> }>;
  rejected: Array<{ key: string; reason: string }>;
  erased: unknown[];
  list_limit: number;
  output_would_be_written: boolean;
}

describe.each(backends)('targeted runs and dry runs on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let observed: ObservedStore;
  let gated: GateStore;

  const startService = async () => {
    svc = await startTestService(backend, db, backend.env, {
      wrapStore: (s: ObjectStore) => {
        observed = new ObservedStore(s);
        gated = new GateStore(observed);
        return gated;
      },
    });
    await backend.store.ensureBucket(svc.srcBucket);
  };
  const post = async <T = Run>(query: string): Promise<T> => {
    const res = await svc.post(`/data?${query}`);
    expect(res.status, await res.clone().text()).toBeLessThan(300);
    return (await res.json()) as T;
  };
  const sourceKeys = async () => (await db.pool.query<{ key: string }>('SELECT key FROM source_files ORDER BY key COLLATE "C"')).rows.map((r) => r.key);
  const userRow = async (id: string) =>
    (await db.pool.query<{ first_name: string; img_path: string | null }>('SELECT first_name, img_path FROM users WHERE user_id = $1', [id])).rows[0];

  async function seed() {
    await put(backend, svc.srcBucket, '1000.csv', userCsv('Susan', 'Lee', 612302400000));
    await put(backend, svc.srcBucket, '1000.png', await makeImage('png'));
    await put(backend, svc.srcBucket, '1001.csv', userCsv('Rosa', 'Garcia', -670626000000));
    await put(backend, svc.srcBucket, 'batch1/1002.csv', userCsv('Nathan', 'Emery', 697237200000));
    await put(backend, svc.srcBucket, 'batch1/photos/1002.jpg', await makeImage('jpeg'));
    await put(backend, svc.srcBucket, 'batch10/1003.csv', userCsv('Ada', 'Byron', 0));
    // 1001 again, in another folder: a user's files may be anywhere.
    await put(backend, svc.srcBucket, 'batch2/1001.png', await makeImage('png'));
    expect(await post('wait=true')).toMatchObject({ status: 'succeeded', counts: { new: 4 } });
    observed.reset();
  }

  beforeAll(async () => {
    backend = await start();
  });
  afterAll(() => backend.stop());
  beforeEach(async () => {
    db = await createTestDatabase();
    await startService();
    await seed();
  });
  afterEach(async () => {
    gated.openAll();
    await svc.stop(0);
    await db.drop();
  });

  describe('user_id', () => {
    it('rereads every file of those users, in any folder, and reads nothing else', async () => {
      const run = await post('user_id=1001&wait=true');
      expect(run).toMatchObject({ status: 'succeeded', full: false, scope: { user_ids: ['1001'], prefix: null }, counts: { scanned: 2, read: 2, new: 0, updated: 0 } });
      expect(observed.reads.sort()).toEqual(['1001.csv', 'batch2/1001.png']);
      expect(await svc.get(`/runs/${run.id}`).then((r) => r.json())).toMatchObject({ scope: { user_ids: ['1001'], prefix: null } });
    });

    it('may repeat: each user named is reprocessed', async () => {
      await post('user_id=1000&user_id=1003&user_id=1000&wait=true');
      expect(observed.reads.sort()).toEqual(['1000.csv', '1000.png', 'batch10/1003.csv']);
    });

    it('never treats files outside the scope as removed, and applies removals inside it', async () => {
      await remove(backend, svc.srcBucket, '1000.png');
      await remove(backend, svc.srcBucket, 'batch2/1001.png');
      await post('user_id=1001&wait=true');
      // 1001's photo is gone: inside the scope, so its img_path clears; 1000's is outside it.
      expect((await userRow('1001'))?.img_path).toBeNull();
      expect(await sourceKeys()).toContain('1000.png');
      expect((await userRow('1000'))?.img_path).not.toBeNull();
      expect(await sourceKeys()).not.toContain('batch2/1001.png');
    });

    it('a changed user is updated, and output.csv rewritten only then', async () => {
      expect(await post('user_id=1000&wait=true')).toMatchObject({ counts: { updated: 0 }, output_written: false });
      await put(backend, svc.srcBucket, '1000.csv', userCsv('Suzanne', 'Lee', 612302400000));
      expect(await post('user_id=1000&wait=true')).toMatchObject({ counts: { updated: 1 }, output_written: true });
      expect((await userRow('1000'))?.first_name).toBe('Suzanne');
    });
  });

  describe('prefix', () => {
    it('lists and rereads only the keys under the prefix', async () => {
      const run = await post('prefix=batch1/&wait=true');
      expect(run).toMatchObject({ status: 'succeeded', scope: { user_ids: null, prefix: 'batch1/' }, counts: { read: 2, scanned: 2 } });
      expect(observed.reads.sort()).toEqual(['batch1/1002.csv', 'batch1/photos/1002.jpg']);
    });

    it('a prefix is any start of a key, not only a folder', async () => {
      const run = await post('prefix=batch1&wait=true');
      expect(run.counts.read).toBe(3);
      expect(observed.reads.sort()).toEqual(['batch1/1002.csv', 'batch1/photos/1002.jpg', 'batch10/1003.csv']);
      observed.reset();
      await post('prefix=batch1/photos/10&wait=true');
      expect(observed.reads).toEqual(['batch1/photos/1002.jpg']);
    });

    it('removes only recorded keys under the prefix', async () => {
      await remove(backend, svc.srcBucket, '1001.csv');
      await remove(backend, svc.srcBucket, 'batch1/photos/1002.jpg');
      await post('prefix=batch1/&wait=true');
      expect((await userRow('1002'))?.img_path).toBeNull();
      expect(await sourceKeys()).toContain('1001.csv');
    });

    it('a prefix that names no folder lists nothing', async () => {
      expect(await post('prefix=nowhere/deeper/&wait=true')).toMatchObject({ status: 'succeeded', counts: { scanned: 0, read: 0 } });
      expect(await post('prefix=../x&wait=true')).toMatchObject({ status: 'succeeded', counts: { scanned: 0, read: 0 } });
    });

    it('combines with user_id: both narrow', async () => {
      await post('prefix=batch&user_id=1001&wait=true');
      expect(observed.reads).toEqual(['batch2/1001.png']);
    });
  });

  describe('bad parameters get a 400 JSON error', () => {
    it.each([
      ['an empty user_id', 'user_id=', 'user_id'],
      ['a control character', 'user_id=a%01b', 'user_id'],
      ['a user_id over 1,024 bytes', `user_id=${'x'.repeat(1025)}`, 'user_id'],
      ['1,001 user_ids', Array.from({ length: 1001 }, (_, i) => `user_id=${i}`).join('&'), 'user_id'],
      ['an empty prefix', 'prefix=', 'prefix'],
      ['a NUL in the prefix', 'prefix=a%00b', 'prefix'],
      ['a prefix over 1,024 bytes', `prefix=${'p'.repeat(1025)}`, 'prefix'],
      ['two prefixes', 'prefix=a&prefix=b', 'prefix'],
      ['dry_run not a boolean', 'dry_run=yes', 'dry_run'],
    ])('%s', async (_what, query, param) => {
      const res = await svc.post(`/data?${query}`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('invalid_parameter');
      expect(body.error.message.startsWith(`${param}:`)).toBe(true);
    });
  });

  describe('a trigger during a run', () => {
    it('joins a scoped run that covers it; a full or incremental trigger waits and runs after it', async () => {
      const held = gated.holdRead('1000.csv');
      const first = await post('user_id=1000&user_id=1001');
      await held.reached;
      // Inside its scope: joins.
      const joined = await post('user_id=1001');
      expect(joined).toMatchObject({ id: first.id, joined_existing_run: true });
      // Not covered: waits for the run to end, then starts its own.
      const waiting = nextEvent(svc.runner.events, 'runWaiting');
      const full = svc.post('/data?full=true&wait=true');
      expect(await waiting).toMatchObject({ runId: first.id, trigger: 'http' });
      const waiting2 = nextEvent(svc.runner.events, 'runWaiting');
      const other = svc.post('/data?user_id=1003&wait=true');
      expect(await waiting2).toMatchObject({ runId: first.id });
      held.open();
      const after = [(await (await full).json()) as Run, (await (await other).json()) as Run];
      expect(after.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
      expect(after[0]!.id).not.toBe(first.id);
      expect(after[0]).toMatchObject({ full: true, counts: { read: 7 } });
      // 1003's trigger ran on its own or joined the full run, which covers it; it was not dropped.
      expect(after[1]!.id).not.toBe(first.id);
      const reports = (await db.pool.query<{ id: number; status: string }>('SELECT id, status FROM runs ORDER BY id')).rows;
      expect(reports.every((r) => r.status === 'succeeded')).toBe(true);
    });

    it('a scoped trigger during an incremental run waits for it, then rereads its scope', async () => {
      await put(backend, svc.srcBucket, '1001.csv', userCsv('Rosalind', 'Garcia', -670626000000));
      const held = gated.holdRead('1001.csv');
      const first = await post('');
      await held.reached;
      const waiting = nextEvent(svc.runner.events, 'runWaiting');
      const scoped = svc.post('/data?user_id=1000&wait=true');
      expect(await waiting).toMatchObject({ runId: first.id });
      held.open();
      const run = (await (await scoped).json()) as Run;
      expect(run.id).not.toBe(first.id);
      // The incremental run would not have reread 1000's unchanged files; this run did.
      expect(run).toMatchObject({ status: 'succeeded', counts: { read: 2 } });
    });
  });

  describe('dry run', () => {
    const snapshot = async () => {
      const q = async (sql: string): Promise<unknown[]> => (await db.pool.query(sql)).rows as unknown[];
      const out = await backend.store.stat(svc.resBucket, 'output.csv');
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        void backend.store.read(svc.resBucket, 'output.csv').then((s) => {
          const chunks: Buffer[] = [];
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('end', () => resolve(Buffer.concat(chunks)));
          s.on('error', reject);
        }, reject);
      });
      return {
        users: await q('SELECT * FROM users ORDER BY user_id'),
        files: await q('SELECT * FROM source_files ORDER BY key'),
        removals: await q('SELECT * FROM source_removals ORDER BY key'),
        events: await q('SELECT * FROM pending_events ORDER BY key'),
        state: await q('SELECT * FROM pipeline_state'),
        runs: await q('SELECT * FROM runs ORDER BY id'),
        output: { bytes: bytes.toString('base64'), etag: out?.etag, modified: out?.lastModified.getTime() },
      };
    };

    async function change() {
      await put(backend, svc.srcBucket, '1004.csv', userCsv('Grace', 'Hopper', 1000));
      await put(backend, svc.srcBucket, '1000.csv', userCsv('Suzanne', 'Lee', 612302400000));
      await put(backend, svc.srcBucket, 'batch10/1003.csv', 'not,a,user\n');
      await remove(backend, svc.srcBucket, 'batch2/1001.png');
    }

    it('writes nothing, and the next run does what it said', async () => {
      await change();
      const before = await snapshot();
      const dry = await post<DryRun>('dry_run=true');
      expect(await snapshot()).toEqual(before);
      expect(dry).toMatchObject({ dry_run: true, counts: { new: 1, updated: 2, rejected: 1, read: 3 }, output_would_be_written: true });
      expect(dry.new).toEqual([{ user_id: '1004', fields: expect.objectContaining({ first_name: 'Grace', last_name: 'Hopper', birthts: 1000, img_path: null }) }]);
      const updated = Object.fromEntries(dry.updated.map((u) => [u.user_id, u.changes]));
      expect(updated['1000']).toEqual({ first_name: { old: 'Susan', new: 'Suzanne' } });
      expect(Object.keys(updated['1001']!)).toEqual(expect.arrayContaining(['img_path', 'img_format']));
      expect(updated['1001']!.img_path!.new).toBeNull();
      expect(dry.rejected).toEqual([{ key: 'batch10/1003.csv', reason: expect.any(String) as string }]);
      // The next run's counts are the ones predicted.
      const run = await post('wait=true');
      expect(dry.counts.erased).toBe(0);
      expect(run.counts).toEqual(dry.counts);
      expect(run.output_written).toBe(dry.output_would_be_written);
    });

    it('with nothing changed predicts an idle run, and reads nothing', async () => {
      const dry = await post<DryRun>('dry_run=true');
      expect(dry).toMatchObject({ counts: { new: 0, updated: 0, read: 0, unchanged: 4 }, output_would_be_written: false, new: [], updated: [], rejected: [] });
      expect(observed.reads).toEqual([]);
      expect((await post('wait=true')).counts).toMatchObject({ read: 0, unchanged: 4 });
    });

    it('combines with user_id and prefix: reads only its scope', async () => {
      await change();
      const dry = await post<DryRun>('dry_run=true&user_id=1000');
      expect(observed.reads.sort()).toEqual(['1000.csv', '1000.png']);
      expect(dry).toMatchObject({ counts: { read: 2, updated: 1, new: 0, unchanged: 0 } });
      observed.reset();
      const byPrefix = await post<DryRun>('dry_run=true&prefix=batch10/');
      expect(observed.reads).toEqual(['batch10/1003.csv']);
      expect(byPrefix).toMatchObject({ counts: { rejected: 1, read: 1 } });
      const full = await post<DryRun>('dry_run=true&full=true');
      expect(full).toMatchObject({ full: true, counts: { read: 7 }, output_would_be_written: true });
    });

    it('caps each list and counts every entry', async () => {
      await change();
      await put(backend, svc.srcBucket, '1005.csv', userCsv('Alan', 'Turing', 2000));
      await put(backend, svc.srcBucket, '1006.csv', userCsv('Edsger', 'Dijkstra', 3000));
      const dry = await svc.runner.dryRun({ listLimit: 2 });
      expect(dry.counts.new).toBe(3);
      expect(dry.new).toHaveLength(2);
      expect(dry.list_limit).toBe(2);
    });
  });
});
