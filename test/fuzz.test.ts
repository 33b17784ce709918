import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseUserCsv } from '../src/pipeline/parseUserCsv.js';
import { checkKey, classifyKey } from '../src/core/keys.js';
import { checkImage } from '../src/images/checkImage.js';
import { compareKeys } from '../src/storage/keyOrder.js';
import { printable } from '../src/core/text.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, readText } from './support/fixtures.js';
import { ObservedStore, runToCompletion, testConfig } from './support/harness.js';
import type { GeneratedCsv, GeneratedImage, GeneratedKey } from './support/hostile.js';
import { csvCell, csvExt, FORBIDDEN, fuzzParams, imageExt, imageFile, keyArb, keyRefused, MAX_CSV_BYTES, sampleImages, userCsvFile } from './support/hostile.js';
import type { Backend } from './support/stores.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import { backends, startFolderBackend } from './support/stores.js';
import { PixelBudget } from '../src/images/budget.js';

// Property-based tests over hostile input. Each prints its seed when it fails; replay with
// FUZZ_SEED=<seed> FUZZ_PATH=<path> npm test -- test/fuzz.test.ts. FUZZ_RUNS=<n> runs more.

describe('parseUserCsv on generated CSVs (property)', () => {
  it('agrees with the input rules on every file, and always answers with a reason instead of throwing', () => {
    fc.assert(
      fc.property(userCsvFile, (g) => {
        const r = parseUserCsv(g.bytes);
        if (g.expect.ok) {
          expect(r).toEqual({ ok: true, data: { firstName: g.expect.firstName, lastName: g.expect.lastName, birthts: g.expect.birthts } });
        } else {
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.reason).toMatch(/\S/);
        }
      }),
      fuzzParams(2000),
    );
  });
});

describe('keys and images (property)', () => {
  it('classifies and checks any key without throwing; a refused key is printable', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (key) => {
        const cls = classifyKey(key);
        if (!cls) return;
        const reason = checkKey(key, cls.userId);
        expect(reason === null).toBe(!keyRefused(key, cls.userId));
        expect(printable(key)).not.toMatch(FORBIDDEN);
      }),
      fuzzParams(2000),
    );
  });

  it('checkImage answers every byte string with a result, never an exception', async () => {
    const samples = await sampleImages();
    await fc.assert(
      fc.asyncProperty(imageFile(samples), async (g) => {
        const r = await checkImage(g.bytes, new PixelBudget(1_000_000), 10_000);
        expect(r.ok).toBe(g.ok);
        if (!r.ok) expect(r.reason).toMatch(/\S/);
      }),
      fuzzParams(300),
    );
  });
});

type GeneratedFile = GeneratedKey & ({ kind: 'csv'; csv: GeneratedCsv } | { kind: 'image'; image: GeneratedImage });

interface Row {
  user_id: string;
  first_name: string;
  last_name: string;
  birthts: string;
  img_path: string;
}

