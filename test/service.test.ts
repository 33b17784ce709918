import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../src/storage/index.js';
import type { Triggered } from '../src/runs/coordinator.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { nextEvent, put, readText, recordEvents, userCsv, waitFor } from './support/fixtures.js';
import { GateStore } from './support/gateStore.js';
import { ObservedStore } from './support/harness.js';
import type { TestService } from './support/service.js';
import { sameBuckets, startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

interface Run {
  id: number;
  status: string;
  trigger: string;
  error: string | null;
  started_at: string;
  finished_at: string | null;
  joined_existing_run?: boolean;
}

async function seed(backend: Backend, bucket: string, n: number) {
  for (let i = 0; i < n; i++) await put(backend, bucket, `${1000 + i}.csv`, userCsv(`F${i}`, `L${i}`, 1000 * i));
}

async function runRows(db: TestDatabase) {
  return (await db.pool.query<{ id: number; status: string; trigger: string; started_at: Date; finished_at: Date | null; error: string | null }>('SELECT id, status, trigger, started_at, finished_at, error FROM runs ORDER BY id')).rows;
}

describe('service: one run at a time, scheduler, shutdown', () => {
  let backend: Backend;
  let db: TestDatabase;
  const services: TestService[] = [];
  /** The gated store of each service started, in order: runs go on until the test opens a gate. */
  let stores: GateStore[] = [];
  const gated = (store: ObjectStore) => {
    const g = new GateStore(store);
    stores.push(g);
    return g;
  };

  beforeEach(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    stores = [];
  });
  afterEach(async () => {
    // A test that failed midway may have left a run waiting at a gate.
    for (const s of stores) s.openAll();
    for (const s of services.splice(0)) await s.stop(0);
    await db.drop();
    await backend.stop();
  });

  it('many parallel POST /data calls produce one run', async () => {
    const svc = await startTestService(backend, db, {}, { wrapStore: gated });
    services.push(svc);
    await seed(backend, svc.srcBucket, 4);
    // The run waits at its read of 1000.csv until every call is in.
    const held = stores[0]!.holdRead('1000.csv');
    const responses = await Promise.all(Array.from({ length: 25 }, () => svc.post('/data')));
    expect(responses.map((r) => r.status)).toEqual(Array(25).fill(202));
    const runs = (await Promise.all(responses.map((r) => r.json()))) as Run[];
    expect(new Set(runs.map((r) => r.id)).size).toBe(1);
    expect(runs.filter((r) => r.joined_existing_run === false)).toHaveLength(1);
    // A waiting caller during the run gets the same run's final report.
    const joined = nextEvent(svc.runner.events, 'runJoined');
    const waiting = svc.post('/data?wait=true');
    expect(await joined).toMatchObject({ runId: runs[0]!.id, trigger: 'http', remote: false });
    held.open();
    expect((await (await waiting).json()) as Run).toMatchObject({ id: runs[0]!.id, status: 'succeeded' });
    expect(await runRows(db)).toHaveLength(1);
  });

  it('a run asked for while the last one records its outcome starts anew, instead of joining a run already over', async () => {
    const svc = await startTestService(backend, db);
    services.push(svc);
    await seed(backend, svc.srcBucket, 2);
    // Asked for at the moment the first run ends: its status may already read succeeded.
    const second = new Promise<Triggered>((resolve) => svc.runner.events.once('runEnding', () => resolve(svc.runner.trigger({ trigger: 'http', full: true }))));
    const first = await svc.runner.trigger({ trigger: 'http' });
    await first.done;
    const again = await second;
    expect(again.runId).not.toBe(first.runId);
    expect(again.started).toBe(true);
    expect(await again.done).toMatchObject({ full: true, status: 'succeeded' });
  });

  it('GET /runs/:id shows progress while a run is in progress', async () => {
    const svc = await startTestService(backend, db, { BATCH_SIZE: '2', READ_CONCURRENCY: '1' }, { wrapStore: gated });
    services.push(svc);
    await seed(backend, svc.srcBucket, 10);
    // The third item waits at its first read: the first two commit, the run cannot finish.
    const held = stores[0]!.holdRead('1004.csv');
    const run = (await (await svc.post('/data')).json()) as Run;
    const seen = await waitFor('the run to report processed users', async () => {
      const r = (await (await svc.get(`/runs/${run.id}`)).json()) as Run & { progress: { phase: string; done: number; total: number | null } };
      return r.progress.phase === 'processing' && r.progress.done > 0 && r;
    });
    // The listing streams alongside processing, so the total is known only at the end.
    expect(seen).toMatchObject({ status: 'running', progress: { phase: 'processing', total: null } });
    expect(seen.progress.done).toBeLessThan(10);
    const joined = nextEvent(svc.runner.events, 'runJoined');
    const waiting = svc.post('/data?wait=true');
    await joined;
    held.open();
    const done = (await (await waiting).json()) as Run & { progress: unknown };
    expect(done).toMatchObject({ id: run.id, status: 'succeeded', progress: { phase: 'done', done: 10, total: 10 } });
  });

  it('two instances on one database never process at once', async () => {
    const a = await startTestService(backend, db, {}, { wrapStore: gated });
    services.push(a);
    const b = await startTestService(backend, db, sameBuckets(a), { wrapStore: gated });
    services.push(b);
    await seed(backend, a.srcBucket, 4);
    const events = [a, b].map((s) => ({ started: recordEvents(s.runner.events, 'runStarted'), joined: recordEvents(s.runner.events, 'runJoined') }));
    const started = () => events.flatMap((e) => e.started);
    const joined = () => events.flatMap((e) => e.joined);
    const triggers = () => started().length + joined().length;
    // Whichever instance runs waits at its read of 1000.csv (every run here reads it), so the
    // other calls come while its run is in progress.
    const holdRuns = () => stores.map((s) => s.holdRead('1000.csv'));
    const json = async (r: Promise<Response>) => (await (await r).json()) as Run;

    // Simultaneous triggers on both replicas: one run, and both answer with it.
    let gates = holdRuns();
    const both = [a.post('/data?wait=true'), b.post('/data?wait=true')];
    await waitFor('both calls to start or join a run', () => triggers() === 2);
    for (const g of gates) g.open();
    const [ra, rb] = await Promise.all(both.map(json));
    expect(ra!.id).toBe(rb!.id);
    expect(ra!.status).toBe('succeeded');
    expect(rb!.status).toBe('succeeded');
    // One instance ran it; the other joined it through the database.
    expect(started()).toHaveLength(1);
    expect(joined()).toEqual([{ runId: ra!.id, trigger: 'http', remote: true }]);

    // Rounds of racing full runs: one run a round, and the recorded runs never overlap in time.
    for (let round = 0; round < 3; round++) {
      gates = holdRuns();
      const before = triggers();
      const posted = await Promise.all([a.post('/data?full=true'), b.post('/data?full=true'), a.post('/data?full=true')]);
      // After the full calls (first, one would start a run that reads nothing, and not wait),
      // and on both instances: each is done with the run when its call answers.
      const waiting = [a.post('/data?wait=true'), b.post('/data?wait=true')];
      await waitFor('the waiting calls to join the run', () => triggers() - before === 5);
      for (const g of gates) g.open();
      const runs = await Promise.all([...posted.map((r) => json(Promise.resolve(r))), ...waiting.map(json)]);
      expect(new Set(runs.map((r) => r.id)).size).toBe(1);
    }
    const rows = await runRows(db);
    expect(rows).toHaveLength(4);
    expect(started()).toHaveLength(4);
    expect(rows.every((r) => r.status === 'succeeded')).toBe(true);
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i]!.started_at.getTime()).toBeGreaterThanOrEqual(rows[i - 1]!.finished_at!.getTime());
    }
    expect((await db.pool.query('SELECT count(*)::int AS n FROM users')).rows[0]).toEqual({ n: 4 });
  });

  it('the scheduler fires runs on its cron schedule', async () => {
    // Six fields: every second.
    const svc = await startTestService(backend, db, { SCHEDULE: '* * * * * *' });
    services.push(svc);
    await seed(backend, svc.srcBucket, 2);
    const rows = await waitFor('two scheduled runs to succeed', async () => {
      const r = await runRows(db);
      return r.filter((row) => row.trigger === 'schedule' && row.status === 'succeeded').length >= 2 && r;
    });
    expect(rows.filter((r) => r.trigger === 'schedule' && r.status === 'succeeded').length).toBeGreaterThanOrEqual(2);
    expect(await readText(backend, svc.resBucket, 'output.csv')).toContain('1001,F1,L1,1000,');
  });

  it('shutdown lets a run in progress finish, then stops', async () => {
    const svc = await startTestService(backend, db, {}, { wrapStore: gated });
    // Stopped here; afterEach only if the test fails first (stop() is once).
    services.push(svc);
    await seed(backend, svc.srcBucket, 6);
    const held = stores[0]!.holdRead('1003.csv');
    const run = (await (await svc.post('/data')).json()) as Run;
    await held.reached;
    // The run goes on only once shutdown has begun, and must then be let finish.
    const shuttingDown = nextEvent(svc.runner.events, 'shuttingDown');
    const stopped = svc.stop(30_000);
    expect(await shuttingDown).toMatchObject({ run: true });
    held.open();
    await stopped;
    const [row] = await runRows(db);
    expect(row).toMatchObject({ id: run.id, status: 'succeeded' });
    await expect(fetch(`${svc.url}/health`)).rejects.toThrow();
  });

  it('shutdown aborts a run that outlasts the grace period, keeping committed batches', async () => {
    const svc = await startTestService(backend, db, { BATCH_SIZE: '2', READ_CONCURRENCY: '1' }, { wrapStore: gated });
    services.push(svc);
    await seed(backend, svc.srcBucket, 20);
    // The sixth item waits at its first read: the run outlasts any grace period.
    const held = stores[0]!.holdRead('1010.csv');
    await svc.post('/data');
    await held.reached;
    const committed = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n;
    await waitFor('a batch to be committed', async () => (await committed()) > 0);
    const aborting = nextEvent(svc.runner.events, 'aborting');
    const stopped = svc.stop(100);
    expect(await aborting).toMatchObject({ run: true });
    // Aborted: the item's remaining read is not made, and what is committed stays.
    held.open();
    await stopped;
    const [row] = await runRows(db);
    expect(row).toMatchObject({ status: 'aborted', error: 'aborted: the service is shutting down' });
    const n = await committed();
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(20);
  });
});

