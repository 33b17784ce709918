import { z } from 'zod';
import type { EventIntake } from '../../triggers/eventIntake.js';
import type { Logger } from '../../log.js';
import type { EventOutcome } from '../../metrics.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { HttpError } from '../errors.js';

// MinIO sends one record per request; AWS-style senders may batch a few. Far above both.
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_RECORDS = 10_000;

// How a sender spells s3.object.key. AWS documents it URL-encoded, as a form is (a space is
// "+", a "+" is "%2B"), and MinIO does the same; Ceph radosgw sends the key as it is. The key
// cannot tell which: "a+b%20.csv" is a valid key either way. The record's eventSource does:
// "ceph:s3" is raw, and any other sender, or none, is taken to follow AWS's format, which its
// records copy. A raw key from an unknown sender is then unparsable or names another key, which
// is only looked up again; the scheduled run finds the change either way.
const RAW_KEY_SOURCES = new Set(['ceph:s3']);

/** The fields of an S3 event record that matter here; others are allowed and ignored. */
const s3Record = z.looseObject({
  eventName: z.string(),
  eventSource: z.string().optional(),
  s3: z.looseObject({
    bucket: z.looseObject({ name: z.string() }),
    object: z.looseObject({ key: z.string(), size: z.number().optional(), eTag: z.string().optional() }),
  }),
});

const s3Notification = z
  .looseObject({
    EventName: z.string().optional(),
    Key: z.string().optional(),
    Records: z
      .array(z.unknown())
      .max(MAX_RECORDS)
      .meta({
        description:
          'S3 event records. Used: eventName (ObjectCreated:* or ObjectRemoved:*, with or without "s3:"), s3.bucket.name, ' +
          's3.object.key and eventSource. The key is taken as eventSource says it is sent: raw from Ceph radosgw ("ceph:s3"), ' +
          'URL-encoded (form encoding) from any other sender or none, as AWS ("aws:s3") and MinIO ("minio:s3") send it. ' +
          'A record without them is counted as unparsable and ignored.',
      }),
  })
  .meta({ id: 'S3EventNotification' });

/** What AWS S3 sends once through a destination it was given; nothing to do. */
const s3TestEvent = z.looseObject({ Event: z.literal('s3:TestEvent') });
const snsPayload = z.union([s3Notification, s3TestEvent]);

// AWS S3 reaches a webhook only through an SNS topic, whose HTTP(S) subscription wraps each
// S3 event in one of these. The token guards it as any body; its signature is not checked.
const snsMessage = z
  .looseObject({
    Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
    Message: z.string().meta({ description: 'For a Notification: an S3EventNotification (or S3\'s test event), as JSON text' }),
    TopicArn: z.string().optional(),
    SubscribeURL: z.string().optional(),
  })
  .meta({ id: 'SnsMessage', description: 'An Amazon SNS message, as an HTTP(S) subscription delivers it' });

// S3's test event comes bare too, through an SNS subscription with raw message delivery.
const notificationBody = z.union([s3Notification, snsMessage, s3TestEvent]);

const outcomes = ['accepted', 'other_bucket', 'not_user_file', 'refused_key', 'other_event', 'unparsable'] as const satisfies readonly EventOutcome[];

const eventsAnswer = z
  .object({
    received: z.int().min(0).meta({ description: 'Records in the request' }),
    recorded: z.int().min(0).meta({ description: 'Records whose key was recorded for processing (durably, before this answer)' }),
    outcomes: z
      .object(Object.fromEntries(outcomes.map((o) => [o, z.int().min(0)])) as Record<EventOutcome, z.ZodInt>)
      .meta({ description: 'What became of each record: accepted, or why it was ignored' }),
  })
  .meta({ id: 'EventsAccepted' });

/**
 * What to look at for one record: its key in the source bucket, or why it is ignored. Only
 * creations and removals matter, and either only says "look at this key again".
 */
export function readRecord(record: unknown, srcBucket: string): { key: string } | { ignored: EventOutcome } {
  const r = s3Record.safeParse(record);
  if (!r.success) return { ignored: 'unparsable' };
  // MinIO says "s3:ObjectCreated:Put", AWS and radosgw "ObjectCreated:Put".
  const name = r.data.eventName.replace(/^s3:/, '');
  if (!name.startsWith('ObjectCreated:') && !name.startsWith('ObjectRemoved:')) return { ignored: 'other_event' };
  if (r.data.s3.bucket.name !== srcBucket) return { ignored: 'other_bucket' };
  const key = r.data.s3.object.key;
  if (RAW_KEY_SOURCES.has(r.data.eventSource ?? '')) return { key };
  try {
    return { key: decodeURIComponent(key.replace(/\+/g, ' ')) };
  } catch {
    return { ignored: 'unparsable' };
  }
}

/**
 * The S3 records a body carries: its own, or those of the S3 event an SNS notification wraps.
 * SNS's other messages carry none; a subscription waiting for confirmation is logged for the
 * operator, since fetching a URL a request names is not this service's to do.
 */
