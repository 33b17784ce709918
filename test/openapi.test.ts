import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, userCsv } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import { raw } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';

// The document is walked as untyped JSON.
/* eslint-disable @typescript-eslint/no-unsafe-member-access */
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

/**
 * Checks real answers against the document: the status must be documented for the operation
 * (or fall under its default, which is the Error shape), the content type must be one it
 * lists, and a JSON body must match its schema. Remembers what it saw, so the test can tell
 * whether every documented answer of every operation was seen.
 */
class Contract {
  private readonly ajv = new Ajv2020({ strict: false, validateSchema: false, allErrors: true });
  readonly seen = new Set<string>();

  constructor(readonly doc: Json) {
    addFormats.default(this.ajv);
    this.ajv.addSchema(doc, 'https://userjoin.invalid/openapi.json');
  }

  check(method: string, template: string, answer: Answer): void {
    const op = this.doc.paths[template]?.[method.toLowerCase()] as Json | undefined;
    expect(op, `${method} ${template} is documented`).toBeDefined();
    const documented = op!.responses[String(answer.status)] as Json | undefined;
    const key = documented ? String(answer.status) : 'default';
    const response = (documented ?? op!.responses.default) as Json;
    const what = `${method} ${template} → ${answer.status}`;
    this.seen.add(`${method.toLowerCase()} ${template} ${key}`);
    if (!response.content) {
      expect(answer.body, what).toBe('');
      return;
    }
    const type = (answer.type ?? '').split(';')[0]!.trim();
    expect(Object.keys(response.content as Json), what).toContain(type);
    if (type !== 'application/json') return;
    const pointer = ['paths', template, method.toLowerCase(), 'responses', key, 'content', type, 'schema']
      .map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1'))
      .join('/');
    const validate = this.ajv.getSchema(`https://userjoin.invalid/openapi.json#/${pointer}`)!;
    const body: unknown = JSON.parse(answer.body);
    expect(validate(body), `${what}: ${this.ajv.errorsText(validate.errors)}\n${answer.body.slice(0, 500)}`).toBe(true);
  }

  /** Every status documented for every operation, and an error from each operation that takes input. */
  missing(): string[] {
    const out: string[] = [];
    for (const [template, methods] of Object.entries(this.doc.paths as Json)) {
      for (const [method, op] of Object.entries(methods as Json)) {
        for (const status of Object.keys((op as Json).responses as Json)) {
          const wantsError = status !== 'default' || ((op as Json).parameters as unknown[] | undefined)?.length;
          if (wantsError && !this.seen.has(`${method} ${template} ${status}`)) out.push(`${method} ${template} ${status}`);
        }
      }
    }
    return out;
  }
}