describe('service: faults', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let store: ObservedStore;

  beforeEach(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, {}, { wrapStore: (s) => (store = new ObservedStore(s)) });
    await seed(backend, svc.srcBucket, 3);
  });
  afterEach(async () => {
    await svc.stop(0);
    await db.drop();
    await backend.stop();
  });

  /** Takes this test's database away from every client, as a crashed or restarting server would. */
  async function setDatabaseDown(down: boolean) {
    const name = new URL(db.url).pathname.slice(1);
    const admin = new pg.Client(db.url.replace(`/${name}`, '/postgres'));
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS ${down ? 'false' : 'true'}`);
      if (down) await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
    } finally {
      await admin.end();
    }
  }

  it('PostgreSQL going down mid-run: the run is marked failed, the service keeps serving, the next run succeeds', async () => {
    let broken = false;
    store.beforeRead = async () => {
      if (broken) return;
      broken = true;
      await setDatabaseDown(true);
    };
    const failed = (await (await svc.post('/data?wait=true')).json()) as Run;
    expect(failed.status).toBe('failed');
    expect(failed.error).toBe('the database became unavailable');

    // While it is down, the service answers, and says what is wrong.
    const health = await svc.get('/health');
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: 'unavailable', checks: { database: 'unavailable', store: 'ok' } });
    const data = await svc.get('/data');
    expect(data.status).toBe(503);
    expect(((await data.json()) as { error: { code: string } }).error.code).toBe('database_unavailable');

    await setDatabaseDown(false);
    store.beforeRead = null;
    const ok = (await (await svc.post('/data?wait=true')).json()) as Run;
    expect(ok.status).toBe('succeeded');
    expect((await svc.get('/health')).status).toBe(200);
    const first = (await (await svc.get(`/runs/${failed.id}`)).json()) as Run;
    expect(first).toMatchObject({ status: 'failed', error: failed.error });
    expect((await db.pool.query('SELECT count(*)::int AS n FROM users')).rows[0]).toEqual({ n: 3 });
  });

  it('the object store failing mid-run: the run is marked failed with the reason, the next run succeeds', async () => {
    store.failReads = new Error('connect ECONNREFUSED 127.0.0.1:9000');
    store.failPing = new Error('connect ECONNREFUSED 127.0.0.1:9000');
    const failed = (await (await svc.post('/data?wait=true')).json()) as Run;
    expect(failed).toMatchObject({ status: 'failed', error: 'the object store failed while reading objects' });
    expect(JSON.stringify(failed)).not.toContain('9000');
    expect((await svc.get('/data')).status).toBe(200);

    store.failReads = null;
    store.failPing = null;
    expect(((await (await svc.post('/data?wait=true')).json()) as Run).status).toBe('succeeded');
    expect((await (await svc.get(`/runs/${failed.id}`)).json()) as Run).toMatchObject({ status: 'failed' });
    expect(await readText(backend, svc.resBucket, 'output.csv')).toContain('1002,F2,L2,2000,');
  });
});
