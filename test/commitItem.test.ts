import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { withTransaction } from '../src/db/index.js';
import { createRun, getRun, recordRunIssues } from '../src/db/runs.js';
import { lockUsers } from '../src/db/users.js';
import { silentLogger } from '../src/log.js';
import type { CommitResult } from '../src/db/commitItem.js';
import { commitItem } from '../src/db/commitItem.js';
import type { BatchPlan, UserChange } from '../src/core/model.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, userCsv } from './support/fixtures.js';
import { ObservedStore, runToCompletion, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';
import { csvSource } from './support/rows.js';

/**
 * The last line of defence: values the edge checks let through but PostgreSQL refuses. The
 * edge checks stop every case we know of, so these tests get past them on purpose.
 */
/** Commits a plan as item `no` of the run, and expects it committed. */
async function commitPlan(db: TestDatabase, runId: number, no: number, plan: BatchPlan): Promise<CommitResult> {
  const users = plan.users.map((u) => u.userId);
  const out = await commitItem(db.pool, { runId, no, instance: 'here:1', users, seen: [], settled: [], issueLimit: 10_000 }, () => plan, silentLogger());
  if (out.kind !== 'committed') throw new Error(`item ${no} not committed: ${out.kind}`);
  return out.result;
}

describe('commitItem: an item the database refuses for its data', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(() => db.drop());

  const change = (userId: string, firstName: string): UserChange => ({
    userId,
    files: [
      { key: `${userId}.csv`, userId, kind: 'csv', size: 1, etag: 'e', lastModifiedMs: 0, status: 'ok', reason: null, image: null, csv: { firstName, lastName: 'L', birthts: 1 } },
    ],
    gone: [],
    row: { userId, firstName, lastName: 'L', birthts: 1, imgPath: null, imgFormat: null, imgWidth: null, imgHeight: null, source: csvSource(userId) },
    rejected: [],
    warnings: [],
  });

  it('commits the others and rejects the user it refuses, with a reason that names no SQL object', async () => {
    const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
    const plan: BatchPlan = { users: [change('1', 'Ann'), change('2', 'Mal\u0000lory'), change('3', 'Cy')], issues: [], read: 3 };
    const r = await commitPlan(db, runId, 1, plan);
    expect(r).toMatchObject({ inserted: 2, updated: 0 });
    expect(r.rejected).toEqual([
      { key: '2.csv', reason: 'user_id "2" could not be stored: a value holds a byte sequence the database cannot store (SQLSTATE 22021)' },
    ]);
    const { rows } = await db.pool.query('SELECT user_id FROM users ORDER BY user_id');
    expect(rows).toEqual([{ user_id: '1' }, { user_id: '3' }]);
    // The refused file is recorded as rejected (its NUL-bearing values are not), so it is not read again until it changes.
    const files = await db.pool.query('SELECT key, status FROM source_files ORDER BY key');
    expect(files.rows).toEqual([
      { key: '1.csv', status: 'ok' },
      { key: '2.csv', status: 'rejected' },
      { key: '3.csv', status: 'ok' },
    ]);
    const issues = await db.pool.query('SELECT key, severity FROM run_issues WHERE run_id = $1', [runId]);
    expect(issues.rows).toEqual([{ key: '2.csv', severity: 'rejected' }]);
  });

  it('counts a user once when its second batch of the run is committed user by user', async () => {
    const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
    const first = await commitPlan(db, runId, 1, { users: [change('5', 'Five')], issues: [], read: 1 });
    expect(first).toMatchObject({ inserted: 1, updated: 0 });
    await db.pool.query('UPDATE pipeline_state SET output_stale = false WHERE id = 1');
    // The same user again (its files far apart in key order), in a batch the database refuses for another user.
    const plan: BatchPlan = { users: [change('5', 'Fifth'), change('2', 'Mal\u0000lory')], issues: [], read: 2 };
    const second = await commitPlan(db, runId, 2, plan);
    // Already counted as new by the first batch: neither new nor updated again.
    expect(second).toMatchObject({ inserted: 0, updated: 0 });
    expect(second.rejected.map((i) => i.key)).toEqual(['2.csv']);
    expect((await db.pool.query('SELECT user_id, first_name FROM users')).rows).toEqual([{ user_id: '5', first_name: 'Fifth' }]);
    // It did change, so output.csv must be written again.
    expect((await db.pool.query('SELECT output_stale FROM pipeline_state WHERE id = 1')).rows).toEqual([{ output_stale: true }]);
  });
});