function recordsOf(body: z.output<typeof notificationBody>, log: Logger): unknown[] {
  const direct = s3Notification.safeParse(body);
  if (direct.success) return direct.data.Records;
  if (s3TestEvent.safeParse(body).success) return [];
  const sns = snsMessage.parse(body);
  if (sns.Type === 'SubscriptionConfirmation') {
    log.warn(
      { topicArn: sns.TopicArn, subscribeUrl: sns.SubscribeURL },
      'an SNS subscription to POST /events/s3 waits for confirmation: open its SubscribeURL once, or run aws sns confirm-subscription',
    );
    return [];
  }
  if (sns.Type === 'UnsubscribeConfirmation') {
    log.info({ topicArn: sns.TopicArn }, 'an SNS subscription to POST /events/s3 was removed');
    return [];
  }
  let message: unknown;
  try {
    message = JSON.parse(sns.Message);
  } catch {
    throw new HttpError(400, 'invalid_body', 'Message: the SNS notification does not carry JSON');
  }
  const inner = snsPayload.safeParse(message);
  if (!inner.success) throw new HttpError(400, 'invalid_body', 'Message: the SNS notification does not carry an S3 event notification');
  const records: unknown = inner.data.Records;
  return Array.isArray(records) ? records : [];
}

/** What bounds the webhook: bodies at once (EVENT_WEBHOOK_CONCURRENCY), told to metrics as they change. */
export interface WebhookLimits {
  concurrency: number;
  onInFlight(n: number): void;
}

// What a refused sender is told to wait: a busy webhook frees up in moments, a full backlog
// takes batches to drain. MinIO retries from its queue either way.
const BUSY_RETRY_SECONDS = 1;
const BACKLOG_RETRY_SECONDS = 30;

/**
 * At most `concurrency` bodies are read and recorded at once, so bodies in memory are bounded
 * (concurrency x MAX_BODY_BYTES) and so are the pooled connections the webhook holds (one each):
 * a flood cannot starve GET /data or the runs. Past that, or past the backlog limit, a request
 * gets 503 with Retry-After before its body is read, and nothing of it is recorded.
 */
function webhookAdmission(events: EventIntake, limits: WebhookLimits): () => Promise<() => void> {
  let inFlight = 0;
  const leave = () => limits.onInFlight(--inFlight);
  return async () => {
    if (inFlight >= limits.concurrency) {
      throw new HttpError(503, 'events_busy', `${limits.concurrency} event bodies are being recorded already; try again shortly`, { 'Retry-After': String(BUSY_RETRY_SECONDS) });
    }
    limits.onInFlight(++inFlight);
    let full: boolean;
    try {
      full = await events.backlogFull();
    } catch (err) {
      leave();
      throw err;
    }
    if (full) {
      leave();
      throw new HttpError(503, 'event_backlog_full', 'too many events wait to be processed (EVENT_BACKLOG_LIMIT); try again later', {
        'Retry-After': String(BACKLOG_RETRY_SECONDS),
      });
    }
    return leave;
  };
}

export function eventOperations(events: EventIntake, srcBucket: string, log: Logger, limits: WebhookLimits): Operation[] {
  return [
    operation({
      method: 'post',
      path: '/events/s3',
      operationId: 's3Events',
      tag: 'events',
      summary: 'Bucket notifications (S3 event JSON from MinIO, Ceph radosgw, or AWS through SNS): process the objects they name within about a second',
      description:
        'Point a MinIO webhook target (MINIO_NOTIFY_WEBHOOK_ENDPOINT_<ID>) here, with auth_token set to EVENTS_TOKEN or API_TOKEN; ' +
        'or a radosgw topic whose push-endpoint is https://<any user>:<token>@host/events/s3 (radosgw sends only Basic); or an ' +
        'HTTPS subscription of the SNS topic an AWS S3 bucket notifies, with the token in the URL likewise. SNS messages are ' +
        'unwrapped; a subscription confirmation is logged with its SubscribeURL for the operator to open, never fetched. ' +
        'Keys are decoded as their sender encodes them (see Records). They are recorded in PostgreSQL before the 202, then ' +
        'looked up and processed. Records for another bucket, for keys that are not user files, or that do not parse are ' +
        'counted and ignored. 503 with Retry-After, before the body is read and with nothing recorded: events_busy when ' +
        'EVENT_WEBHOOK_CONCURRENCY bodies are in flight, event_backlog_full when EVENT_BACKLOG_LIMIT keys wait to be processed.',
      access: 'events',
      admit: webhookAdmission(events, limits),
      body: { schema: notificationBody, maxBytes: MAX_BODY_BYTES, description: 'An S3 event notification, or an SNS message wrapping one' },
      responses: { 202: { description: 'Recorded; processing follows', json: eventsAnswer } },
      handler: async (ctx, { body }) => {
        const records = recordsOf(body, log);
        const keys: string[] = [];
        const ignored: Partial<Record<EventOutcome, number>> = {};
        for (const record of records) {
          const r = readRecord(record, srcBucket);
          if ('key' in r) keys.push(r.key);
          else ignored[r.ignored] = (ignored[r.ignored] ?? 0) + 1;
        }
        const counts = await events.accept('s3', keys, ignored);
        ctx.status = 202;
        ctx.body = {
          received: records.length,
          recorded: counts.accepted ?? 0,
          outcomes: Object.fromEntries(outcomes.map((o) => [o, counts[o] ?? 0])) as Record<EventOutcome, number>,
        } satisfies z.output<typeof eventsAnswer>;
      },
    }),
  ];
}
