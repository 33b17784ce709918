import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { commitItem } from '../src/db/commitItem.js';
import { recordEvents } from '../src/db/events.js';
import { createRun } from '../src/db/runs.js';
import { getOutputState, markOutputExported } from '../src/db/outputState.js';
import { silentLogger } from '../src/log.js';
import { runEventBatch } from '../src/runs/eventBatch.js';
import { exportOutput } from '../src/pipeline/exportOutput.js';
import type { RunDeps } from '../src/runs/fullRun.js';
import { runPipeline } from '../src/runs/fullRun.js';
import { upsertUsers } from '../src/db/users.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, readText, remove, userCsv } from './support/fixtures.js';
import { GateStore } from './support/gateStore.js';
import { ObservedStore, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import { PixelBudget } from '../src/images/budget.js';
import { fingerprintsOf } from '../src/db/sourceFiles.js';
import { processItem } from '../src/runs/worker.js';
import pLimit from 'p-limit';
import { csvSource } from './support/rows.js';

// Interleavings of a full run, an event batch and an export, driven by gates the test opens:
// each case must end equal to the store's final state, whichever path read an object first.

for (const [name, startBackend] of backends) {
  describe(`interleavings (${name})`, () => {
    let backend: Backend;
    let db: TestDatabase;
    let config: Config;
    let store: GateStore;
    let deps: RunDeps;
    beforeAll(async () => {
      backend = await startBackend();
    });
    afterAll(() => backend.stop());
    beforeEach(async () => {
      db = await createTestDatabase();
      config = testConfig(backend, db, { BATCH_SIZE: '10' });
      store = new GateStore(backend.store);
      await store.ensureBucket(config.srcBucket);
      await store.ensureBucket(config.resBucket);
      deps = { db: db.pool, store, config, log: silentLogger(), budget: new PixelBudget(config.limits.maxImagePixels) };
    });
    afterEach(() => db.drop());

    const fullRun = async () => {
      const out = await runPipeline(deps, { trigger: 'cli', full: true });
      if (out.kind !== 'finished') throw new Error('the run did not start');
      return out.report;
    };
    const eventBatch = async (keys: string[]) => {
      await recordEvents(db.pool, keys);
      const out = await runEventBatch(deps, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 });
      if (out.kind !== 'finished') throw new Error(`the event batch did not run: ${out.kind}`);
      return out.report;
    };
    const stored = async () => (await db.pool.query<{ user_id: string; first_name: string }>('SELECT user_id, first_name FROM users ORDER BY user_id')).rows;
    const recorded = async (key: string) =>
      (await db.pool.query<{ etag: string }>('SELECT etag FROM source_files WHERE key = $1', [key])).rows[0]?.etag ?? null;
    const current = async (key: string) => (await store.head(config.srcBucket, key))?.etag ?? null;

    it("an event batch commits between a full run item's read and its commit: the item reads again, and the newer state stays", async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Old', 'L', 1));
      await put(backend, config.srcBucket, 'v.csv', userCsv('Vera', 'L', 2));
      const held = store.holdRead('u.csv');
      const run = fullRun();
      await held.reached;
      // The item holds the old bytes. The object changes, and an event batch commits it,
      // without waiting for the run.
      await put(backend, config.srcBucket, 'u.csv', userCsv('New', 'L', 1));
      const batch = await eventBatch(['u.csv']);
      expect(batch.status).toBe('succeeded');
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'New' }]);
      held.open();
      expect((await run).status).toBe('succeeded');
      expect(await stored()).toEqual([
        { user_id: 'u', first_name: 'New' },
        { user_id: 'v', first_name: 'Vera' },
      ]);
      expect(await recorded('u.csv')).toBe(await current('u.csv'));
      expect(await readText(backend, config.resBucket, 'output.csv')).toContain('u,New,L,1');
    });

    it("a full run item commits between an event batch's read and its commit: the batch reads again, and the newer state stays", async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Old', 'L', 1));
      const held = store.holdRead('u.csv');
      const batch = eventBatch(['u.csv']);
      await held.reached;
      await put(backend, config.srcBucket, 'u.csv', userCsv('New', 'L', 1));
      expect((await fullRun()).status).toBe('succeeded');
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'New' }]);
      held.open();
      expect((await batch).status).toBe('succeeded');
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'New' }]);
      expect(await recorded('u.csv')).toBe(await current('u.csv'));
    });

    it('an object that changes again after the event batch, with no event: the item reads it again and ends on the newest', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('One', 'L', 1));
      const held = store.holdRead('u.csv');
      const run = fullRun();
      await held.reached;
      await put(backend, config.srcBucket, 'u.csv', userCsv('Two', 'L', 1));
      await eventBatch(['u.csv']);
      // A third version, which no event announces: only the item's own lookup can find it.
      await put(backend, config.srcBucket, 'u.csv', userCsv('Three', 'Later', 1));
      held.open();
      expect((await run).status).toBe('succeeded');
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'Three' }]);
      expect(await recorded('u.csv')).toBe(await current('u.csv'));
    });

    it('a file recorded and removed by events while an item reads it: the item does not bring it back', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('One', 'L', 1));
      const held = store.holdRead('u.csv');
      const run = fullRun();
      await held.reached;
      // Not recorded when the run listed it, and not recorded again by the time the item
      // commits: only the tombstone tells that it was recorded and removed in between.
      await put(backend, config.srcBucket, 'u.csv', userCsv('Two', 'L', 1));
      await eventBatch(['u.csv']);
      await remove(backend, config.srcBucket, 'u.csv');
      await eventBatch(['u.csv']);
      expect(await recorded('u.csv')).toBeNull();
      held.open();
      expect((await run).status).toBe('succeeded');
      expect(await recorded('u.csv')).toBeNull();
      // Removing a file never removes its user, who keeps the last CSV recorded.
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'Two' }]);
    });

    it('a listed state older than what an event recorded after the listing saw it: the item looks it up, never records the older one', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('New', 'L', 1));
      await eventBatch(['u.csv']);
      const seen = (await fingerprintsOf(db.pool, ['u.csv'])).get('u.csv')!.fingerprint;
      // As the listing saw the key before the event: an empty file then (refused on its size alone).
      const listed = { key: 'u.csv', userId: 'u', kind: 'csv' as const, size: 0, etag: 'listed-before', lastModifiedMs: 1 };
      const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
      const batch = { users: ['u'], changed: [listed], removed: [], refused: [], seen: [{ key: 'u.csv', fingerprint: seen }], verify: ['u.csv'] };
      await processItem(deps, { runId, no: 1, batch }, 'here:1', pLimit(2));
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'New' }]);
      expect(await recorded('u.csv')).toBe(await current('u.csv'));
      expect((await db.pool.query('SELECT status FROM source_files WHERE key = $1', ['u.csv'])).rows).toEqual([{ status: 'ok' }]);
    });

    it("a listing's removal of a key an event recorded meanwhile: the item looks it up, and keeps the file", async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Kept', 'L', 1));
      await eventBatch(['u.csv']);
      const seen = (await fingerprintsOf(db.pool, ['u.csv'])).get('u.csv')!.fingerprint;
      // As a listing that passed the key before the file was written would report it: gone.
      const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
      const batch = { users: ['u'], changed: [], removed: [{ key: 'u.csv', userId: 'u' }], refused: [], seen: [{ key: 'u.csv', fingerprint: seen }] };
      await processItem(deps, { runId, no: 1, batch }, 'here:1', pLimit(2));
      expect(await recorded('u.csv')).toBe(await current('u.csv'));
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'Kept' }]);
    });

    it('a run another instance ended meanwhile (this one lost its lock) fails, keeps that outcome, and an event batch so ended keeps its events', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Una', 'L', 1));
      const held = store.holdRead('u.csv');
      const run = fullRun();
      await held.reached;
      // What the next holder of the run lock does to a run it finds running: marks it aborted.
      await db.pool.query(`UPDATE runs SET status = 'aborted', finished_at = now() WHERE status = 'running'`);
      held.open();
      await expect(run).rejects.toThrow();
      expect((await db.pool.query('SELECT status FROM runs')).rows).toEqual([{ status: 'aborted' }]);
      expect(await stored()).toEqual([]);

      const heldEvent = store.holdRead('u.csv');
      await recordEvents(db.pool, ['u.csv']);
      const batch = runEventBatch(deps, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 });
      await heldEvent.reached;
      await db.pool.query(`UPDATE runs SET status = 'aborted', finished_at = now() WHERE status = 'running'`);
      heldEvent.open();
      await expect(batch).rejects.toThrow();
      expect((await db.pool.query('SELECT key FROM pending_events')).rows).toEqual([{ key: 'u.csv' }]);
    });

    it('an event batch that changed no user does not make events owe output.csv a lag that is a run\'s', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Una', 'L', 1));
      await eventBatch(['u.csv']);
      // A run's commits made output.csv lag; an event naming an unchanged file changes nothing.
      await db.pool.query('UPDATE pipeline_state SET output_stale = true, events_owe_export = false WHERE id = 1');
      await recordEvents(db.pool, ['u.csv']);
      // An hour between event exports: the batch writes no output.csv, which would clear the debt.
      expect(await runEventBatch(deps, { maxKeys: 100, exportIntervalMs: 3_600_000, coalesceMs: 0 })).toMatchObject({ kind: 'finished' });
      expect((await getOutputState(db.pool)).eventsOwe).toBe(false);
    });

    it('an event loop finding output.csv due while another export holds its lock backs off, and opens no event run', async () => {
      await db.pool.query(`UPDATE pipeline_state SET output_stale = true, events_owe_export = true, exported_at = now() - interval '1 hour' WHERE id = 1`);
      const other = await db.pool.connect();
      try {
        await other.query('SELECT pg_advisory_lock(7330105)');
        const out = await runEventBatch(deps, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 });
        expect(out).toMatchObject({ kind: 'idle' });
        expect((await db.pool.query('SELECT count(*)::int AS n FROM runs')).rows[0]).toEqual({ n: 0 });
      } finally {
        await other.query('SELECT pg_advisory_unlock(7330105)');
        other.release();
      }
      // Free again: the export is written.
      expect(await runEventBatch(deps, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 })).toMatchObject({ kind: 'finished', report: { output_written: true } });
    });

    it('an event batch that fails keeps its events pending, and the next batch processes them', async () => {
      await put(backend, config.srcBucket, 'u.csv', userCsv('Una', 'L', 1));
      const observed = new ObservedStore(backend.store);
      observed.failReads = new Error('the store is down');
      observed.failPing = new Error('the store is down');
      await recordEvents(db.pool, ['u.csv']);
      const failing = { ...deps, store: observed };
      await expect(runEventBatch(failing, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 })).rejects.toThrow();
      expect((await db.pool.query('SELECT key FROM pending_events')).rows).toEqual([{ key: 'u.csv' }]);
      observed.failReads = null;
      observed.failPing = null;
      expect(await runEventBatch(failing, { maxKeys: 100, exportIntervalMs: 0, coalesceMs: 0 })).toMatchObject({ kind: 'finished' });
      expect(await stored()).toEqual([{ user_id: 'u', first_name: 'Una' }]);
      expect((await db.pool.query('SELECT key FROM pending_events')).rows).toEqual([]);
    });

    it('an export runs while items commit: they do not wait for it, and output.csv is the table at one moment', async () => {
      const n = 5000;
      const row = (i: number, firstName: string) => ({
        userId: `u${String(i).padStart(5, '0')}`,
        firstName,
        lastName: 'L',
        birthts: i,
        imgPath: null,
        imgFormat: null,
        imgWidth: null,
        imgHeight: null,
        source: csvSource(`u${i}`),
      });
      await upsertUsers(db.pool, Array.from({ length: n }, (_, i) => row(i, 'Before')));
      const held = store.holdWrite('output.csv');
      // Small pages: the export reads many of them, and the gate stops it after the first.
      const exported = exportOutput(db.pool, store, config.resBucket, { neutralizeFormulas: config.csvNeutralizeFormulas, pageSize: 10 });
      await held.reached;
      // An item changes the first and the last user while output.csv is being written.
      const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
      const users = [row(0, 'After'), row(n - 1, 'After')];
      const plan = { users: users.map((r) => ({ userId: r.userId, files: [], gone: [], row: r, rejected: [], warnings: [] })), issues: [], read: 0 };
      const out = await commitItem(db.pool, { runId, no: 1, instance: 'here:1', users: users.map((u) => u.userId), seen: [], settled: [], issueLimit: 10_000 }, () => plan, silentLogger());
      expect(out).toMatchObject({ kind: 'committed', result: { updated: 2 } });
      held.open();
      const { rows, version } = await exported;
      expect(rows).toBe(n);
      const lines = (await readText(backend, config.resBucket, 'output.csv')).split('\r\n');
      // All before the commit, none after: the first user and the last agree.
      expect(lines[1]).toBe('u00000,Before,L,0,');
      expect(lines[n]).toBe(`u0${n - 1},Before,L,${n - 1},`);
      // Recorded as the locked export records it: the version its snapshot saw. The commit came
      // after the snapshot, so output.csv still lags.
      await markOutputExported(db.pool, version);
      expect((await getOutputState(db.pool)).stale).toBe(true);
    });
  });
}
