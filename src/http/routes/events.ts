import { z } from 'zod';
import type { EventIntake } from '../../triggers/eventIntake.js';
import type { EventOutcome } from '../../metrics.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';

// MinIO sends one record per request; AWS-style senders may batch a few. Far above both.
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_RECORDS = 10_000;

/** The fields of an S3 event record that matter here; others are allowed and ignored. */
const s3Record = z.looseObject({
  eventName: z.string(),
  s3: z.looseObject({
    bucket: z.looseObject({ name: z.string() }),
    object: z.looseObject({ key: z.string(), size: z.number().optional(), eTag: z.string().optional() }),
  }),
});

const notificationBody = z
  .looseObject({
    EventName: z.string().optional(),
    Key: z.string().optional(),
    Records: z
      .array(z.unknown())
      .max(MAX_RECORDS)
      .meta({
        description:
          'S3 event records. Used: eventName (s3:ObjectCreated:* or s3:ObjectRemoved:*), s3.bucket.name and s3.object.key ' +
          '(URL-encoded, as S3 sends it). A record without them is counted as unparsable and ignored.',
      }),
  })
  .meta({ id: 'S3EventNotification' });

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
  // MinIO says "s3:ObjectCreated:Put", AWS "ObjectCreated:Put".
  const name = r.data.eventName.replace(/^s3:/, '');
  if (!name.startsWith('ObjectCreated:') && !name.startsWith('ObjectRemoved:')) return { ignored: 'other_event' };
  if (r.data.s3.bucket.name !== srcBucket) return { ignored: 'other_bucket' };
  try {
    // Form encoding, as S3 event keys come: a space is "+", a "+" is "%2B".
    return { key: decodeURIComponent(r.data.s3.object.key.replace(/\+/g, ' ')) };
  } catch {
    return { ignored: 'unparsable' };
  }
}

export function eventOperations(events: EventIntake, srcBucket: string): Operation[] {
  return [
    operation({
      method: 'post',
      path: '/events/s3',
      operationId: 's3Events',
      tag: 'events',
      summary: 'Bucket notifications (MinIO webhook, S3 event JSON): process the objects they name within about a second',
      description:
        'Point a MinIO webhook target (MINIO_NOTIFY_WEBHOOK_ENDPOINT_<ID>) here, with auth_token set to EVENTS_TOKEN or API_TOKEN. ' +
        'Keys are recorded in PostgreSQL before the 202, then looked up and processed. Records for another bucket, ' +
        'for keys that are not user files, or that do not parse are counted and ignored.',
      access: 'events',
      body: { schema: notificationBody, maxBytes: MAX_BODY_BYTES, description: 'An S3 event notification, as MinIO sends it' },
      responses: { 202: { description: 'Recorded; processing follows', json: eventsAnswer } },
      handler: async (ctx, { body }) => {
        const keys: string[] = [];
        const ignored: Partial<Record<EventOutcome, number>> = {};
        for (const record of body.Records) {
          const r = readRecord(record, srcBucket);
          if ('key' in r) keys.push(r.key);
          else ignored[r.ignored] = (ignored[r.ignored] ?? 0) + 1;
        }
        const counts = await events.accept('s3', keys, ignored);
        ctx.status = 202;
        ctx.body = {
          received: body.Records.length,
          recorded: counts.accepted ?? 0,
          outcomes: Object.fromEntries(outcomes.map((o) => [o, counts[o] ?? 0])) as Record<EventOutcome, number>,
        } satisfies z.output<typeof eventsAnswer>;
      },
    }),
  ];
}
