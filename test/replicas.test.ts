import type { ChildProcessByStdio } from 'node:child_process';
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, readText, userCsv, waitFor } from './support/fixtures.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const USERS = 300;

interface Instance {
  child: ChildProcessByStdio<null, null, Readable>;
  url: string;
  /** As run_items names it: host name and process id. */
  pid: number;
  logs: () => string;
}

/** `npm start`'s entry point as a real process, sharing the database and the store with the others. */
async function startInstance(env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_OPTIONS: '--openssl-legacy-provider', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await waitFor(
    'the instance to listen',
    () => {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${stderr}`);
      return /"url":"(http:\/\/[^"]+)","schedule"/.exec(stderr)?.[1];
    },
    60_000,
  ).catch((err: unknown) => {
    // Never left running past a failed start.
    child.kill('SIGKILL');
    throw err;
  });
  return { child, url, pid: child.pid!, logs: () => stderr };
}

interface Run {
  id: number;
  status: string;
  error: string | null;
  counts: { read: number; new: number; updated: number; unchanged: number };
  workers: Array<{ instance: string; items: number }>;
}

describe.each(backends)('three replicas share the work of a run (%s)', (_name, startBackend) => {
  let backend: Backend;
  let db: TestDatabase;
  const instances: Instance[] = [];

  beforeAll(async () => {
    backend = await startBackend();
    db = await createTestDatabase();
    const png = await makeImage('png', 64, 64);
    await backend.store.ensureBucket('src');
    for (let i = 0; i < USERS; i++) {
      await put(backend, 'src', `${5000 + i}.csv`, userCsv(`F${i}`, `L${i}`, i * 1000));
      await put(backend, 'src', `${5000 + i}.png`, png);
    }
    const env = {
      ...backend.env,
      DATABASE_URL: db.url,
      HOST: '127.0.0.1',
      PORT: '0',
      SCHEDULE: 'off',
      WATCH: 'false',
      WORK_QUEUE: 'pgboss',
      // Small items, so a run has many; a short lease, so a killed replica's item comes back soon.
      BATCH_SIZE: '10',
      ITEM_LEASE_SECONDS: '2',
    };
    // Each kept as it starts, so afterAll stops those that did if another one fails.
    await Promise.all([0, 1, 2].map(async () => instances.push(await startInstance(env))));
  }, 120_000);

  afterAll(async () => {
    for (const i of instances) {
      if (i.child.exitCode === null && i.child.signalCode === null) {
        const exited = new Promise((r) => i.child.once('exit', r));
        i.child.kill('SIGTERM');
        await exited;
      }
    }
    await db?.drop();
    await backend?.stop();
  }, 60_000);

  const getRun = async (inst: Instance, id: number) => (await (await fetch(`${inst.url}/runs/${id}?issues=0`)).json()) as Run;
  const instanceOf = (inst: Instance) => (w: { instance: string }) => w.instance.endsWith(`:${inst.pid}`);

  it("processes a run's items on all three, with the same results as one process", async () => {
    const [a] = instances;
    const run = (await (await fetch(`${a!.url}/data?wait=true`, { method: 'POST' })).json()) as Run;
    expect(run.status, JSON.stringify(run)).toBe('succeeded');
    expect(run.counts).toMatchObject({ read: 2 * USERS, new: USERS, updated: 0 });
    const { workers } = await getRun(a!, run.id);
    expect(workers.reduce((n, w) => n + w.items, 0)).toBe(USERS / 10);
    for (const inst of instances) expect(workers.some(instanceOf(inst)), `instance ${inst.pid} took part: ${JSON.stringify(workers)}`).toBe(true);
    expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE img_path IS NOT NULL')).rows[0]!.n).toBe(USERS);
    expect((await readText(backend, 'res', 'output.csv')).trim().split('\r\n')).toHaveLength(USERS + 1);
  }, 120_000);

  it('finishes the run exactly when a replica is killed with SIGKILL in the middle of it', async () => {
    const [a, b, c] = instances;
    // Reprocess everything: every item again, rows unchanged.
    const started = (await (await fetch(`${a!.url}/data?full=true`, { method: 'POST' })).json()) as Run;
    await waitFor('the third replica to commit an item', async () => (await getRun(a!, started.id)).workers.some(instanceOf(c!)), 60_000);
    c!.child.kill('SIGKILL');
    // Killed mid-run: items of the run were still to do, some perhaps in C's hands.
    expect((await getRun(a!, started.id)).status).toBe('running');
    // Events keep arriving meanwhile: new users, and users the run is reprocessing changed.
    const keys: string[] = [];
    for (let i = 0; i < 5; i++) {
      await put(backend, 'src', `${9000 + i}.csv`, userCsv(`New${i}`, 'L', i));
      await put(backend, 'src', `${5000 + i * 50}.csv`, userCsv(`Changed${i}`, 'L', i));
      keys.push(`${9000 + i}.csv`, `${5000 + i * 50}.csv`);
    }
    const records = keys.map((key) => ({ eventName: 's3:ObjectCreated:Put', s3: { bucket: { name: 'src' }, object: { key: encodeURIComponent(key) } } }));
    const posted = await fetch(`${b!.url}/events/s3`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Records: records }) });
    expect(posted.status).toBe(202);
    const run = await waitFor(
      'the run to end',
      async () => {
        const r = await getRun(a!, started.id);
        return r.status === 'running' ? undefined : r;
      },
      90_000,
    );
    expect(run.status, run.error ?? '').toBe('succeeded');
    expect(run.workers.reduce((n, w) => n + w.items, 0)).toBe(USERS / 10);
    // The end state is the store's, whichever of the run and the event batches read a file first.
    const expected = new Map<string, string>();
    for (let i = 0; i < USERS; i++) expected.set(String(5000 + i), i % 50 === 0 && i / 50 < 5 ? `Changed${i / 50}` : `F${i}`);
    for (let i = 0; i < 5; i++) expected.set(String(9000 + i), `New${i}`);
    await waitFor('the events to be processed', async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pending_events')).rows[0]!.n === 0, 60_000);
    const rows = (await db.pool.query<{ user_id: string; first_name: string }>('SELECT user_id, first_name FROM users ORDER BY user_id')).rows;
    expect(new Map(rows.map((r) => [r.user_id, r.first_name]))).toEqual(expected);
    expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM source_files')).rows[0]!.n).toBe(2 * USERS + 5);
    // Whether the killed replica had an item in hand at that instant is up to the scheduler;
    // test/workQueue.test.ts shows such an item going to another worker once its lease runs out.
  }, 180_000);
});
