import path from 'node:path';
import cron from 'node-cron';
import { z } from 'zod';
import { isLoopbackHost } from './loopback.js';
import type { RetryPolicy } from './storage/retryPolicy.js';
import { DEFAULT_RETRY_POLICY } from './storage/retryPolicy.js';

/** Where objects live: a plain folder (embedded default) or any S3-compatible server. */
export type StoreConfig =
  | { kind: 'folder'; dir: string }
  | {
      kind: 's3';
      endPoint: string;
      port: number;
      useSSL: boolean;
      accessKey: string;
      secretKey: string;
      region: string;
    };

export type DatabaseConfig =
  | { kind: 'url'; url: string }
  | { kind: 'embedded'; dataDir: string; port: number };

export interface Limits {
  maxCsvBytes: number;
  maxImageBytes: number;
  maxImagePixels: number;
  /** Reading one object, and decoding one image, must finish within this. */
  objectTimeoutMs: number;
}

export interface Config {
  store: StoreConfig;
  /** How an S3 request that fails for a transient reason is tried again. */
  storeRetry: RetryPolicy;
  srcBucket: string;
  resBucket: string;
  db: DatabaseConfig;
  limits: Limits;
  /** How many objects are read and checked at once. */
  readConcurrency: number;
  /** Users per database transaction; each batch is durable on its own. */
  batchSize: number;
  http: {
    host: string;
    port: number;
    apiToken: string | null;
    /** METRICS_TOKEN: a second token that GET /metrics accepts besides API_TOKEN, and nothing else. */
    metricsToken: string | null;
    /** HOST is localhost, 127.0.0.0/8 or ::1: only this machine can connect. */
    loopback: boolean;
    /** INSECURE_ALLOW_NO_TOKEN: the operator accepts an open service beyond loopback. */
    allowNoToken: boolean;
    /** Per client address: after this many wrong tokens within the window, token-guarded routes answer 429 until it ends. */
    authFailures: { limit: number; windowMs: number };
    /** TRUST_PROXY: the client address is the last X-Forwarded-For entry (the one the proxy in front added). */
    trustProxy: boolean;
  };
  /** PostgreSQL statement_timeout for every pooled connection, in ms. */
  dbStatementTimeoutMs: number;
  /** node-cron expression, or null when scheduling is off. */
  schedule: string | null;
  events: EventsConfig;
  /**
   * How a run's work items are carried out (by this process, or by every replica), and how
   * large one may be: at most maxObjects objects and maxBytes of listed sizes, however many
   * objects one user has.
   */
  work: { queue: 'local' | 'pgboss'; leaseSeconds: number; maxObjects: number; maxBytes: number };
  /** RUN_ISSUES_LIMIT: rejected files and warnings recorded per run; the rest are only counted. */
  runIssuesLimit: number;
  /** CSV_NEUTRALIZE_FORMULAS: text cells of output.csv and GET /data?format=csv that a spreadsheet would run get a leading '. */
  csvNeutralizeFormulas: boolean;
  /** ON_SOURCE_DELETE: erase a user whose last CSV went from the source bucket, or keep it. */
  onSourceDelete: 'keep' | 'erase';
  logLevel: string;
}

/** Event-driven ingestion: bucket notifications (POST /events/s3) and the folder watch. */
export interface EventsConfig {
  /** EVENTS_TOKEN: a second token that POST /events/s3 accepts besides API_TOKEN. */
  token: string | null;
  /** The folder store watches the source bucket's folder (WATCH). */
  watch: boolean;
  /** S3_NOTIFY_ARN (or MINIO_NOTIFY_ARN): where the service points the source bucket's notifications, at start. */
  notifyTarget: NotifyTarget | null;
  /** output.csv is rewritten after event batches at most this often (EXPORT_INTERVAL). */
  exportIntervalMs: number;
  /** How often every instance looks for events another instance recorded. */
  pollMs: number;
  /** Keys per event batch: half the oldest pending, half the newest (see takePendingEvents). */
  maxKeys: number;
  /** EVENT_BACKLOG_LIMIT: past this many pending keys, the webhook answers 503 and the folder watch drops keys. */
  backlogLimit: number;
  /** EVENT_WEBHOOK_CONCURRENCY: webhook bodies read and recorded at once; more get 503 before their body is read. */
  webhookConcurrency: number;
  /** Event batches within this window share one run in the history. */
  coalesceMs: number;
}

/**
 * A notification target on the S3 server. MinIO names its webhook targets as queues
 * (arn:minio:sqs::<ID>:webhook); Ceph radosgw and AWS send to SNS topics
 * (arn:aws:sns:<zonegroup or region>:<tenant or account>:<topic>).
 */
