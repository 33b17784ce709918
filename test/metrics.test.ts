import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