describe.each(backends)('OpenAPI document against real answers on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let store: ObservedStore;
  let contract: Contract;

  /** A request through fetch, checked against the document. */
  const call = async (method: string, template: string, path: string, init: RequestInit = {}): Promise<Answer> => {
    const res = await fetch(svc.url + path, { method, ...init });
    const answer = { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
    contract.check(method, template, answer);
    return answer;
  };

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, {}, { wrapStore: (s) => (store = new ObservedStore(s)) });
    await put(backend, svc.srcBucket, '1.csv', userCsv('Ann', 'Lee', 0));
    await put(backend, svc.srcBucket, '1.png', await makeImage('png', 40, 20));
    await put(backend, svc.srcBucket, '2.csv', userCsv('Bo', 'Ng', Date.UTC(2000, 0, 1)));
    await put(backend, svc.srcBucket, 'broken.csv', 'first_name,last_name,birthts\nA,,1\n');
    const res = await svc.get('/openapi.json');
    expect(res.status).toBe(200);
    contract = new Contract((await res.json()) as Json);
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(contract.doc);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(contract.doc.openapi).toBe('3.1.0');
  });

  it('documents the parameters with the schemas that validate them', () => {
    const params = contract.doc.paths['/data'].get.parameters as Json[];
    expect(params.find((p) => p.name === 'min_age')).toMatchObject({ in: 'query', required: false, schema: { type: 'number', minimum: 0, maximum: 1000 } });
    expect(params.find((p) => p.name === 'limit')).toMatchObject({ schema: { type: 'integer', minimum: 1, maximum: 10000 } });
    expect(params.find((p) => p.name === 'format')).toMatchObject({ schema: { enum: ['json', 'csv'], default: 'json' } });
    const width = (contract.doc.paths['/data/{user_id}/image'].get.parameters as Json[]).find((p) => p.name === 'width');
    expect(width).toMatchObject({ in: 'query', schema: { type: 'integer', minimum: 16, maximum: 1024 } });
    const run = contract.doc.paths['/data'].post.parameters as Json[];
    expect(run.find((p) => p.name === 'user_id')).toMatchObject({ in: 'query', required: false, schema: { type: 'array', maxItems: 1000 } });
    expect(run.find((p) => p.name === 'prefix')).toMatchObject({ in: 'query', required: false, schema: { type: 'string' } });
    expect(run.find((p) => p.name === 'dry_run')).toMatchObject({ in: 'query', required: false, schema: { type: 'boolean', default: false } });
    const issues = (contract.doc.paths['/runs/{id}'].get.parameters as Json[]).find((p) => p.name === 'issues');
    expect(issues).toMatchObject({ in: 'query', required: false, schema: { type: 'integer', minimum: 0, maximum: 10000, default: 10000 } });
  });

  it('describes every answer of every documented operation', async () => {
    await call('GET', '/openapi.json', '/openapi.json');
    await call('GET', '/health', '/health');
    store.failPing = new Error('down');
    expect((await call('GET', '/health', '/health')).status).toBe(503);
    store.failPing = null;

    expect((await call('POST', '/data', '/data?wait=true')).status).toBe(200);
    const started = await call('POST', '/data', '/data?full=true');
    expect(started.status).toBe(202);
    const id = (JSON.parse(started.body) as { id: number }).id;
    await call('POST', '/data', '/data?wait=perhaps');
    // A dry run and a targeted run answer 200 too, each in its documented shape.
    expect((await call('POST', '/data', '/data?dry_run=true&full=true')).status).toBe(200);
    expect((await call('POST', '/data', '/data?dry_run=true&user_id=1&prefix=b')).status).toBe(200);
    await call('POST', '/data', '/data?user_id=');

    // Follow the run to its end, checking each answer on the way.
    const deadline = Date.now() + 30_000;
    let run: { status: string; rejected: unknown[] };
    do {
      run = JSON.parse((await call('GET', '/runs/{id}', `/runs/${id}`)).body) as typeof run;
    } while (run.status === 'running' && Date.now() < deadline);
    expect(run.status).toBe('succeeded');
    expect(run.rejected).toHaveLength(1);
    await call('GET', '/runs/{id}', `/runs/${id}?issues=0`);
    await call('GET', '/runs/{id}', `/runs/${id}?issues=-1`);
    await call('GET', '/runs/{id}', '/runs/99999');
    await call('GET', '/runs', '/runs?limit=1');
    await call('GET', '/runs', '/runs?limit=0');

    const page = JSON.parse((await call('GET', '/data', '/data?limit=1&is_image_exists=true')).body) as { data: unknown[] };
    expect(page.data).toHaveLength(1);
    await call('GET', '/data', '/data?limit=1&min_age=10');
    await call('GET', '/data', '/data');
    const csv = await call('GET', '/data', '/data?format=csv&limit=1');
    expect(csv.body).toMatch(/^id,user_id,/);
    await call('GET', '/data', '/data?min_age=old');

    await call('GET', '/data/{user_id}', '/data/1');
    await call('GET', '/data/{user_id}', '/data/3');

    const photo = await fetch(`${svc.url}/data/1/image`);
    contract.check('GET', '/data/{user_id}/image', { status: photo.status, type: photo.headers.get('content-type'), body: '' });
    const etag = photo.headers.get('etag')!;
    await photo.arrayBuffer();
    await call('GET', '/data/{user_id}/image', '/data/1/image?width=16');
    // A browser revalidating its cached copy (fetch would add Cache-Control: no-cache).
    const revalidated = await raw(svc.url, '/data/1/image', { headers: { 'If-None-Match': etag } });
    contract.check('GET', '/data/{user_id}/image', { status: revalidated.status, type: revalidated.headers['content-type'] ?? null, body: revalidated.body });
    expect(revalidated.status).toBe(304);
    await call('GET', '/data/{user_id}/image', '/data/2/image');
    await call('GET', '/data/{user_id}/image', '/data/1/image?width=8');

    await call('GET', '/metrics', '/metrics');
    const overview = JSON.parse((await call('GET', '/overview', '/overview')).body) as unknown;
    expect(overview).toMatchObject({ users: 2, users_with_photo: 1, pending_events: 0, schedule: null, next_run_at: null });

    expect((await call('DELETE', '/data/{user_id}', '/data/2')).status).toBe(200);
    expect((await call('DELETE', '/data/{user_id}', '/data/no-such-user')).status).toBe(404);
    await call('GET', '/erasures', '/erasures?user_id=2');
    await call('GET', '/erasures', '/erasures?limit=0');

    const events = { method: 'POST', headers: { 'content-type': 'application/json' } };
    const record = { eventName: 's3:ObjectCreated:Put', s3: { bucket: { name: svc.srcBucket }, object: { key: '1.csv' } } };
    expect((await call('POST', '/events/s3', '/events/s3', { ...events, body: JSON.stringify({ Records: [record, {}] }) })).status).toBe(202);
    expect((await call('POST', '/events/s3', '/events/s3', { ...events, body: '{"Records":' })).status).toBe(400);

    expect(contract.missing()).toEqual([]);
  });
});