export interface NotifyTarget {
  kind: 'queue' | 'topic';
  arn: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const MiB = 1024 * 1024;

// S3 naming rules, applied to the folder store too so a setup moves between backends unchanged.
const bucketName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be 3-63 characters: lowercase letters, digits, dots, hyphens');

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

// Sent as "Authorization: Bearer <token>": the token ends at a space, and a header is not UTF-8.
const token = () => optionalText.pipe(z.string().regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces, or no request could send it').optional());

const envSchema = z.object({
  MINIO_ENDPOINT: optionalText.pipe(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://127.0.0.1:9000' }).optional()),
  MINIO_ACCESS_KEY: optionalText,
  MINIO_SECRET_KEY: optionalText,
  MINIO_REGION: z.string().min(1).default('us-east-1'),
  STORE_DIR: z.string().min(1).default('./minio'),
  SRC_BUCKET: bucketName.default('src'),
  RES_BUCKET: bucketName.default('res'),
  // An S3 request that fails for a transient reason (SlowDown, 5xx, a reset, a cut answer, a
  // timeout) is tried again, after a random wait that doubles each time, within a total time.
  STORE_RETRIES: z.coerce.number().int().min(0).max(100).default(DEFAULT_RETRY_POLICY.retries),
  STORE_RETRY_BASE_MS: z.coerce.number().int().min(1).max(60_000).default(DEFAULT_RETRY_POLICY.baseDelayMs),
  STORE_RETRY_MAX_MS: z.coerce.number().int().min(0).max(3_600_000).default(DEFAULT_RETRY_POLICY.maxTotalMs),
  STORE_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1).max(3_600_000).default(DEFAULT_RETRY_POLICY.requestTimeoutMs),
  DATABASE_URL: optionalText.pipe(
    z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// or postgresql:// URL' }).optional(),
  ),
  PGDATA_DIR: z.string().min(1).default('./postgres-data'),
  // 0 picks a free port at start, so the embedded server never collides with a local PostgreSQL.
  EMBEDDED_PG_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  MAX_CSV_BYTES: positiveInt(1 * MiB),
  // Images are held in memory while sharp checks them; with READ_CONCURRENCY this bounds memory.
  MAX_IMAGE_BYTES: positiveInt(32 * MiB),
  // Decompression-bomb guard: compared with the pixel count the header declares, before decoding.
  MAX_IMAGE_PIXELS: positiveInt(50_000_000),
  // One object that never finishes (a stalled server, a pathological image) must not hang a run.
  OBJECT_TIMEOUT_MS: positiveInt(60_000),
  READ_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  BATCH_SIZE: z.coerce.number().int().min(1).max(50_000).default(1000),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  API_TOKEN: token(),
  // MinIO sends its webhook auth_token as "Authorization: Bearer <token>"; this one opens only POST /events/s3.
  EVENTS_TOKEN: token(),
  // For Prometheus: opens only GET /metrics, so the scraper never holds a token to personal data.
  METRICS_TOKEN: token(),
  INSECURE_ALLOW_NO_TOKEN: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  // Guessing a token: each client address gets this many wrong ones per window.
  AUTH_FAILURE_LIMIT: z.coerce.number().int().min(1).max(1_000_000).default(10),
  AUTH_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  // Behind a reverse proxy every client shares its address: trust the entry it adds to X-Forwarded-For.
  TRUST_PROXY: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  // Bounds any one query, so a runaway statement cannot hold a connection (and its locks) forever.
  DB_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(1).max(2_147_483_647).default(60_000),
  SCHEDULE: z
    .string()
    .default('*/15 * * * *')
    .transform((v) => v.trim())
    .refine((v) => v.toLowerCase() === 'off' || cron.validate(v), { error: (i) => `"${String(i.input)}" is not a valid cron expression (or "off")` }),
  // pgboss: every replica sharing the database takes a full run's work items (pg-boss 10.x).
  WORK_QUEUE: z.enum(['local', 'pgboss'], { error: 'must be local or pgboss' }).default('local'),
  // A replica killed with an item in hand: another takes it this long after.
  ITEM_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
  // One user may have thousands of objects: an item is cut at these too, so a job stays small
  // (pg-boss jsonb) and is read and committed well within its lease, whoever's objects it holds.
  ITEM_MAX_OBJECTS: z.coerce.number().int().min(1).max(50_000).default(1000),
  ITEM_MAX_BYTES: z.coerce.number().int().min(1).default(256 * MiB),
  // A hostile bucket can make millions of issues; the run records this many and counts the rest.
  RUN_ISSUES_LIMIT: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
  WATCH: z.enum(['true', 'false'], { error: 'must be true or false' }).default('true'),
  S3_NOTIFY_ARN: optionalText,
  // The name S3_NOTIFY_ARN had when only MinIO's queue targets were set up.
  MINIO_NOTIFY_ARN: optionalText,
  // A flood of events must not grow pending_events (and the WAL) without end; the reconcile catches what is refused.
  // A pending key costs at most about 1 KB: 250,000 is a few hundred MB at worst, and holds a
  // flood of 150,000 forged keys with room for real files' events.
  EVENT_BACKLOG_LIMIT: z.coerce.number().int().min(1).max(100_000_000).default(250_000),
  // Bodies of up to 1 MiB each, and at most one pooled connection each: at most 8 of the pool's
  // 16, so the webhook cannot starve the API or runs.
  EVENT_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(8).default(4),
  // Seconds. Each export rewrites the whole file, so a stream of events must not rewrite it each time.
  EXPORT_INTERVAL: z.coerce.number().min(0).max(86_400).default(10),
  // A cell such as =HYPERLINK(...) would run in the spreadsheet of whoever opens the file; off for exact bytes.
  CSV_NEUTRALIZE_FORMULAS: z.enum(['true', 'false'], { error: 'must be true or false' }).default('true'),
  // keep: a CSV missing from the bucket is as often a sync gone wrong as a wish to forget.
  ON_SOURCE_DELETE: z.enum(['keep', 'erase'], { error: 'must be keep or erase' }).default('keep'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** Tokens reachable from the network must resist guessing, even under INSECURE_ALLOW_NO_TOKEN. */
export const MIN_EXPOSED_TOKEN_LENGTH = 32;

/**
 * The service's token rules. Exposed (npm start beyond loopback), a token must have at least
 * MIN_EXPOSED_TOKEN_LENGTH characters. The tokens must differ: otherwise the events token,
 * which sits in the S3 server's notification setup, or the metrics token, which the scraper
 * holds, would open more than its one route.
 */
function tokenProblems(e: { API_TOKEN?: string; EVENTS_TOKEN?: string; METRICS_TOKEN?: string }, exposed: boolean, host: string): string[] {
  const problems: string[] = [];
  const apiToken = e.API_TOKEN;
  for (const [name, value] of [['API_TOKEN', apiToken], ['EVENTS_TOKEN', e.EVENTS_TOKEN], ['METRICS_TOKEN', e.METRICS_TOKEN]] as const) {
    if (exposed && value !== undefined && value.length < MIN_EXPOSED_TOKEN_LENGTH) {
      problems.push(
        `  ${name}: has ${value.length} characters; at least ${MIN_EXPOSED_TOKEN_LENGTH} are required when HOST (${host}) is not a loopback address,` +
          ' so that it cannot be guessed (for example: openssl rand -hex 32)',
      );
    }
  }
  if (apiToken !== undefined && apiToken === e.EVENTS_TOKEN) {
    problems.push('  EVENTS_TOKEN: must differ from API_TOKEN; the events token opens only POST /events/s3, API_TOKEN opens everything');
  }
  if (e.METRICS_TOKEN !== undefined && (e.METRICS_TOKEN === apiToken || e.METRICS_TOKEN === e.EVENTS_TOKEN)) {
    problems.push('  METRICS_TOKEN: must differ from API_TOKEN and EVENTS_TOKEN; the metrics token opens only GET /metrics');
  }
  return problems;
}

// Compose files and .env templates pass `VAR=` for "not set"; treat it as unset everywhere.
function withoutEmpty(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') out[key] = value;
  }
  return out;
}

/** Every variable userjoin reads, with its default as text (undefined: no default). */
export function configDefaults(): Record<string, string | undefined> {
  const defaults = envSchema.parse({}) as Record<string, string | number | undefined>;
  return Object.fromEntries(Object.keys(envSchema.shape).map((key) => [key, defaults[key]?.toString()]));
}

export interface LoadOptions {
  /**
   * For the HTTP service (`npm start`): also require API_TOKEN when HOST is not loopback, long
   * tokens there, and two different tokens. The CLI does not listen, so it leaves this off.
   */
  service?: boolean;
}

/**
 * Validates the environment once, at start. Every problem is reported together so an
 * operator fixes the configuration in one pass.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env, opts: LoadOptions = {}): Config {
  const parsed = envSchema.safeParse(withoutEmpty(env));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const problems: string[] = [];

  let store: StoreConfig;
  if (e.MINIO_ENDPOINT) {
    if (!e.MINIO_ACCESS_KEY || !e.MINIO_SECRET_KEY) {
      problems.push('  MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required when MINIO_ENDPOINT is set');
    }
    const url = new URL(e.MINIO_ENDPOINT);
    const useSSL = url.protocol === 'https:';
    store = {
      kind: 's3',
      endPoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      accessKey: e.MINIO_ACCESS_KEY ?? '',
      secretKey: e.MINIO_SECRET_KEY ?? '',
      region: e.MINIO_REGION,
    };
  } else {
    store = { kind: 'folder', dir: path.resolve(e.STORE_DIR) };
  }
  if (e.SRC_BUCKET === e.RES_BUCKET) problems.push('  SRC_BUCKET and RES_BUCKET must differ');

  const schedule = e.SCHEDULE.toLowerCase() === 'off' ? null : e.SCHEDULE;

  const loopback = isLoopbackHost(e.HOST);
  const allowNoToken = e.INSECURE_ALLOW_NO_TOKEN === 'true';
  if (opts.service && !loopback && !e.API_TOKEN && !allowNoToken) {
    problems.push(
      `  API_TOKEN: required when HOST (${e.HOST}) is not a loopback address, because the API serves personal data;` +
        ' set API_TOKEN, or listen on 127.0.0.1, or set INSECURE_ALLOW_NO_TOKEN=true to serve without authentication',
    );
  }
  if (opts.service) problems.push(...tokenProblems(e, !loopback, e.HOST));

  const notifyArn = e.S3_NOTIFY_ARN ?? e.MINIO_NOTIFY_ARN;
  if (e.S3_NOTIFY_ARN && e.MINIO_NOTIFY_ARN && e.S3_NOTIFY_ARN !== e.MINIO_NOTIFY_ARN) {
    problems.push('  S3_NOTIFY_ARN and MINIO_NOTIFY_ARN (its former name) are both set, to different targets; set S3_NOTIFY_ARN only');
  }
  const notifyKind = notifyArn && /^arn:[^:]+:(sqs|sns):/.exec(notifyArn)?.[1];
  if (notifyArn && !notifyKind) {
    problems.push(
      `  ${e.S3_NOTIFY_ARN ? 'S3_NOTIFY_ARN' : 'MINIO_NOTIFY_ARN'}: "${notifyArn}" is neither a queue ARN (MinIO: arn:minio:sqs::<ID>:webhook) nor an SNS topic ARN ` +
        '(radosgw, AWS: arn:aws:sns:<zonegroup>:<tenant>:<topic>)',
    );
  }

  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);

  return {
    store,
    storeRetry: {
      retries: e.STORE_RETRIES,
      baseDelayMs: e.STORE_RETRY_BASE_MS,
      maxTotalMs: e.STORE_RETRY_MAX_MS,
      requestTimeoutMs: e.STORE_REQUEST_TIMEOUT_MS,
    },
    srcBucket: e.SRC_BUCKET,
    resBucket: e.RES_BUCKET,
    db: e.DATABASE_URL
      ? { kind: 'url', url: e.DATABASE_URL }
      : { kind: 'embedded', dataDir: path.resolve(e.PGDATA_DIR), port: e.EMBEDDED_PG_PORT },
    limits: { maxCsvBytes: e.MAX_CSV_BYTES, maxImageBytes: e.MAX_IMAGE_BYTES, maxImagePixels: e.MAX_IMAGE_PIXELS, objectTimeoutMs: e.OBJECT_TIMEOUT_MS },
    readConcurrency: e.READ_CONCURRENCY,
    batchSize: e.BATCH_SIZE,
    http: {
      host: e.HOST,
      port: e.PORT,
      apiToken: e.API_TOKEN ?? null,
      metricsToken: e.METRICS_TOKEN ?? null,
      loopback,
      allowNoToken,
      authFailures: { limit: e.AUTH_FAILURE_LIMIT, windowMs: e.AUTH_FAILURE_WINDOW_SECONDS * 1000 },
      trustProxy: e.TRUST_PROXY === 'true',
    },
    dbStatementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
    schedule,
    events: {
      token: e.EVENTS_TOKEN ?? null,
      watch: e.WATCH === 'true',
      notifyTarget: notifyArn && notifyKind ? { kind: notifyKind === 'sqs' ? 'queue' : 'topic', arn: notifyArn } : null,
      exportIntervalMs: Math.round(e.EXPORT_INTERVAL * 1000),
      pollMs: 1000,
      maxKeys: 1000,
      backlogLimit: e.EVENT_BACKLOG_LIMIT,
      webhookConcurrency: e.EVENT_WEBHOOK_CONCURRENCY,
      coalesceMs: 60_000,
    },
    work: { queue: e.WORK_QUEUE, leaseSeconds: e.ITEM_LEASE_SECONDS, maxObjects: e.ITEM_MAX_OBJECTS, maxBytes: e.ITEM_MAX_BYTES },
    runIssuesLimit: e.RUN_ISSUES_LIMIT,
    csvNeutralizeFormulas: e.CSV_NEUTRALIZE_FORMULAS === 'true',
    onSourceDelete: e.ON_SOURCE_DELETE,
    logLevel: e.LOG_LEVEL,
  };
}
