import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { makeImage, put, readText, remove, userCsv, waitFor } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import { createTopic } from './support/radosgw.js';
import type { TestService } from './support/service.js';
import { recordingLogger, servicePerTest } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import {
  awsEscape,
  awsNotification,
  awsRecord,
  bucketNotificationXml,
  minioNotification,
  minioRecord,
  radosgwNotification,
  s3TestEvent,
  snsNotification,
  snsSubscriptionConfirmation,
} from './support/s3Events.js';

interface Run {
  id: number;
  trigger: string;
  status: string;
  output_written: boolean;
  counts: { read: number; new: number; updated: number; rejected: number; scanned: number; ignored: number };
}

describe.each(backends)('events (%s)', (_name, startBackend) => {
  let backend: Backend;
  let db: TestDatabase;
  const start = servicePerTest(startBackend, (b, d) => {
    backend = b;
    db = d;
  });

  const notify = (svc: TestService, records: unknown[], headers: Record<string, string> = {}) =>
    svc.post('/events/s3', {
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ EventName: 's3:ObjectCreated:Put', Key: 'x', Records: records }),
    });

  const created = (svc: TestService, key: string) => minioRecord(svc.srcBucket, key, 'ObjectCreated:Put');
  const removed = (svc: TestService, key: string) => minioRecord(svc.srcBucket, key, 'ObjectRemoved:Delete');
  /** A whole body, as a server sends it. */
  const send = (svc: TestService, body: unknown, headers: Record<string, string> = {}) =>
    svc.post('/events/s3', { headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  const userOf = async (svc: TestService, userId: string) => {
    const res = await svc.get(`/data/${encodeURIComponent(userId)}`);
    return res.status === 200 ? ((await res.json()) as { user_id: string; first_name: string; img_path: string | null }) : undefined;
  };
  const runs = async (svc: TestService) => ((await (await svc.get('/runs')).json()) as { data: Run[] }).data;
  const pending = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pending_events')).rows[0]!.n;

  it('processes the users that events name, and only them: URL-encoded keys, nested prefixes, Unicode', async () => {
    const svc = await start();
    const keys = ['nested/deep/u 1+2.csv', 'café/é1.csv', 'plain.csv'];
    for (const [i, key] of keys.entries()) await put(backend, svc.srcBucket, key, userCsv(`F${i}`, `L${i}`, 1000 * i));
    await put(backend, svc.srcBucket, 'untouched.csv', userCsv('No', 'Event', 0));
    // One encoded as MinIO does ("/" as %2F), one as AWS does ("/" kept), one without "s3:".
    const res = await notify(svc, [
      created(svc, keys[0]!),
      minioRecord(svc.srcBucket, keys[1]!, 'ObjectCreated:Put', awsEscape),
      awsRecord(svc.srcBucket, keys[2]!, 'ObjectCreated:CompleteMultipartUpload'),
    ]);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ received: 3, recorded: 3, outcomes: { accepted: 3 } });

    for (const [i, userId] of ['u 1+2', 'é1', 'plain'].entries()) {
      const user = await waitFor(`user ${userId}`, () => userOf(svc, userId));
      expect(user.first_name).toBe(`F${i}`);
    }
    expect(await userOf(svc, 'untouched')).toBeUndefined();
    const run = await waitFor('the batch to finish', async () => (await runs(svc)).find((r) => r.status === 'succeeded'));
    expect(run.trigger).toBe('event');
    expect(run.counts).toMatchObject({ read: 3, new: 3 });
    await waitFor('the pending events to be forgotten', async () => (await pending()) === 0);
  });

  it("takes each server's own notifications, and decodes keys as each encodes them: MinIO's and AWS's URL-encoded, radosgw's raw", async () => {
    const svc = await start();
    // user_id, key: "%" and "+" mean one thing raw and another encoded.
    const users = [
      ['ü 100%+', 'in dir/ü 100%+.csv'],
      ['x%41+y', 'ceph/x%41+y.csv'],
      ['100%+ é', 'minio/100%+ é.csv'],
      ['a+b c%41', 'aws/a+b c%41.csv'],
    ] as const;
    for (const [i, [, key]] of users.entries()) await put(backend, svc.srcBucket, key, userCsv(`F${i}`, `L${i}`, 1000 * i));
    const bodies = [
      radosgwNotification(svc.srcBucket, users[0][1]),
      radosgwNotification(svc.srcBucket, users[1][1]),
      minioNotification(svc.srcBucket, users[2][1]),
      // AWS S3 reaches a webhook through an SNS topic, which wraps the event.
      snsNotification(awsNotification(svc.srcBucket, users[3][1])),
    ];
    expect(JSON.stringify(bodies[2])).toContain('minio%2F100%25%2B+%C3%A9.csv');
    for (const body of bodies) {
      const res = await send(svc, body);
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ received: 1, recorded: 1 });
    }
    for (const [i, [userId]] of users.entries()) {
      const user = await waitFor(`user ${userId}`, () => userOf(svc, userId));
      expect(user.first_name).toBe(`F${i}`);
    }
  });

  it('answers the messages of an SNS subscription without fetching anything, and refuses one that carries no S3 event', async () => {
    const { log, entries } = recordingLogger();
    const svc = await start({}, { log });
    const confirm = 'https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:123456789012:userjoin-src&Token=2336';
    for (const body of [snsSubscriptionConfirmation(confirm), snsNotification(s3TestEvent(svc.srcBucket)), { ...snsNotification(''), Type: 'UnsubscribeConfirmation' }]) {
      const res = await send(svc, body);
      expect(res.status, body.Type).toBe(202);
      expect(await res.json()).toMatchObject({ received: 0, recorded: 0 });
    }
    // With raw message delivery, S3's test event comes bare.
    const bare = await send(svc, s3TestEvent(svc.srcBucket));
    expect(bare.status).toBe(202);
    expect(await bare.json()).toMatchObject({ received: 0, recorded: 0 });
    // The operator confirms the subscription: its URL is in the log.
    expect(entries().find((e) => e.subscribeUrl === confirm)?.msg).toMatch(/SubscribeURL/);
    for (const body of [snsNotification({ hello: 'world' }), { ...snsNotification({}), Message: '{not json' }, { ...snsNotification({}), Type: 'Mystery' }]) {
      const res = await send(svc, body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_body');
    }
    expect(await pending()).toBe(0);
  });

  it('follows removals, duplicates and late deliveries to the objects current state', async () => {
    const svc = await start();
    await put(backend, svc.srcBucket, '7.csv', userCsv('Ann', 'Lee', 0));
    await put(backend, svc.srcBucket, '7.png', await makeImage('png'));
    // The same event three times, in one request and in two.
    await notify(svc, [created(svc, '7.csv'), created(svc, '7.png'), created(svc, '7.csv')]);
    await notify(svc, [created(svc, '7.csv')]);
    // waitFor takes null as an answer: img_path null (no photo yet) must keep it waiting.
    await waitFor('the photo', async () => (await userOf(svc, '7'))?.img_path ?? undefined);

    await remove(backend, svc.srcBucket, '7.png');
    // A removal delivered late for an object that is there again, or was never gone, changes nothing.
    await notify(svc, [removed(svc, '7.png'), removed(svc, '7.csv')]);
    await waitFor('the photo to be dropped', async () => (await userOf(svc, '7'))?.img_path === null);
    expect((await userOf(svc, '7'))?.first_name).toBe('Ann');
    await waitFor('the events to be processed', async () => (await pending()) === 0 && (await runs(svc)).every((r) => r.status === 'succeeded'));

    const all = await runs(svc);
    const read = all.reduce((n, r) => n + r.counts.read, 0);
    // Each object was read once: later events for an unchanged object read nothing.
    expect(read).toBe(2);
    expect((await db.pool.query('SELECT user_id FROM users')).rows).toEqual([{ user_id: '7' }]);
  });

  it('counts and ignores events for another bucket, keys that are not user files, other events and records that do not parse', async () => {
    const svc = await start();
    const res = await notify(svc, [
      minioRecord('some-other-bucket', '1.csv'),
      created(svc, 'notes.txt'),
      created(svc, 'folder/'),
      created(svc, 'bad\u0001name.csv'),
      // Look-alike and path-like user_ids (issue 18) are refused here as by the listing.
      created(svc, '1\u200b.csv'),
      created(svc, '..csv'),
      minioRecord(svc.srcBucket, '2.csv', 'ObjectAccessed:Get'),
      minioRecord(svc.srcBucket, '3.csv', 'ObjectCreated:Put', () => '%E0%A4%A.csv'),
      { eventName: 's3:ObjectCreated:Put' },
      'not even an object',
    ]);
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({
      received: 10,
      recorded: 0,
      outcomes: { accepted: 0, other_bucket: 1, not_user_file: 2, refused_key: 3, other_event: 1, unparsable: 3 },
    });
    expect(await pending()).toBe(0);
    const metrics = await (await svc.get('/metrics')).text();
    expect(metrics).toMatch(/userjoin_events_total\{source="s3",outcome="unparsable"\} 3/);
  });

  it('answers 400 to a body that is not an S3 notification, and stores nothing', async () => {
    const svc = await start();
    for (const body of ['{"Records": [', 'null', '{"Records": "all"}', '{}', '[1]']) {
      const res = await svc.post('/events/s3', { headers: { 'content-type': 'application/json' }, body });
      expect(res.status, body).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_body');
    }
    const big = await svc.post('/events/s3', { body: JSON.stringify({ Records: [], pad: 'x'.repeat(2 * 1024 * 1024) }) });
    expect(big.status).toBe(413);
    expect(await pending()).toBe(0);
    expect(await runs(svc)).toEqual([]);
  });

  it('takes EVENTS_TOKEN or API_TOKEN, as Bearer or as the password of Basic, and EVENTS_TOKEN opens nothing else', async () => {
    const svc = await start({ API_TOKEN: 'api-secret', EVENTS_TOKEN: 'events:secret' });
    await put(backend, svc.srcBucket, '5.csv', userCsv('Bo', 'Ek', 0));
    const basic = (pair: string) => ({ authorization: `Basic ${Buffer.from(pair).toString('base64')}` });
    const bad: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong' },
      // Basic is user:password; the token alone, or as the user name, is not it.
      basic('api-secret'),
      basic('events:secret'),
      basic('events:secret:'),
      basic('events:wrong'),
      { authorization: 'Basic %%%' },
    ];
    for (const headers of bad) {
      const res = await notify(svc, [created(svc, '5.csv')], headers);
      expect(res.status, JSON.stringify(headers)).toBe(401);
      // Both ways are advertised, so a sender that can only do Basic knows it may.
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="userjoin", Basic realm="userjoin"');
    }
    // The router takes other spellings of the path; the token check must too.
    for (const spelling of ['/EVENTS/S3', '/Events/s3', '/events/s3/']) {
      const res = await svc.post(spelling, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Records: [created(svc, '5.csv')] }) });
      expect(res.status, spelling).toBe(401);
    }
    expect(await pending()).toBe(0);
    expect((await notify(svc, [created(svc, '5.csv')], { authorization: 'Bearer events:secret' })).status).toBe(202);
    expect((await notify(svc, [created(svc, '5.csv')], { authorization: 'Bearer api-secret' })).status).toBe(202);
    // As radosgw sends it, from https://events:<token>@host/events/s3: any user name, the token as the password.
    expect((await notify(svc, [created(svc, '5.csv')], basic('events:events:secret'))).status).toBe(202);
    expect((await notify(svc, [created(svc, '5.csv')], basic(':api-secret'))).status).toBe(202);
    expect((await svc.get('/data', { headers: { authorization: 'Bearer events:secret' } })).status).toBe(401);
    // The API takes Bearer only: a browser would send cached Basic credentials for any page.
    const viaBasic = await svc.get('/data', { headers: basic('me:api-secret') });
    expect(viaBasic.status).toBe(401);
    expect(viaBasic.headers.get('www-authenticate')).toBe('Bearer realm="userjoin"');
    await waitFor('user 5', async () => (await svc.get('/data/5', { headers: { authorization: 'Bearer api-secret' } })).status === 200);
  });

  it('rewrites output.csv after events at most once per EXPORT_INTERVAL, and gathers the batches into one run', async () => {
    const svc = await start({ EXPORT_INTERVAL: '3600' });
    await put(backend, svc.srcBucket, '1.csv', userCsv('One', 'A', 0));
    await notify(svc, [created(svc, '1.csv')]);
    // Never written before: the first export is due at once.
    await waitFor('output.csv with user 1', async () => (await readText(backend, svc.resBucket, 'output.csv').catch(() => '')).includes('One'));

    await put(backend, svc.srcBucket, '2.csv', userCsv('Two', 'B', 0));
    await notify(svc, [created(svc, '2.csv')]);
    await waitFor('user 2', () => userOf(svc, '2'));
    await waitFor('the batch to finish', async () => (await runs(svc))[0]?.status === 'succeeded');
    // Within the hour, the table has user 2 and output.csv does not yet.
    expect(await readText(backend, svc.resBucket, 'output.csv')).not.toContain('Two');
    const all = await runs(svc);
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ trigger: 'event', output_written: true, counts: { new: 2, read: 2 } });

    // A scheduled or manual run catches output.csv up at once.
    const manual = (await (await svc.post('/data?wait=true')).json()) as Run;
    expect(manual.output_written).toBe(true);
    expect(await readText(backend, svc.resBucket, 'output.csv')).toContain('Two');
  });

  it('processes events while another instance holds the run lock: they never wait for a run', async () => {
    const svc = await start({ EXPORT_INTERVAL: '0' });
    await put(backend, svc.srcBucket, '2.csv', userCsv('Two', 'B', 0));
    // Another instance's run, as far as the lock goes.
    const other = await db.pool.connect();
    try {
      await other.query('SELECT pg_advisory_lock(7330102)');
      expect((await notify(svc, [created(svc, '2.csv')])).status).toBe(202);
      await waitFor('user 2 in output.csv', async () => (await readText(backend, svc.resBucket, 'output.csv').catch(() => '')).includes('Two'));
      expect(await pending()).toBe(0);
    } finally {
      await other.query('SELECT pg_advisory_unlock(7330102)');
      other.release();
    }
  });

  it('keeps events while another instance runs a batch of events (the events lock), and processes them once it is free', async () => {
    const svc = await start({ EXPORT_INTERVAL: '0' });
    await put(backend, svc.srcBucket, '2.csv', userCsv('Two', 'B', 0));
    const other = await db.pool.connect();
    try {
      await other.query('SELECT pg_advisory_lock(7330104)');
      expect((await notify(svc, [created(svc, '2.csv')])).status).toBe(202);
      // Recorded before the answer, whoever processes it.
      expect(await pending()).toBe(1);
      expect(await runs(svc)).toEqual([]);
    } finally {
      await other.query('SELECT pg_advisory_unlock(7330104)');
      other.release();
    }
    await waitFor('user 2 in output.csv', async () => (await readText(backend, svc.resBucket, 'output.csv').catch(() => '')).includes('Two'));
    expect(await pending()).toBe(0);
  });

  it('a run asked for while another instance runs a batch of events starts at once, beside it, instead of joining it', async () => {
    const svc = await start({});
    await put(backend, svc.srcBucket, 'noevent.csv', userCsv('No', 'Event', 0));
    // Another instance's event batch, as far as the lock and the history go.
    const other = await db.pool.connect();
    try {
      await other.query('SELECT pg_advisory_lock(7330104)');
      const { rows } = await other.query<{ id: number }>(`INSERT INTO runs (trigger, host) VALUES ('event', 'elsewhere') RETURNING id`);
      const run = (await (await svc.post('/data?wait=true')).json()) as Run;
      expect(run).toMatchObject({ trigger: 'http', status: 'succeeded', counts: { new: 1 } });
      expect(run.id).not.toBe(rows[0]!.id);
      // The event run goes on: a run does not take it for a stale one.
      expect((await other.query('SELECT status FROM runs WHERE id = $1', [rows[0]!.id])).rows).toEqual([{ status: 'running' }]);
    } finally {
      await other.query('SELECT pg_advisory_unlock(7330104)');
      other.release();
    }
    expect(await userOf(svc, 'noevent')).toBeDefined();
  });

  it('rewrites an output.csv that failed to be written, and a failed batch leaves the run it continued as it was', async () => {
    let observed!: ObservedStore;
    const svc = await start({ EXPORT_INTERVAL: '0' }, { wrapStore: (s) => (observed = new ObservedStore(s)) });
    await put(backend, svc.srcBucket, '1.csv', userCsv('One', 'A', 0));
    await notify(svc, [created(svc, '1.csv')]);
    await waitFor('output.csv with user 1', async () => (await readText(backend, svc.resBucket, 'output.csv').catch(() => '')).includes('One'));
    await waitFor('the first batch to finish', async () => (await runs(svc))[0]?.status === 'succeeded');

    observed.failWrites = new Error('the store refuses writes');
    await put(backend, svc.srcBucket, '2.csv', userCsv('Two', 'B', 0));
    await notify(svc, [created(svc, '2.csv')]);
    const failed = await waitFor('a failed batch', async () => (await runs(svc)).find((r) => r.status === 'failed'));
    expect(failed.trigger).toBe('event');
    // The run the batch continued keeps its success, with what the batch committed.
    const first = (await runs(svc)).find((r) => r.id !== failed.id)!;
    expect(first).toMatchObject({ status: 'succeeded', output_written: true, counts: { new: 2 } });
    expect(await userOf(svc, '2')).toBeDefined();

    // No new event: output.csv lags, and that alone gets it written once the store takes writes.
    observed.failWrites = null;
    await waitFor('output.csv with user 2', async () => (await readText(backend, svc.resBucket, 'output.csv')).includes('Two'));
  });

  if (_name === 'folder') {
    it('watches the folder: files dropped in, in new folders too, show up in GET /data, and a removed photo goes', async () => {
      const svc = await start({ WATCH: 'true', EXPORT_INTERVAL: '0' });
      const src = path.join(backend.env.STORE_DIR!, svc.srcBucket);
      await fs.writeFile(path.join(src, '11.csv'), userCsv('Cy', 'Dee', 0));
      await fs.writeFile(path.join(src, '11.png'), await makeImage('png'));
      await waitFor('user 11 with a photo', async () => (await userOf(svc, '11'))?.img_path ?? undefined);

      // A folder made after the watch started, with a file in it at once, and a deeper one later.
      await fs.mkdir(path.join(src, 'team', 'a'), { recursive: true });
      await fs.writeFile(path.join(src, 'team', 'a', '12.csv'), userCsv('Di', 'Ek', 0));
      await waitFor('user 12', () => userOf(svc, '12'));
      await fs.mkdir(path.join(src, 'team', 'a', 'b'));
      await fs.writeFile(path.join(src, 'team', 'a', 'b', '13.csv'), userCsv('Ed', 'Fo', 0));
      await waitFor('user 13', () => userOf(svc, '13'));

      // A folder removed and made again is watched again; one moved away and back, too.
      await fs.rm(path.join(src, 'team'), { recursive: true });
      await fs.mkdir(path.join(src, 'team'));
      await fs.writeFile(path.join(src, 'team', '14.csv'), userCsv('Fa', 'Ge', 0));
      await waitFor('user 14', () => userOf(svc, '14'));
      const away = path.join(backend.env.STORE_DIR!, 'away');
      await fs.rename(path.join(src, 'team'), away);
      await fs.mkdir(path.join(src, 'team'));
      await fs.writeFile(path.join(src, 'team', '15.csv'), userCsv('Gi', 'Ho', 0));
      await waitFor('user 15', () => userOf(svc, '15'));

      // A link to a folder is not followed, by the watch or by an event naming a key through it.
      await fs.mkdir(path.join(backend.env.STORE_DIR!, 'outside'));
      await fs.writeFile(path.join(backend.env.STORE_DIR!, 'outside', '16.csv'), userCsv('Hu', 'Io', 0));
      await fs.symlink(path.join(backend.env.STORE_DIR!, 'outside'), path.join(src, 'lnk'));
      await notify(svc, [created(svc, 'lnk/16.csv')]);
      // A link as a file is reported with its reason, as the listing would.
      await fs.symlink(path.join(backend.env.STORE_DIR!, 'outside', '16.csv'), path.join(src, '17.csv'));
      const linked = await waitFor('the link to be reported', async () => {
        const [latest] = await runs(svc);
        const run = latest && ((await (await svc.get(`/runs/${latest.id}`)).json()) as { rejected: Array<{ key: string; reason: string }> });
        return run?.rejected.find((i) => i.key === '17.csv');
      });
      expect(linked.reason).toMatch(/symbolic link/);

      await fs.rm(path.join(src, '11.png'));
      await waitFor('the photo of 11 to go', async () => (await userOf(svc, '11'))?.img_path === null);
      await waitFor('output.csv with user 13', async () => (await readText(backend, svc.resBucket, 'output.csv')).includes('Ed'));
      expect((await runs(svc)).every((r) => r.trigger === 'event')).toBe(true);
      await waitFor('the events to be processed', async () => (await pending()) === 0);
      expect(await userOf(svc, '16')).toBeUndefined();
    });
  } else {
    it('with S3_NOTIFY_ARN (or MINIO_NOTIFY_ARN), sets the bucket notification at start, and a server that refuses it does not stop the service', async () => {
      const { log, messages } = recordingLogger();
      // s3rver has no bucket notifications, and radosgw takes no queue (MalformedXML): the
      // service says so and serves anyway. The former name of the variable still works.
      const svc = await start({ MINIO_NOTIFY_ARN: 'arn:minio:sqs::userjoin:webhook' }, { log });
      expect(messages()).toContain("could not set the bucket notifications; check S3_NOTIFY_ARN and the server's webhook target or topic");
      expect((await svc.get('/health')).status).toBe(200);
    });
  }
  if (_name === 'radosgw') {
    it('with S3_NOTIFY_ARN naming an SNS topic, sets a TopicConfiguration with an Id at start, as radosgw requires', async () => {
      const { log, messages } = recordingLogger();
      const { accessKey, secretKey } = backend.config as { accessKey: string; secretKey: string };
      const arn = await createTopic(backend.radosgw!, { accessKey, secretKey }, 'userjoin-events', {
        'push-endpoint': 'http://127.0.0.1:9/events/s3',
      });
      expect(arn).toMatch(/^arn:aws:sns:[^:]*:[^:]*:userjoin-events$/);
      const svc = await start({ S3_NOTIFY_ARN: arn }, { log });
      expect(messages()).toContain('bucket notifications set');
      expect(await bucketNotificationXml(backend, svc.srcBucket)).toContain(
        `<TopicConfiguration><Id>userjoin</Id><Topic>${arn}</Topic><Event>s3:ObjectCreated:*</Event><Event>s3:ObjectRemoved:*</Event></TopicConfiguration>`,
      );
    });
  }
});
