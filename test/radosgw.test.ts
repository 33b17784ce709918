import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { parseListPage } from '../src/storage/s3Store.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, s3Client, userCsv } from './support/fixtures.js';
import { runToCompletion, testConfig } from './support/harness.js';
import type { Backend } from './support/stores.js';
import { hasRadosgw, startRadosgwBackend } from './support/stores.js';

/**
 * What a real S3 server does that s3rver does not: the S3 cases of the backend matrix run on
 * radosgw too; these are the differences found on it.
 */
describe.runIf(hasRadosgw)('a real S3 server: Ceph radosgw', () => {
  let backend: Backend;
  let db: TestDatabase;
  let config: Config;

  beforeAll(async () => {
    backend = await startRadosgwBackend();
  });
  afterAll(() => backend.stop());
  beforeEach(async () => {
    db = await createTestDatabase();
    config = testConfig(backend, db);
    await backend.store.ensureBucket(config.srcBucket);
    await backend.store.ensureBucket(config.resBucket);
  });
  afterEach(() => db.drop());

  it('one object a bucket policy denies is reported skipped, the run succeeds, and the next run reads it once allowed', async () => {
    const src = config.srcBucket;
    await put(backend, src, '1.csv', userCsv('Ann', 'Lee', 1000));
    await put(backend, src, 'secret/2.csv', userCsv('Bob', 'Ray', 2000));
    const client = await s3Client(backend);
    const denying = (key: string) =>
      JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Principal: '*', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${src}/${key}`] }] });
    await client.setBucketPolicy(src, denying('secret/2.csv'));

    const first = await runToCompletion(backend.store, db, config);
    expect(first.status).toBe('succeeded');
    expect(first.counts).toMatchObject({ new: 1, rejected: 1 });
    expect(first.rejected).toEqual([{ key: 'secret/2.csv', reason: 'it could not be read: the server refused to send it (AccessDenied)' }]);

    // The minio client takes radosgw's answer to DeleteBucketPolicy for an error: replace it.
    await client.setBucketPolicy(src, denying('nothing-here'));
    const second = await runToCompletion(backend.store, db, config);
    expect(second.status).toBe('succeeded');
    // Unchanged, yet read again: a refusal is never recorded as the file's state.
    expect(second.counts).toMatchObject({ read: 1, new: 1, rejected: 0 });
  });

  it('lists keys as the server stores them: URL-encoded, control characters, markup and percent signs included', async () => {
    const keys = ['a\u0001b.csv', 'odd/ü 100%+.csv', 'x&y<z>"q\'.csv', ' lead and trail .csv', 'tab\there.csv', 'del\u007f.csv'];
    for (const key of keys) await put(backend, config.srcBucket, key, userCsv('A', 'B', 1));
    const listed: string[] = [];
    for await (const o of backend.store.list(config.srcBucket)) listed.push(o.key);
    expect(listed.sort()).toEqual([...keys].sort());

    // Without encoding-type=url radosgw writes a control character as a character reference
    // (&#x01;), which XML 1.0 does not allow; the parser takes it all the same.
    const client = await s3Client(backend);
    const res = await client.makeRequestAsync({ method: 'GET', bucketName: config.srcBucket, query: 'list-type=2&prefix=a' });
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const xml = Buffer.concat(chunks).toString('utf8');
    expect(xml).toContain('a&#x01;b.csv');
    expect(parseListPage(xml).objects.map((o) => o.key)).toEqual(['a\u0001b.csv']);
  });

  it('creating a bucket that exists answers 200 rather than BucketAlreadyOwnedByYou; ensureBucket is fine either way', async () => {
    const client = await s3Client(backend);
    await expect(client.makeBucket(config.srcBucket)).resolves.toBeUndefined();
    await Promise.all(Array.from({ length: 4 }, () => backend.store.ensureBucket('fresh-bucket')));
    expect(await client.bucketExists('fresh-bucket')).toBe(true);
  });
});