describe('a run where the database refuses one user', () => {
  let backend: Backend;
  let db: TestDatabase;
  let config: Config;
  let store: ObservedStore;
  beforeAll(async () => {
    backend = await startFolderBackend();
  });
  afterAll(() => backend.stop());
  beforeEach(async () => {
    db = await createTestDatabase();
    config = testConfig(backend, db, { BATCH_SIZE: '50' });
    store = new ObservedStore(backend.store);
    await store.ensureBucket(config.srcBucket);
    await store.ensureBucket(config.resBucket);
  });
  afterEach(() => db.drop());

  it('succeeds, stores everyone else in that batch and after it, and does not read the refused file again', async () => {
    // A rule the edge checks know nothing about, standing in for any value PostgreSQL refuses.
    await db.pool.query(`ALTER TABLE users ADD CONSTRAINT users_no_mallory_check CHECK (first_name <> 'Mallory')`);
    for (let i = 0; i < 120; i++) await put(backend, config.srcBucket, `${1000 + i}.csv`, userCsv(i === 60 ? 'Mallory' : `U${i}`, 'L', i));
    const r = await runToCompletion(store, db, config);
    expect(r.status).toBe('succeeded');
    expect(r.counts).toMatchObject({ new: 119, rejected: 1 });
    expect(r.rejected).toEqual([
      { key: '1060.csv', reason: 'user_id "1060" could not be stored: a value breaks a rule of the database (SQLSTATE 23514)' },
    ]);
    expect(JSON.stringify(r)).not.toContain('users_no_mallory_check');
    expect((await db.pool.query('SELECT count(*)::int AS n FROM users')).rows[0]).toEqual({ n: 119 });

    store.reset();
    const again = await runToCompletion(store, db, config);
    expect(again).toMatchObject({ status: 'succeeded', counts: { read: 0, new: 0, rejected: 0 } });
  });
});

describe('commitItem: a work item of a run', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(() => db.drop());

  const plan = (userId: string): BatchPlan => ({
    users: [
      {
        userId,
        files: [],
        gone: [],
        row: { userId, firstName: 'F', lastName: 'L', birthts: 1, imgPath: null, imgFormat: null, imgWidth: null, imgHeight: null, source: csvSource(userId) },
        rejected: [],
        warnings: [],
      },
    ],
    issues: [],
    read: 1,
  });
  const commit = async (runId: number, no: number, userId: string) => {
    const out = await commitItem(db.pool, { runId, no, instance: 'here:1', users: [userId], seen: [], settled: [], issueLimit: 10_000 }, () => plan(userId), silentLogger());
    return out.kind === 'committed' ? out.result : out.kind;
  };

  it('commits once however often it is tried, and records its counts and who committed it', async () => {
    const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
    expect(await commit(runId, 1, 'u1')).toMatchObject({ inserted: 1, read: 1 });
    // A retry after the lease ran out on a worker that had committed.
    expect(await commit(runId, 1, 'u1')).toBe('committed-before');
    expect((await db.pool.query('SELECT item_no, instance, users, read, new FROM run_items')).rows).toEqual([{ item_no: 1, instance: 'here:1', users: 1, read: 1, new: 1 }]);
  });

  it('commits nothing for a run that has ended (an item still in hand when its run was aborted)', async () => {
    const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
    await db.pool.query(`UPDATE runs SET status = 'aborted' WHERE id = $1`, [runId]);
    expect(await commit(runId, 1, 'late')).toBe('run-ended');
    expect((await db.pool.query('SELECT count(*)::int AS n FROM users')).rows[0]).toEqual({ n: 0 });
    expect((await db.pool.query('SELECT count(*)::int AS n FROM run_items')).rows[0]).toEqual({ n: 0 });
  });
});

describe('lockUsers', () => {
  it('locks a batch of 50,000 users (the largest BATCH_SIZE) in one transaction without filling the lock table', async () => {
    const db = await createTestDatabase();
    try {
      const ids = Array.from({ length: 50_000 }, (_, i) => `user-${i}`);
      const held = await withTransaction(db.pool, async (tx) => {
        await lockUsers(tx, ids);
        const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
        return rows[0]!.n;
      });
      expect(held).toBeLessThanOrEqual(256);
    } finally {
      await db.drop();
    }
  });
});

describe('recordRunIssues: the cap on run_issues', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(() => db.drop());

  // A reviewer found 3 items each carrying user u's warning, with the cap full, counted 3 left
  // out: each found no recorded row to replace. One warning per user per run is one left out.
  it('counts a per-user warning left out once per run, however many items carry it', async () => {
    const runId = await createRun(db.pool, { trigger: 'cli', full: false, host: 'h' });
    const record = (issues: { rejected: { key: string; reason: string }[]; warnings: { key: string; reason: string; userId?: string }[] }) =>
      withTransaction(db.pool, (tx) => recordRunIssues(tx, runId, 2, issues));
    expect(await record({ rejected: [{ key: 'a', reason: 'r' }, { key: 'b', reason: 'r' }], warnings: [] })).toBe(0);
    const warning = (n: number) => ({ key: `f${n}/u.csv`, reason: `user u is in ${n} folders`, userId: 'u' });
    expect(await record({ rejected: [], warnings: [warning(2)] })).toBe(1);
    expect(await record({ rejected: [], warnings: [warning(3)] })).toBe(0);
    expect(await record({ rejected: [{ key: 'c', reason: 'r' }], warnings: [warning(4), { key: 'x', reason: 'w', userId: 'v' }] })).toBe(2);
    const run = await getRun(db.pool, runId);
    // a and b recorded; u's warning, v's warning and c left out, each once.
    expect(run!.issues_left_out).toBe(3);
    expect(run!.rejected.map((i) => i.key)).toEqual(['a', 'b']);
  });
});
