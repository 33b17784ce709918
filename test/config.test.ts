import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, configDefaults, loadConfig } from '../src/config.js';
import { isLoopbackHost } from '../src/loopback.js';

const repoFile = (name: string) => readFileSync(path.join(import.meta.dirname, '..', name), 'utf8');

describe('loadConfig', () => {
  it('defaults to the embedded setup: folder store and embedded PostgreSQL', () => {
    const c = loadConfig({});
    expect(c.store).toEqual({ kind: 'folder', dir: path.resolve('./minio') });
    expect(c.db).toEqual({ kind: 'embedded', dataDir: path.resolve('./postgres-data'), port: 0 });
    expect(c).toMatchObject({
      srcBucket: 'src',
      resBucket: 'res',
      limits: { maxCsvBytes: 1024 * 1024, maxImagePixels: 50_000_000 },
      http: { host: '127.0.0.1', port: 3000, apiToken: null },
      schedule: '*/15 * * * *',
    });
  });

  it('selects S3 when MINIO_ENDPOINT is set, parsing host, port and TLS', () => {
    const c = loadConfig({ MINIO_ENDPOINT: 'https://s3.example.com', MINIO_ACCESS_KEY: 'ak', MINIO_SECRET_KEY: 'sk', MINIO_REGION: 'eu-west-1' });
    expect(c.store).toEqual({ kind: 's3', endPoint: 's3.example.com', port: 443, useSSL: true, accessKey: 'ak', secretKey: 'sk', region: 'eu-west-1' });
    const d = loadConfig({ MINIO_ENDPOINT: 'http://127.0.0.1:9000', MINIO_ACCESS_KEY: 'ak', MINIO_SECRET_KEY: 'sk' });
    expect(d.store).toMatchObject({ endPoint: '127.0.0.1', port: 9000, useSSL: false, region: 'us-east-1' });
  });

  it('uses DATABASE_URL when set', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@db:5432/userjoin' }).db).toEqual({ kind: 'url', url: 'postgres://u:p@db:5432/userjoin' });
  });

  it('treats blank variables as unset', () => {
    expect(loadConfig({ MINIO_ENDPOINT: '  ', DATABASE_URL: '' }).store.kind).toBe('folder');
    // As docker compose passes `${VAR:-}` when .env leaves a variable out.
    const c = loadConfig({ READ_CONCURRENCY: '', PORT: ' ', SCHEDULE: '', LOG_LEVEL: '' });
    expect(c).toMatchObject({ readConcurrency: 8, http: { port: 3000 }, schedule: '*/15 * * * *', logLevel: 'info' });
  });

  it('turns the scheduler off with SCHEDULE=off', () => {
    expect(loadConfig({ SCHEDULE: 'off' }).schedule).toBeNull();
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ MINIO_ENDPOINT: 'http://minio:9000' }, /MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required/],
    [{ MINIO_ENDPOINT: 'ftp://minio' }, /MINIO_ENDPOINT: must be an http\(s\) URL/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: must be a postgres/],
    [{ SRC_BUCKET: 'Bad_Bucket' }, /SRC_BUCKET: must be 3-63 characters/],
    [{ SRC_BUCKET: 'same', RES_BUCKET: 'same' }, /SRC_BUCKET and RES_BUCKET must differ/],
    [{ PORT: 'eighty' }, /PORT/],
    [{ MAX_CSV_BYTES: '-1' }, /MAX_CSV_BYTES/],
    [{ MAX_IMAGE_PIXELS: '0' }, /MAX_IMAGE_PIXELS/],
    [{ SCHEDULE: 'every minute' }, /SCHEDULE: "every minute" is not a valid cron expression/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
  ];
  it.each(bad)('rejects %o with a clear message', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('reports every problem at once', () => {
    try {
      loadConfig({ PORT: 'x', LOG_LEVEL: 'loud' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/PORT[\s\S]*LOG_LEVEL/);
    }
  });
});

describe('loadConfig: event intake bounds', () => {
  it('keeps up to 250,000 pending keys by default (room for a flood of 150,000 forged keys and real traffic)', () => {
    expect(loadConfig({}).events).toMatchObject({ backlogLimit: 250_000, webhookConcurrency: 4 });
  });

  it('allows at most 8 webhook bodies at once: the pool has 16 connections, shared with GET /data and the runs', () => {
    expect(loadConfig({ EVENT_WEBHOOK_CONCURRENCY: '8' }).events.webhookConcurrency).toBe(8);
    expect(() => loadConfig({ EVENT_WEBHOOK_CONCURRENCY: '9' })).toThrow(/EVENT_WEBHOOK_CONCURRENCY/);
  });
});

describe('loadConfig for the service: a token beyond loopback', () => {
  const LONG = 'k'.repeat(16) + '0123456789abcdef';
  it('refuses a non-loopback HOST without API_TOKEN, naming the variable and the opt-out', () => {
    for (const HOST of ['0.0.0.0', '::', '192.168.1.10', 'userjoin.example']) {
      expect(() => loadConfig({ HOST }, { service: true }), HOST).toThrow(ConfigError);
      expect(() => loadConfig({ HOST }, { service: true }), HOST).toThrow(/API_TOKEN[\s\S]*INSECURE_ALLOW_NO_TOKEN=true/);
    }
  });

  it('accepts a non-loopback HOST with a token, or with the explicit opt-out', () => {
    expect(loadConfig({ HOST: '0.0.0.0', API_TOKEN: LONG }, { service: true }).http).toMatchObject({ apiToken: LONG, loopback: false });
    expect(loadConfig({ HOST: '0.0.0.0', INSECURE_ALLOW_NO_TOKEN: 'true' }, { service: true }).http).toMatchObject({
      apiToken: null,
      loopback: false,
      allowNoToken: true,
    });
    expect(() => loadConfig({ HOST: '0.0.0.0', INSECURE_ALLOW_NO_TOKEN: 'false' }, { service: true })).toThrow(/API_TOKEN/);
    expect(() => loadConfig({ INSECURE_ALLOW_NO_TOKEN: 'yes' })).toThrow(/INSECURE_ALLOW_NO_TOKEN: must be true or false/);
  });

  it('refuses an API_TOKEN that no request could ever send: inner spaces, or characters beyond printable ASCII', () => {
    // Authorization: Bearer <token> ends the token at the first space, and header values are not UTF-8.
    for (const API_TOKEN of ['two words', 'tab\there', 'pässwörd', 'zero\u200bwidth']) {
      expect(() => loadConfig({ API_TOKEN }), API_TOKEN).toThrow(/API_TOKEN: must be printable ASCII without spaces/);
    }
    expect(loadConfig({ API_TOKEN: '  s3cr3t-Tok_en.~+/=  ' }).http.apiToken).toBe('s3cr3t-Tok_en.~+/=');
  });

  it('refuses, beyond loopback, a token shorter than 32 characters, even with INSECURE_ALLOW_NO_TOKEN', () => {
    const short = 'x'.repeat(31);
    for (const env of [{ API_TOKEN: short }, { API_TOKEN: 'a' }, { API_TOKEN: short, INSECURE_ALLOW_NO_TOKEN: 'true' }]) {
      expect(() => loadConfig({ HOST: '0.0.0.0', ...env }, { service: true })).toThrow(/API_TOKEN: has \d+ characters; at least 32 are required when HOST \(0\.0\.0\.0\)/);
    }
    expect(() => loadConfig({ HOST: '0.0.0.0', API_TOKEN: LONG, EVENTS_TOKEN: short }, { service: true })).toThrow(/EVENTS_TOKEN: has 31 characters; at least 32/);
    expect(loadConfig({ HOST: '0.0.0.0', API_TOKEN: 'x'.repeat(32), EVENTS_TOKEN: LONG.toUpperCase() }, { service: true }).events.token).toBe(LONG.toUpperCase());
    // On loopback only this machine can try, and the CLI does not listen.
    expect(loadConfig({ API_TOKEN: 'a', EVENTS_TOKEN: 'b' }, { service: true }).http.apiToken).toBe('a');
    expect(loadConfig({ HOST: '0.0.0.0', API_TOKEN: 'a' }).http.apiToken).toBe('a');
  });

  it('refuses EVENTS_TOKEN equal to API_TOKEN, on loopback too', () => {
    for (const HOST of ['127.0.0.1', '0.0.0.0']) {
      expect(() => loadConfig({ HOST, API_TOKEN: LONG, EVENTS_TOKEN: LONG }, { service: true }), HOST).toThrow(/EVENTS_TOKEN: must differ from API_TOKEN/);
    }
  });

  it('takes METRICS_TOKEN under the same rules: long enough beyond loopback, and unlike API_TOKEN and EVENTS_TOKEN', () => {
    expect(loadConfig({ HOST: '0.0.0.0', API_TOKEN: LONG, METRICS_TOKEN: LONG.toUpperCase() }, { service: true }).http.metricsToken).toBe(LONG.toUpperCase());
    expect(loadConfig({}).http.metricsToken).toBeNull();
    expect(() => loadConfig({ HOST: '0.0.0.0', API_TOKEN: LONG, METRICS_TOKEN: 'x'.repeat(31) }, { service: true })).toThrow(/METRICS_TOKEN: has 31 characters; at least 32/);
    expect(() => loadConfig({ METRICS_TOKEN: 'two words' })).toThrow(/METRICS_TOKEN: must be printable ASCII without spaces/);
    for (const HOST of ['127.0.0.1', '0.0.0.0']) {
      expect(() => loadConfig({ HOST, API_TOKEN: LONG, METRICS_TOKEN: LONG }, { service: true }), HOST).toThrow(/METRICS_TOKEN: must differ from API_TOKEN and EVENTS_TOKEN/);
      expect(() => loadConfig({ HOST, API_TOKEN: 'y'.repeat(32), EVENTS_TOKEN: LONG, METRICS_TOKEN: LONG }, { service: true }), HOST).toThrow(/METRICS_TOKEN: must differ/);
    }
  });

  it('limits wrong tokens to 10 per address per 5 minutes by default, configurable', () => {
    expect(loadConfig({}).http.authFailures).toEqual({ limit: 10, windowMs: 300_000 });
    expect(loadConfig({ AUTH_FAILURE_LIMIT: '3', AUTH_FAILURE_WINDOW_SECONDS: '60' }).http.authFailures).toEqual({ limit: 3, windowMs: 60_000 });
    expect(() => loadConfig({ AUTH_FAILURE_LIMIT: '0' })).toThrow(/AUTH_FAILURE_LIMIT/);
    expect(() => loadConfig({ AUTH_FAILURE_WINDOW_SECONDS: 'soon' })).toThrow(/AUTH_FAILURE_WINDOW_SECONDS/);
  });

  it('trusts no X-Forwarded-For unless TRUST_PROXY=true', () => {
    expect(loadConfig({}).http.trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
    expect(() => loadConfig({ TRUST_PROXY: 'yes' })).toThrow(/TRUST_PROXY: must be true or false/);
  });

  it('needs no token on loopback', () => {
    for (const HOST of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '[::1]', 'localhost', 'LOCALHOST']) {
      const c = loadConfig({ HOST }, { service: true });
      expect(c.http, HOST).toMatchObject({ apiToken: null, loopback: true, allowNoToken: false });
    }
    expect(loadConfig({}, { service: true }).http.loopback).toBe(true);
  });

  it('is not applied to the CLI, which does not listen', () => {
    // The CLI calls loadConfig() without the service option.
    expect(loadConfig({ HOST: '0.0.0.0' }).http).toMatchObject({ apiToken: null, loopback: false });
  });
});

describe('isLoopbackHost', () => {
  it('knows 127.0.0.0/8, ::1 and localhost, and nothing else', () => {
    for (const h of ['127.0.0.1', '127.0.0.2', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', 'localhost']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '128.0.0.1', '10.0.0.1', '::2', 'localhost.example', 'example.com', '127.0.0.1.nip.io', '']) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });
});

describe('S3_NOTIFY_ARN', () => {
  it('takes a MinIO queue ARN or an SNS topic ARN (radosgw, AWS), and tells which', () => {
    expect(loadConfig({}).events.notifyTarget).toBeNull();
    expect(loadConfig({ S3_NOTIFY_ARN: 'arn:minio:sqs::USERJOIN:webhook' }).events.notifyTarget).toEqual({ kind: 'queue', arn: 'arn:minio:sqs::USERJOIN:webhook' });
    expect(loadConfig({ S3_NOTIFY_ARN: 'arn:aws:sns:default::userjoin' }).events.notifyTarget).toEqual({ kind: 'topic', arn: 'arn:aws:sns:default::userjoin' });
    expect(loadConfig({ S3_NOTIFY_ARN: 'arn:aws:sns:eu-west-1:123456789012:src-events' }).events.notifyTarget?.kind).toBe('topic');
  });

  it('still reads MINIO_NOTIFY_ARN, its former name, and refuses the two set to different targets', () => {
    const queue = 'arn:minio:sqs::USERJOIN:webhook';
    expect(loadConfig({ MINIO_NOTIFY_ARN: queue }).events.notifyTarget).toEqual({ kind: 'queue', arn: queue });
    expect(loadConfig({ MINIO_NOTIFY_ARN: queue, S3_NOTIFY_ARN: queue }).events.notifyTarget).toEqual({ kind: 'queue', arn: queue });
    expect(() => loadConfig({ MINIO_NOTIFY_ARN: queue, S3_NOTIFY_ARN: 'arn:aws:sns:default::userjoin' })).toThrow(/S3_NOTIFY_ARN and MINIO_NOTIFY_ARN .* are both set, to different targets/);
  });

  it('refuses an ARN that is neither a queue nor a topic', () => {
    for (const arn of ['webhook', 'arn:aws:lambda:eu-west-1:123456789012:function:f', 'arn:aws:s3:::src']) {
      expect(() => loadConfig({ S3_NOTIFY_ARN: arn }), arn).toThrow(/S3_NOTIFY_ARN: ".*" is neither a queue ARN .* nor an SNS topic ARN/);
    }
    expect(() => loadConfig({ MINIO_NOTIFY_ARN: 'webhook' })).toThrow(/ MINIO_NOTIFY_ARN: "webhook" is neither/);
  });
});

describe('DB_STATEMENT_TIMEOUT_MS', () => {
  it('defaults to 60 s and takes a positive number of ms', () => {
    expect(loadConfig({}).dbStatementTimeoutMs).toBe(60_000);
    expect(loadConfig({ DB_STATEMENT_TIMEOUT_MS: '1500' }).dbStatementTimeoutMs).toBe(1500);
    expect(() => loadConfig({ DB_STATEMENT_TIMEOUT_MS: '0' })).toThrow(/DB_STATEMENT_TIMEOUT_MS/);
  });
});

describe('STORE_RETRIES, STORE_RETRY_BASE_MS, STORE_RETRY_MAX_MS, STORE_REQUEST_TIMEOUT_MS', () => {
  it('default to 6 retries from 100 ms within 10 s, and 30 s of silence per request', () => {
    expect(loadConfig({}).storeRetry).toEqual({ retries: 6, baseDelayMs: 100, maxTotalMs: 10_000, requestTimeoutMs: 30_000 });
  });

  it('take whole numbers; 0 retries turns retrying off', () => {
    const env = { STORE_RETRIES: '0', STORE_RETRY_BASE_MS: '5', STORE_RETRY_MAX_MS: '250', STORE_REQUEST_TIMEOUT_MS: '1000' };
    expect(loadConfig(env).storeRetry).toEqual({ retries: 0, baseDelayMs: 5, maxTotalMs: 250, requestTimeoutMs: 1000 });
    expect(() => loadConfig({ STORE_RETRIES: '-1' })).toThrow(/STORE_RETRIES/);
    expect(() => loadConfig({ STORE_RETRY_BASE_MS: '0' })).toThrow(/STORE_RETRY_BASE_MS/);
    expect(() => loadConfig({ STORE_REQUEST_TIMEOUT_MS: 'soon' })).toThrow(/STORE_REQUEST_TIMEOUT_MS/);
  });
});

describe('configuration documents', () => {
  const defaults = configDefaults();

  it('config/.env.example lists every variable with its real default', () => {
    const example = repoFile('config/.env.example');
    const lines = new Map<string, string>();
    for (const m of example.matchAll(/^# ([A-Z][A-Z0-9_]*)=(.*)$/gm)) lines.set(m[1]!, m[2]!.trim());
    expect([...lines.keys()].sort()).toEqual(Object.keys(defaults).sort());
    for (const [key, value] of Object.entries(defaults)) {
      // Variables without a default show an example value instead.
      if (value !== undefined) expect(lines.get(key), key).toBe(value);
    }
  });

  it('the configuration table in docs/configuration.md has a row for every variable', () => {
    const doc = repoFile('docs/configuration.md');
    const start = doc.indexOf('\n## Variables\n');
    expect(start).toBeGreaterThan(-1);
    const end = doc.indexOf('\n## ', start + 1);
    const table = doc.slice(start, end === -1 ? undefined : end);
    const documented = new Set<string>();
    for (const row of table.split('\n').filter((l) => l.startsWith('| `'))) {
      const firstCell = row.split('|')[1]!;
      for (const m of firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) documented.add(m[1]!);
    }
    expect([...documented].sort()).toEqual(Object.keys(defaults).sort());
  });
});
