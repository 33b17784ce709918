import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, readText, userCsv, waitFor } from './support/fixtures.js';
import { isLockHeld } from '../src/db/locks.js';
import { runToCompletion, testConfig } from './support/harness.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend, startS3Backend } from './support/stores.js';

describe('faults on real servers', () => {
  let backend: Backend;
  let db: TestDatabase;

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db.drop();
    await backend.stop();
  });

  it('S3 server down: health names the store, the run fails with the reason, the next run succeeds', async () => {
    backend = await startS3Backend();
    const svc: TestService = await startTestService(backend, db);
    try {
      await put(backend, svc.srcBucket, '1.csv', userCsv('A', 'B', 1));
      await backend.outage!.down();

      const health = await svc.get('/health');
      expect(health.status).toBe(503);
      expect(await health.json()).toEqual({ status: 'unavailable', checks: { database: 'ok', store: 'unavailable' } });
      const failed = (await (await svc.post('/data?wait=true')).json()) as { id: number; status: string; error: string };
      expect(failed.status).toBe('failed');
      // Short and stable: the store's host and port stay in the log.
      expect(failed.error).toBe('the object store failed while listing the source bucket');
      expect((await svc.get('/runs')).status).toBe(200);

      await backend.outage!.up();
      const ok = (await (await svc.post('/data?wait=true')).json()) as { status: string; counts: { new: number } };
      expect(ok).toMatchObject({ status: 'succeeded', counts: { new: 1 } });
      expect((await svc.get('/health')).status).toBe(200);
    } finally {
      await svc.stop(0);
    }
  });

  it('start-up waits for an S3 server that comes up late, then creates the buckets', async () => {
    backend = await startS3Backend();
    await backend.outage!.down();
    let found!: (wait: { what: string; error: string }) => void;
    const waiting = new Promise<{ what: string; error: string }>((resolve) => (found = resolve));
    const starting = startTestService(backend, db, {}, { waitMs: 30_000, onWait: (w) => found(w) });
    // Up only once the service has found it down and waits; a start that fails instead ends the wait.
    const wait = await Promise.race([waiting, starting.then(() => Promise.reject(new Error('the start did not wait for the store')))]);
    expect(wait.what).toMatch(/^object store /);
    await backend.outage!.up();
    const svc = await starting;
    try {
      expect((await svc.get('/health')).status).toBe(200);
      expect(await backend.store.stat(svc.srcBucket, 'none')).toBeNull(); // the bucket exists: no NoSuchBucket error
      expect((await (await svc.post('/data?wait=true')).json()) as { status: string }).toMatchObject({ status: 'succeeded' });
    } finally {
      await svc.stop(0);
    }
  });

  it('a process killed mid-run: the next run finishes the work, with correct results and no duplicates', async () => {
    backend = await startFolderBackend();
    const config = testConfig(backend, db, { BATCH_SIZE: '5', READ_CONCURRENCY: '1' });
    const srcDir = path.join((backend.config as { dir: string }).dir, config.srcBucket);
    await fs.mkdir(srcDir, { recursive: true });
    const USERS = 3000;
    await Promise.all(
      Array.from({ length: USERS }, (_, i) => fs.writeFile(path.join(srcDir, `${String(i).padStart(5, '0')}.csv`), userCsv(`F${i}`, `L${i}`, i))),
    );

    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/processMain.ts'], {
      cwd: path.resolve(import.meta.dirname, '..'),
      env: {
        PATH: process.env.PATH ?? '',
        ...backend.env,
        DATABASE_URL: db.url,
        SRC_BUCKET: config.srcBucket,
        RES_BUCKET: config.resBucket,
        BATCH_SIZE: '5',
        READ_CONCURRENCY: '1',
      },
      stdio: 'ignore',
    });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Kill it hard once a few batches are committed, well before the end.
    await waitFor('20 users committed by the child', async () => {
      const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
      return rows[0]!.n >= 20;
    });
    child.kill('SIGKILL');
    await exited;
    // The server frees the dead process's run lock only once its backend sees the socket close.
    await waitFor('the killed run lock freed', async () => !(await isLockHeld(db.pool, 'run')));
    const before = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n;
    expect(before).toBeGreaterThanOrEqual(20);
    expect(before).toBeLessThan(USERS);
    expect((await db.pool.query('SELECT status FROM runs')).rows).toEqual([{ status: 'running' }]);

    const report = await runToCompletion(backend.store, db, config);
    expect(report.status).toBe('succeeded');
    expect(report.counts.new).toBe(USERS - before);
    expect(report.counts.updated).toBe(0);
    const { rows } = await db.pool.query<{ n: number; distinct: number }>('SELECT count(*)::int AS n, count(DISTINCT user_id)::int AS distinct FROM users');
    expect(rows[0]).toEqual({ n: USERS, distinct: USERS });
    const runs = await db.pool.query('SELECT status, error FROM runs ORDER BY id');
    expect(runs.rows).toEqual([
      { status: 'aborted', error: 'the process running it stopped before it finished' },
      { status: 'succeeded', error: null },
    ]);
    const lines = (await readText(backend, config.resBucket, 'output.csv')).trimEnd().split('\r\n');
    expect(lines).toHaveLength(USERS + 1);
    expect(lines[1]).toBe('00000,F0,L0,0,');
    expect(lines[USERS]).toBe(`0${USERS - 1},F${USERS - 1},L${USERS - 1},${USERS - 1},`);
  });
});
