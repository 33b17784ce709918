import pLimit from 'p-limit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { PixelBudget } from '../src/images/budget.js';
import { Photos } from '../src/images/photos.js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import type { ObjectStore } from '../src/storage/index.js';
import { createStore, ObjectNotFoundError, ObjectUnreadableError } from '../src/storage/index.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import type { Fault } from './support/flakyProxy.js';
import { FlakyProxy } from './support/flakyProxy.js';
import { makeImage, readText, userCsv } from './support/fixtures.js';
import { runToCompletion, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { startS3Backend } from './support/stores.js';

// The flaky store: 5% of requests answered 503 SlowDown, 1% of answers cut mid-body.
const SLOW_DOWN_RATE = 0.05;
const CUT_RATE = 0.01;
const USERS = 3000;
// Every fifth user has a photo, a few of them in a folder.
const photoKey = (i: number) => (i % 5 !== 0 ? null : `${i % 50 === 0 ? 'photos/' : ''}${userId(i)}.png`);
const userId = (i: number) => String(i).padStart(5, '0');
const birthts = (i: number) => 315_532_800_000 + i * 86_400_000;

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('transient store errors are retried', () => {
  let backend: Backend;
  let proxy: FlakyProxy;
  let db: TestDatabase;
  let png: Buffer;
  // One source bucket for every test, written straight to the server, never through the proxy.
  const SRC = 'flaky-src';
  // Objects of single tests that runs must not see.
  const OTHER = 'flaky-other';

  beforeAll(async () => {
    backend = await startS3Backend();
    if (backend.config.kind !== 's3') throw new Error('an S3 backend is needed');
    proxy = await FlakyProxy.start({ target: { host: '127.0.0.1', port: backend.config.port }, seed: 17 });
    png = await makeImage('png', 8, 8);
    await backend.store.ensureBucket(SRC);
    await backend.store.ensureBucket(OTHER);
    // What the tests of single requests read; the runs' tests write all the others.
    for (const i of [3, 7, 10]) await putUser(i);
  });
  afterAll(async () => {
    await proxy?.close();
    await backend?.stop();
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    proxy.reset();
  });
  afterEach(() => db.drop());

  async function putUser(i: number): Promise<void> {
    await backend.store.write(SRC, `${userId(i)}.csv`, Buffer.from(userCsv(`First${i}`, `Last${i}`, birthts(i))));
    const photo = photoKey(i);
    if (photo) await backend.store.write(SRC, photo, png);
  }

  /** A store that reaches the server through the proxy, with a small backoff so tests are quick. */
  async function flaky(extra: Record<string, string> = {}): Promise<{ config: Config; store: ObjectStore; metrics: Metrics }> {
    const config = testConfig(backend, db, { MINIO_ENDPOINT: `http://127.0.0.1:${proxy.port}`, SRC_BUCKET: SRC, STORE_RETRY_BASE_MS: '5', ...extra });
    const metrics = new Metrics(() => Promise.reject(new Error('no database figures in this test')), silentLogger());
    const store = await createStore(config.store, { retry: config.storeRetry, observer: metrics.store });
    await backend.store.ensureBucket(config.resBucket);
    return { config, store, metrics };
  }

  /** A counter's series, as "label=value,..." -> value. */
  async function series(metrics: Metrics, name: string): Promise<Record<string, number>> {
    const metric = await metrics.registry.getSingleMetric(name)!.get();
    return Object.fromEntries(metric.values.map((v) => [Object.entries(v.labels).map(([k, l]) => `${k}=${String(l)}`).join(','), v.value]));
  }

  describe('over thousands of objects', () => {
    beforeAll(async () => {
      const limit = pLimit(16);
      await Promise.all(Array.from({ length: USERS }, (_, i) => limit(() => putUser(i))));
    });

    it('one run through 5% SlowDown and 1% answers cut mid-body stores every user exactly, no object skipped', async () => {
      const { config, store, metrics } = await flaky();
      proxy.slowDownRate = SLOW_DOWN_RATE;
      proxy.cutRate = CUT_RATE;
      // Besides chance: the upload of output.csv is reset once, so it is sent again from its spool file.
      let uploadReset = false;
      proxy.rule = ({ method, url }) => (method === 'PUT' && url.pathname.endsWith('/output.csv') && !uploadReset ? ((uploadReset = true), 'reset') : null);

      const report = await runToCompletion(store, db, config);

      const photos = Array.from({ length: USERS }, (_, i) => photoKey(i)).filter((k) => k !== null).length;
      expect(report.status).toBe('succeeded');
      expect(report.rejected).toEqual([]);
      expect(report.warnings).toEqual([]);
      expect(report.counts).toEqual({ scanned: USERS + photos, read: USERS + photos, new: USERS, updated: 0, unchanged: 0, rejected: 0, ignored: 0, erased: 0 });
      // Faults were really injected, of both kinds, and the upload was reset.
      expect(proxy.injected.slowDown).toBeGreaterThan(0);
      expect(proxy.injected.cut).toBeGreaterThan(0);
      expect(uploadReset).toBe(true);

      const rows = (
        await db.pool.query<{ user_id: string; first_name: string; last_name: string; birthts: number; img_path: string | null }>(
          `SELECT user_id, first_name, last_name, (extract(epoch FROM birthdate) * 1000)::bigint AS birthts, img_path FROM users ORDER BY user_id`,
        )
      ).rows;
      const expected = Array.from({ length: USERS }, (_, i) => {
        const photo = photoKey(i);
        return { user_id: userId(i), first_name: `First${i}`, last_name: `Last${i}`, birthts: birthts(i), img_path: photo ? `${SRC}/${photo}` : null };
      });
      expect(rows).toEqual(expected);
      expect(await readText(backend, config.resBucket, 'output.csv')).toBe(
        ['user_id,first_name,last_name,birthts,img_path', ...expected.map((u) => `${u.user_id},${u.first_name},${u.last_name},${u.birthts},${u.img_path ?? ''}`)].join('\r\n') + '\r\n',
      );

      const retries = await series(metrics, 'userjoin_store_retries_total');
      expect(retries['op=read,reason=throttled']).toBeGreaterThan(0);
      expect(retries['op=read,reason=cut']).toBeGreaterThan(0);
      expect(retries['op=write,reason=connection']).toBeGreaterThanOrEqual(1);
      const requests = await series(metrics, 'userjoin_store_requests_total');
      // Each object read once, its resumes counted only as retries.
      expect(requests['op=read,outcome=ok']).toBe(USERS + photos);
      expect(Object.keys(requests).filter((k) => !k.endsWith('outcome=ok'))).toEqual([]);
    });

    it('a listing page that fails is asked for again with its own token: the listing goes on, never restarts', async () => {
      const { store } = await flaky();
      const failed: string[] = [];
      // The second page is answered SlowDown once, the third is cut mid-body once.
      proxy.rule = ({ method, url }) => {
        const token = url.searchParams.get('continuation-token');
        if (method !== 'GET' || !url.searchParams.has('list-type') || !token || failed.includes(token) || failed.length === 2) return null;
        failed.push(token);
        return failed.length === 1 ? 'slow_down' : 'cut';
      };

      const keys: string[] = [];
      for await (const o of store.list(SRC)) keys.push(o.key);
      const direct: string[] = [];
      for await (const o of backend.store.list(SRC)) direct.push(o.key);
      expect(keys).toEqual(direct);
      expect(failed).toHaveLength(2);

      const listings = proxy.matching('GET', (u) => u.searchParams.has('list-type')).map((r) => new URL(r.url, 'http://x').searchParams.get('continuation-token'));
      // Each page once, in order, the first without a token; a failed page twice in a row, and never again after.
      const pages = [...new Set(listings)];
      expect(pages).toHaveLength(Math.ceil(direct.length / 1000));
      expect(pages[0]).toBeNull();
      expect(listings).toEqual(pages.flatMap((t) => (t !== null && failed.includes(t) ? [t, t] : [t])));
      expect(proxy.injected).toMatchObject({ slowDown: 1, cut: 1 });
    });
  });

  it('a read cut mid-body goes on from where it stopped, with a Range request; so does a photo the API serves', async () => {
    const { config, store, metrics } = await flaky();
    const csvKey = `${userId(7)}.csv`;
    const photo = photoKey(10)!;
    const isKey = (url: URL, key: string) => url.pathname === `/${SRC}/${key}`;
    // Every first GET of these (no Range) is cut, and the photo's first HEAD answered SlowDown.
    let headed = false;
    proxy.rule = ({ method, url, range }) => {
      if (method === 'GET' && !range && (isKey(url, csvKey) || isKey(url, photo))) return 'cut';
      if (method === 'HEAD' && isKey(url, photo) && !headed) return ((headed = true), 'slow_down');
      return null;
    };

    const csv = Buffer.from(userCsv('First7', 'Last7', birthts(7)));
    expect(await readAll(await store.read(SRC, csvKey))).toEqual(csv);
    const csvGets = proxy.matching('GET', (u) => isKey(u, csvKey));
    expect(csvGets.map((r) => r.range)).toEqual([undefined, `bytes=${Math.floor(csv.length / 2)}-`]);

    const photos = new Photos(store, config.limits, new PixelBudget(config.limits.maxImagePixels));
    const located = await photos.locate({ path: `${SRC}/${photo}` });
    expect(await readAll(await photos.original(located))).toEqual(png);
    expect((await photos.resized(located, 16)).subarray(8, 12).toString('latin1')).toBe('WEBP');
    expect(proxy.matching('GET', (u) => isKey(u, photo)).map((r) => r.range)).toEqual([undefined, `bytes=${Math.floor(png.length / 2)}-`, undefined, `bytes=${Math.floor(png.length / 2)}-`]);

    const retries = await series(metrics, 'userjoin_store_retries_total');
    // A HEAD answer has no body to name its code: a bare 503 says only that the server is unavailable.
    expect(retries).toEqual({ 'op=read,reason=cut': 3, 'op=stat,reason=unavailable': 1 });
    // Three reads (the CSV, the photo's original, the photo to resize), each counted once.
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=ok': 3, 'op=stat,outcome=ok': 1 });
  });

  it('a read whose resumes run out mid-body counts once, as gave_up; its resumes only as retries', async () => {
    const { store, metrics } = await flaky({ STORE_RETRIES: '1' });
    const key = `${userId(7)}.csv`;
    // Every answer of the object is cut, the resumed one too.
    proxy.rule = ({ method, url }) => (method === 'GET' && url.pathname === `/${SRC}/${key}` ? 'cut' : null);
    await expect(readAll(await store.read(SRC, key))).rejects.toThrow('the object store cut its answer short');
    expect(proxy.matching('GET', (u) => u.pathname === `/${SRC}/${key}`)).toHaveLength(2);
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=gave_up': 1 });
    expect(await series(metrics, 'userjoin_store_retries_total')).toEqual({ 'op=read,reason=cut': 1 });
  });

  it('a read cut after its last byte ends there, and one that ends short without an error goes on: exact either way', async () => {
    const { store, metrics } = await flaky();
    const key = `${userId(7)}.csv`;
    const csv = Buffer.from(userCsv('First7', 'Last7', birthts(7)));
    const gets = () => proxy.matching('GET', (u) => u.pathname === `/${SRC}/${key}`).map((r) => r.range);
    // Both answers come without Content-Length: the listing's size tells the read's length.
    // cut_after_body: chunked, the whole body, then the connection closes before the last chunk.
    proxy.rule = ({ method, url, range }) => (method === 'GET' && url.pathname === `/${SRC}/${key}` && !range ? 'cut_after_body' : null);
    expect(await readAll(await store.read(SRC, key, { size: csv.length }))).toEqual(csv);
    expect(gets()).toEqual([undefined]);
    // end_early: half the body, then the connection closes cleanly, as an unframed answer ends.
    proxy.reset();
    proxy.rule = ({ method, url, range }) => (method === 'GET' && url.pathname === `/${SRC}/${key}` && !range ? 'end_early' : null);
    expect(await readAll(await store.read(SRC, key, { size: csv.length }))).toEqual(csv);
    expect(gets()).toEqual([undefined, `bytes=${Math.floor(csv.length / 2)}-`]);
    expect(proxy.injected).toMatchObject({ endEarly: 1 });

    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=ok': 2 });
    expect(await series(metrics, 'userjoin_store_retries_total')).toEqual({ 'op=read,reason=cut': 1 });

    // Without the listing's size either: the rest asked for is nothing (416), and the object,
    // looked up, is still the one read and that long: the read is whole.
    proxy.reset();
    proxy.rule = ({ method, url, range }) => (method === 'GET' && url.pathname === `/${SRC}/${key}` && !range ? 'cut_after_body' : null);
    expect(await readAll(await store.read(SRC, key))).toEqual(csv);
    expect(gets()).toEqual([undefined, `bytes=${csv.length}-`]);
  });

  it('an object that changes before the rest of its read is asked for is refused as changed, never spliced', async () => {
    const { store, metrics } = await flaky();
    const key = 'changes.csv';
    const before = Buffer.from(userCsv('Before', 'Old', birthts(1)));
    await backend.store.write(OTHER, key, before);
    const etag = (await backend.store.stat(OTHER, key))!.etag;
    proxy.rule = ({ method, url, range }) => (method === 'GET' && url.pathname === `/${OTHER}/${key}` && !range ? 'cut' : null);

    const body = await store.read(OTHER, key);
    // Replaced before the body is read: the rest of the read asks for the new object.
    await backend.store.write(OTHER, key, Buffer.from(userCsv('Afterwards', 'Newer', birthts(2))));
    const refused = await readAll(body).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ObjectUnreadableError);
    expect((refused as ObjectUnreadableError).reason).toBe('it changed while it was read');
    // The rest was asked for If-Match the first answer's ETag; s3rver ignores it and sends the
    // new object, which the ETag check of its answer refuses. (From the byte the reader got:
    // the cut may have dropped what the client held unread.)
    const gets = proxy.matching('GET', (u) => u.pathname === `/${OTHER}/${key}`);
    expect(gets.map((r) => r.ifMatch)).toEqual([undefined, `"${etag}"`]);
    expect(gets[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=refused': 1 });
  });

  it('a request that receives nothing is abandoned after STORE_REQUEST_TIMEOUT_MS and tried again, though the timeout is longer than STORE_RETRY_MAX_MS', async () => {
    // The defaults' ratio (30 s and 10 s), scaled down: a timed-out try's time is not counted toward the budget.
    const { store, metrics } = await flaky({ STORE_REQUEST_TIMEOUT_MS: '300', STORE_RETRY_MAX_MS: '100' });
    const key = `${userId(3)}.csv`;
    let stalled = false;
    // The first GET is held, never answered, until the client gives up on it.
    proxy.rule = ({ method, url }) => (method === 'GET' && url.pathname === `/${SRC}/${key}` && !stalled ? ((stalled = true), 'stall') : null);
    expect((await readAll(await store.read(SRC, key))).toString()).toBe(userCsv('First3', 'Last3', birthts(3)));
    const [held] = proxy.matching('GET', (u) => u.pathname === `/${SRC}/${key}`);
    expect(held).toMatchObject({ fault: 'stall', abandoned: true });
    // A busy machine may make the next try time out too: it is retried all the same.
    expect((await series(metrics, 'userjoin_store_retries_total'))['op=read,reason=timeout']).toBeGreaterThanOrEqual(1);
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=ok': 1 });
  });

  it("bucket checks are retried: the health check's ping and ensureBucket's own requests", async () => {
    const { store, metrics } = await flaky();
    const bucket = 'flaky-made';
    // Faults by request, each used once: ping's HEAD SlowDown; ensureBucket's HEAD reset, its PUT SlowDown.
    const faults = new Map<string, Fault[]>([
      [`HEAD /${SRC}`, ['slow_down']],
      [`HEAD /${bucket}`, ['reset']],
      [`PUT /${bucket}`, ['slow_down']],
    ]);
    proxy.rule = ({ method, url }) => faults.get(`${method} ${url.pathname.replace(/\/$/, '')}`)?.shift() ?? null;
    await store.ping(SRC);
    await store.ensureBucket(bucket);
    expect([...faults.values()].flat()).toEqual([]);
    await backend.store.ping(bucket);
    // A HEAD answer has no body to name its code: a bare 503 says only that the server is unavailable.
    expect(await series(metrics, 'userjoin_store_retries_total')).toEqual({ 'op=bucket,reason=unavailable': 1, 'op=bucket,reason=connection': 1, 'op=bucket,reason=throttled': 1 });
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=bucket,outcome=ok': 2 });
  });

  it('notification setup at start is retried', async () => {
    const { store, metrics } = await flaky();
    let failed = false;
    const setting = (u: URL) => u.pathname.replace(/\/$/, '') === `/${SRC}` && u.searchParams.has('notification');
    proxy.rule = ({ method, url }) => (method === 'PUT' && setting(url) && !failed ? ((failed = true), 'slow_down') : null);
    // s3rver has no bucket notifications: the try after the SlowDown reaches it and is answered NotImplemented.
    await expect(store.notifyTo!(SRC, { kind: 'queue', arn: 'arn:minio:sqs::USERJOIN:webhook' })).rejects.toMatchObject({ code: 'NotImplemented' });
    expect(proxy.matching('PUT', setting).map((r) => r.fault)).toEqual(['slow_down', null]);
    expect(await series(metrics, 'userjoin_store_retries_total')).toEqual({ 'op=notify,reason=throttled': 1 });
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=notify,outcome=error': 1 });
  });

  it('answers about one object are not retried: AccessDenied, NoSuchKey', async () => {
    const { store, metrics } = await flaky();
    const denied = `${userId(1)}.csv`;
    proxy.rule = ({ url }) => (url.pathname === `/${SRC}/${denied}` ? 'access_denied' : null);

    const refused = await store.read(SRC, denied).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ObjectUnreadableError);
    expect((refused as ObjectUnreadableError).reason).toBe('the server refused to send it (AccessDenied)');
    await expect(store.read(SRC, 'missing.csv')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.stat(SRC, 'missing.csv')).toBeNull();

    expect(proxy.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`GET /${SRC}/${denied}`, `GET /${SRC}/missing.csv`, `HEAD /${SRC}/missing.csv`]);
    expect(await series(metrics, 'userjoin_store_retries_total')).toEqual({});
    expect(await series(metrics, 'userjoin_store_requests_total')).toEqual({ 'op=read,outcome=refused': 1, 'op=read,outcome=not_found': 1, 'op=stat,outcome=ok': 1 });
  });

  it('a store that stays down fails the run once its tries are spent, or once STORE_RETRY_MAX_MS has passed', async () => {
    const listing = (u: URL) => u.searchParams.has('list-type');
    proxy.rule = ({ method, url }) => (method === 'GET' && listing(url) ? 'slow_down' : null);

    const byTries = await flaky({ STORE_RETRIES: '3' });
    await expect(runToCompletion(byTries.store, db, byTries.config)).rejects.toThrow('the object store failed while listing the source bucket');
    expect(proxy.matching('GET', listing)).toHaveLength(4);
    expect(await series(byTries.metrics, 'userjoin_store_requests_total')).toMatchObject({ 'op=list,outcome=gave_up': 1 });

    // Tries enough for minutes of waiting: the time bound ends it.
    proxy.requests.length = 0;
    const byTime = await flaky({ STORE_RETRIES: '100', STORE_RETRY_BASE_MS: '20', STORE_RETRY_MAX_MS: '300' });
    await expect(runToCompletion(byTime.store, db, byTime.config)).rejects.toThrow('the object store failed while listing the source bucket');
    expect(proxy.matching('GET', listing).length).toBeLessThan(101);
  });
});
