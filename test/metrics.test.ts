import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Database } from '../src/db/index.js';
import { createPool } from '../src/db/index.js';
import { readClusterStats } from '../src/db/stats.js';
import { checkDependencies } from '../src/http/routes/health.js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, userCsv } from './support/fixtures.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

const TOKEN = 'metrics-test-token-0123';

/** Samples of the Prometheus text format: `name{labels} value`, comments skipped. */
function samples(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample: ${line}`);
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
      return { name: m[1]!, labels, value: Number(m[3]) };
    });
}

describe.each(backends)('GET /metrics on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
  const scrape = async () => {
    const res = await svc.get('/metrics', auth);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return samples(await res.text());
  };
  const value = (all: ReturnType<typeof samples>, name: string, labels: Record<string, string> = {}) =>
    all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, { API_TOKEN: TOKEN });
    await put(backend, svc.srcBucket, 'a.csv', userCsv('Ann', 'A', 0));
    await put(backend, svc.srcBucket, 'a.png', await makeImage('png'));
    await put(backend, svc.srcBucket, 'b.csv', userCsv('Bob', 'B', 0));
    await put(backend, svc.srcBucket, 'c.csv', userCsv('Cy', 'C', 0));
    await put(backend, svc.srcBucket, 'bad.csv', 'not,a,user\n');
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  it('needs the token, like every route that is not public', async () => {
    const res = await svc.get('/metrics');
    expect(res.status).toBe(401);
  });

  it('counts runs, their objects and duration, and reports users and the last success from the database', async () => {
    const before = await scrape();
    expect(value(before, 'userjoin_runs_total')).toBe(0);
    // No successful run yet: 0, so an alert on its age fires.
    expect(value(before, 'userjoin_last_successful_run_timestamp_seconds')).toBe(0);
    expect(value(before, 'userjoin_users')).toBe(0);

    const run = (await (await svc.post('/data?wait=true', auth)).json()) as { status: string; finished_at: string; counts: { read: number; rejected: number } };
    expect(run).toMatchObject({ status: 'succeeded', counts: { read: 5, rejected: 1 } });
    // The users' figures are read at most every 10 s; a new service reads them at once.
    const other = await startTestService(backend, db, { API_TOKEN: TOKEN, SRC_BUCKET: svc.srcBucket, RES_BUCKET: svc.resBucket });
    try {
      const after = await scrape();
      expect(value(after, 'userjoin_runs_total', { status: 'succeeded', trigger: 'http' })).toBe(1);
      expect(value(after, 'userjoin_run_duration_seconds_count', { status: 'succeeded' })).toBe(1);
      expect(value(after, 'userjoin_objects_read_total')).toBe(5);
      expect(value(after, 'userjoin_objects_rejected_total')).toBe(1);
      // The S3 store counts its requests: the five reads, and the buckets checked at start and
      // by the first scrape's health probe (userjoin_dependency_up). A folder has none.
      const s3 = backend.config.kind === 's3';
      expect(value(after, 'userjoin_store_requests_total', { op: 'read', outcome: 'ok' })).toBe(s3 ? 5 : 0);
      expect(value(after, 'userjoin_store_requests_total', { op: 'bucket', outcome: 'ok' })).toBe(s3 ? 3 : 0);
      expect(value(after, 'userjoin_dependency_up', { dependency: 'database' })).toBe(1);
      expect(value(after, 'userjoin_dependency_up', { dependency: 'store' })).toBe(1);
      expect(value(after, 'userjoin_store_retries_total')).toBe(0);

      // Another instance ran nothing, yet sees the same database figures.
      const res = await other.get('/metrics', auth);
      const theirs = samples(await res.text());
      expect(value(theirs, 'userjoin_runs_total')).toBe(0);
      expect(value(theirs, 'userjoin_users')).toBe(3);
      expect(value(theirs, 'userjoin_users_with_photo')).toBe(1);
      expect(value(theirs, 'userjoin_last_successful_run_timestamp_seconds')).toBe(Date.parse(run.finished_at) / 1000);
    } finally {
      await other.stop();
    }
  });

  it('times HTTP requests by route template and status, and exports the process metrics', async () => {
    await svc.get('/data/a', auth);
    await svc.get('/data/nobody', auth);
    await svc.get('/no/such/route', auth);
    const all = await scrape();
    const count = (route: string, status: string) => value(all, 'userjoin_http_request_duration_seconds_count', { method: 'GET', route, status });
    expect(count('/data/:user_id', '200')).toBe(1);
    expect(count('/data/:user_id', '404')).toBe(1);
    expect(count('unmatched', '404')).toBe(1);
    // No path with a user_id in it becomes a label.
    expect(all.some((s) => Object.values(s.labels).some((v) => v.includes('nobody')))).toBe(false);
    expect(all.some((s) => s.name === 'userjoin_process_cpu_seconds_total')).toBe(true);
    expect(all.some((s) => s.name === 'userjoin_nodejs_heap_size_used_bytes')).toBe(true);
    // Every metric is ours.
    expect(all.every((s) => s.name.startsWith('userjoin_'))).toBe(true);
  });
});

describe('GET /metrics while the database hangs', () => {
  let db: TestDatabase;
  let silent: net.Server;
  const sockets: net.Socket[] = [];
  const pools: Database[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    // Accepts TCP connections and then says nothing, as a black-holed database would.
    silent = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    vi.useRealTimers();
    // Their connections end, so the reads still waiting fail and the pools can close.
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent?.close(resolve));
    for (const p of pools) await p.end().catch(() => undefined);
    await db?.drop();
  });

  it('answers within its deadlines, with the last figures read and the database down', async () => {
    const good = createPool(db.url);
    await good.query(`INSERT INTO users (user_id, first_name, last_name, birthdate) VALUES ('a', 'Ann', 'A', now()), ('b', 'Bob', 'B', now())`);
    // No connect timeout at all: only the scrape's own deadlines can end its wait.
    const { port } = silent.address() as net.AddressInfo;
    const hanging = createPool(`postgres://u:p@127.0.0.1:${port}/db`, { connectTimeoutMs: 0 });
    pools.push(good, hanging);
    let pool = good;
    let reads = 0;
    const metrics = new Metrics(
      (timeoutMs) => (reads++, readClusterStats(pool, timeoutMs)),
      silentLogger(),
      () => checkDependencies(pool, () => Promise.resolve()),
    );
    const figures = async (work: Promise<string>) => {
      const text = await work;
      const pick = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      return { users: pick('userjoin_users'), database: pick('userjoin_dependency_up\\{dependency="database"\\}') };
    };
    expect(await figures(metrics.text())).toEqual({ users: 2, database: 1 });

    // The database hangs; the figures are due to be read again. Time moves only when the test moves it.
    pool = hanging;
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    vi.setSystemTime(Date.now() + 60_000);
    let answered = false;
    const scrape = figures(metrics.text()).finally(() => (answered = true));
    await vi.advanceTimersByTimeAsync(2_999);
    expect(answered).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toBe(true);
    expect(await scrape).toEqual({ users: 2, database: 0 });

    // The next scrape does not start a second read behind the one still hanging.
    vi.setSystemTime(Date.now() + 60_000);
    const next = figures(metrics.text());
    await vi.advanceTimersByTimeAsync(3_000);
    expect(await next).toEqual({ users: 2, database: 0 });
    expect(reads).toBe(2);
  });
});