describe('OpenAPI document with a token', () => {
  it('is served without the token, and says which operations need it', async () => {
    const backend = await backends[0]![1]();
    const db = await createTestDatabase();
    const svc = await startTestService(backend, db, { API_TOKEN: 'openapi-test-token' });
    try {
      const res = await svc.get('/openapi.json');
      expect(res.status).toBe(200);
      const doc = (await res.json()) as Json;
      expect(doc.security).toEqual([{ bearer: [] }]);
      expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
      const isOpen = (op: Json) => Array.isArray(op.security) && op.security.length === 0;
      const open = Object.entries(doc.paths as Json).flatMap(([p, ms]) => Object.entries(ms as Json).filter(([, op]) => isOpen(op as Json)).map(([m]) => `${m} ${p}`));
      expect(open.sort()).toEqual(['get /health', 'get /openapi.json']);
      // The webhook also takes the events token, and either token as a Basic password; nothing else takes Basic.
      expect(doc.paths['/events/s3'].post.security).toEqual([{ bearer: [] }, { eventsBearer: [] }, { eventsBasic: [] }]);
      expect(doc.components.securitySchemes.eventsBasic).toMatchObject({ type: 'http', scheme: 'basic' });
      const basicElsewhere = Object.entries(doc.paths as Json).flatMap(([p, ms]) =>
        Object.entries(ms as Json).filter(([, op]) => p !== '/events/s3' && JSON.stringify((op as Json).security ?? doc.security).includes('Basic')),
      );
      expect(basicElsewhere).toEqual([]);
      // And the server agrees: what the document calls protected answers 401 without the token.
      for (const [p, methods] of Object.entries(doc.paths as Json)) {
        for (const [m, op] of Object.entries(methods as Json)) {
          const path = p.replace('{user_id}', '1').replace('{id}', '1');
          const status = (await fetch(svc.url + path, { method: m.toUpperCase() })).status;
          if (isOpen(op as Json)) expect(status, `${m} ${p}`).not.toBe(401);
          else expect(status, `${m} ${p}`).toBe(401);
        }
      }
    } finally {
      await svc.stop();
      await db.drop();
      await backend.stop();
    }
  });
});