describe.each(backends)('runs over generated hostile buckets on the %s backend (property)', (name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let samples: Buffer[];

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    samples = await sampleImages();
  });
  afterAll(async () => {
    await db.drop();
    await backend.stop();
  });

  const files = (): fc.Arbitrary<GeneratedFile[]> => {
    const kind = name as 'folder' | 's3rver' | 'radosgw';
    const csvFile = fc.tuple(keyArb(kind, csvExt), userCsvFile).map(([k, csv]): GeneratedFile => ({ ...k, kind: 'csv', csv }));
    const image = fc.tuple(keyArb(kind, imageExt), imageFile(samples)).map(([k, img]): GeneratedFile => ({ ...k, kind: 'image', image: img }));
    return fc.uniqueArray(fc.oneof({ weight: 3, arbitrary: csvFile }, { weight: 2, arbitrary: image }), {
      minLength: 1,
      maxLength: 8,
      selector: (f) => f.key,
    });
  };

  it('every run succeeds; valid users are stored exactly, in the table and output.csv; every other file is reported; a re-run changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(files(), async (generated) => {
        await db.pool.query('TRUNCATE users, source_files, run_issues, run_issue_tally, run_issue_left_out_users, run_items, pending_events, erasure_tombstones, erasures, runs RESTART IDENTITY');
        await db.pool.query('UPDATE pipeline_state SET output_stale = true');
        const config = testConfig(backend, db, { MAX_CSV_BYTES: String(MAX_CSV_BYTES) });
        const store = new ObservedStore(backend.store);
        await store.ensureBucket(config.srcBucket);
        await store.ensureBucket(config.resBucket);
        for (const f of generated) await put(backend, config.srcBucket, f.key, f.kind === 'csv' ? f.csv.bytes : f.image.bytes);

        const report = await runToCompletion(store, db, config);
        expect(report.status).toBe('succeeded');

        // The expected outcome, from the input rules: the newest valid CSV of each user_id
        // (smallest key on a tie) joined with the newest valid image.
        const modified = new Map<string, number>();
        for await (const o of backend.store.list(config.srcBucket)) modified.set(o.key, o.lastModified.getTime());
        const refused = (f: GeneratedFile) => keyRefused(f.key, f.userId);
        const valid = (f: GeneratedFile) => !refused(f) && (f.kind === 'csv' ? f.csv.expect.ok : f.image.ok);
        const newest = (a: GeneratedFile, b: GeneratedFile) => modified.get(b.key)! - modified.get(a.key)! || (a.key < b.key ? -1 : 1);
        const expected: Row[] = [];
        for (const userId of new Set(generated.filter((f) => f.kind === 'csv' && valid(f)).map((f) => f.userId))) {
          const mine = generated.filter((f) => f.userId === userId && valid(f));
          const csv = mine.filter((f) => f.kind === 'csv').sort(newest)[0]!;
          const image = mine.filter((f) => f.kind === 'image').sort(newest)[0];
          if (csv.kind !== 'csv' || !csv.csv.expect.ok) throw new Error('unreachable');
          const e = csv.csv.expect;
          expected.push({ user_id: userId, first_name: e.firstName, last_name: e.lastName, birthts: String(e.birthts), img_path: image ? `${config.srcBucket}/${image.key}` : '' });
        }
        expected.sort((a, b) => compareKeys(a.user_id, b.user_id));

        const { rows } = await db.pool.query<Row>(
          `SELECT user_id, first_name, last_name, (extract(epoch FROM birthdate) * 1000)::bigint::text AS birthts, coalesce(img_path, '') AS img_path
           FROM users ORDER BY user_id`,
        );
        expect(rows).toEqual(expected);
        const output = parse<Row>(await readText(backend, config.resBucket, 'output.csv'), { columns: true });
        const written = (r: Row): Row => ({ ...r, user_id: csvCell(r.user_id), first_name: csvCell(r.first_name), last_name: csvCell(r.last_name), img_path: csvCell(r.img_path) });
        expect(output).toEqual(expected.map(written));

        const expectedRejected = generated.filter((f) => !valid(f)).map((f) => printable(f.key));
        expect(report.rejected.map((r) => r.key).sort()).toEqual(expectedRejected.sort());
        for (const r of report.rejected) expect(r.reason).toMatch(/^\S.{0,499}$/su);
        expect(report.counts).toMatchObject({ new: expected.length, rejected: expectedRejected.length });

        // Again, with nothing changed: nothing is read or written, and no user changes.
        const before = (await db.pool.query('SELECT * FROM users ORDER BY id')).rows;
        store.reset();
        const again = await runToCompletion(store, db, config);
        expect(again).toMatchObject({ status: 'succeeded', output_written: false, counts: { read: 0, new: 0, updated: 0 } });
        // Refused names cannot be recorded, so every run reports them again; nothing else.
        expect(again.rejected.map((r) => r.key).sort()).toEqual(generated.filter(refused).map((f) => printable(f.key)).sort());
        expect(store.reads).toEqual([]);
        expect(store.writes).toEqual([]);
        expect((await db.pool.query('SELECT * FROM users ORDER BY id')).rows).toEqual(before);
      }),
      fuzzParams(100),
    );
  }, 600_000);
});

describe('HTTP parameters (property)', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  beforeAll(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db);
    await put(backend, svc.srcBucket, '1.csv', 'first_name,last_name,birthts\nAnn,Lee,1000\n');
    await svc.post('/data?wait=true');
  });
  afterAll(async () => {
    await svc.stop();
    await db.drop();
    await backend.stop();
  });

  const NAMES = ['min_age', 'max_age', 'is_image_exists', 'limit', 'cursor', 'format', 'wait', 'full', 'before', 'width'];
  const token = fc.oneof(
    fc.constantFrom('', '0', '-1', '30.5', '1e3', 'true', 'false', 'csv', 'json', '99999999999999999999', 'NaN', '%', '%ZZ', '%00', '%C3', '&', '=', '+', 'eyJhZnRlciI6IjEifQ', 'eyJhZnRlciI6Ilx1MDAwMCJ9', 'bnVsbA'),
    fc.string({ unit: 'binary', maxLength: 12 }).map(encodeURIComponent),
    fc.string({ unit: 'grapheme', maxLength: 8 }),
  );
  const query = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...NAMES), token), token), { maxLength: 4 }).map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&'));

  const isJsonError = async (res: Response) => {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    return typeof body.error?.code === 'string' && typeof body.error.message === 'string' && body.error.message !== '';
  };

  it('every query gets its answer or a 400 with a JSON error, never a 500', async () => {
    await fc.assert(
      fc.asyncProperty(query, token, fc.constantFrom('GET /data', 'GET /data/', 'GET /runs', 'GET /runs/', 'POST /data', 'GET /data/1/image', 'GET /metrics', 'GET /openapi.json'), async (q, segment, route) => {
        const [method, path] = route.split(' ') as [string, string];
        const url = `${path}${path.endsWith('/') ? segment : ''}?${q}`;
        const res = await fetch(svc.url + url, { method });
        expect([200, 202, 400, 404, 409], `${method} ${url}`).toContain(res.status);
        if (res.status >= 400) expect(await isJsonError(res), `${method} ${url}`).toBe(true);
        else await res.arrayBuffer();
      }),
      fuzzParams(300),
    );
  }, 300_000);
});
