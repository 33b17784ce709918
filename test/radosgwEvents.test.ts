import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, remove, userCsv, waitFor } from './support/fixtures.js';
import { createTopic } from './support/radosgw.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { hasRadosgw, startRadosgwBackend } from './support/stores.js';
import type { TlsProxy } from './support/tlsProxy.js';
import { startTlsProxy } from './support/tlsProxy.js';

/**
 * radosgw pushes its own bucket notifications to POST /events/s3, set up as docs/deployment.md says:
 * an SNS topic with a push endpoint carrying the token as a Basic password, created over HTTPS
 * and persistent, and the service pointing the bucket at the topic at start (S3_NOTIFY_ARN).
 * TLS ends at a proxy in front of the service, as it would at a reverse proxy.
 */
describe.runIf(hasRadosgw)('notifications pushed by radosgw', () => {
  const TOKEN = randomBytes(24).toString('base64url');
  let backend: Backend;
  let db: TestDatabase;
  let proxy: TlsProxy;
  let svc: TestService;

  beforeAll(async () => {
    backend = await startRadosgwBackend();
    db = await createTestDatabase();
    proxy = await startTlsProxy(backend.radosgw!.certPath);
    const { accessKey, secretKey } = backend.config as { accessKey: string; secretKey: string };
    const arn = await createTopic(backend.radosgw!, { accessKey, secretKey }, 'userjoin', {
      'push-endpoint': `${proxy.url.replace('https://', `https://events:${TOKEN}@`)}/events/s3`,
      // The gateway's test certificate is self-signed.
      'verify-ssl': 'false',
      persistent: 'true',
    });
    svc = await startTestService(backend, db, { ...backend.env, EVENTS_TOKEN: TOKEN, S3_NOTIFY_ARN: arn });
    proxy.target = svc.url;
  });
  afterAll(async () => {
    await svc?.stop(0);
    await proxy?.close();
    await db?.drop();
    await backend?.stop();
  });

  const userOf = async (userId: string) => {
    const res = await svc.get(`/data/${encodeURIComponent(userId)}`);
    return res.status === 200 ? ((await res.json()) as { user_id: string; first_name: string; img_path: string | null }) : undefined;
  };
  const eventsCounted = async (outcome: string) => {
    const text = await (await svc.get('/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith(`userjoin_events_total{source="s3",outcome="${outcome}"}`));
    return line ? Number(line.split(' ').pop()) : 0;
  };

  it('a new user, an odd key in a folder, is visible about a second after its upload; a removed photo goes', async () => {
    // A persistent topic's queue is taken up by the gateway on its next sweep, every 30 s
    // in Ceph 16.2; from then on each notification is pushed as it comes.
    await put(backend, svc.srcBucket, 'warm-up.txt', 'not a user file');
    await waitFor('the gateway to push its first notification', async () => (await eventsCounted('not_user_file')) >= 1, 60_000);

    const key = 'in dir/ü 100%+.csv';
    const started = Date.now();
    await put(backend, svc.srcBucket, key, userCsv('Zoë', 'Ray', 1000));
    const user = await waitFor('the new user', () => userOf('ü 100%+'), 10_000);
    console.info(`radosgw notification to visible user: ${Date.now() - started} ms`);
    expect(user.first_name).toBe('Zoë');
    expect(await eventsCounted('unparsable')).toBe(0);

    await put(backend, svc.srcBucket, 'in dir/ü 100%+.png', await makeImage('png'));
    await waitFor('the photo joined', async () => (await userOf('ü 100%+'))?.img_path ?? undefined);
    await remove(backend, svc.srcBucket, 'in dir/ü 100%+.png');
    await waitFor('the removed photo to go', async () => (await userOf('ü 100%+'))?.img_path === null);
    // Every push carried the token as a Basic password through HTTPS.
    expect(await eventsCounted('accepted')).toBe(3);
    // The gateway's first sweep may take its 30 s.
  }, 120_000);
});
