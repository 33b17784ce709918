import { pino } from 'pino';
import { afterEach, beforeEach } from 'vitest';
import type { Logger } from '../../src/log.js';
import { silentLogger } from '../../src/log.js';
import type { Service, ServiceOptions } from '../../src/service.js';
import { startService } from '../../src/service.js';
import type { TestDatabase } from './database.js';
import { createTestDatabase } from './database.js';
import { testConfig } from './harness.js';
import type { Backend } from './stores.js';

export interface TestService extends Service {
  srcBucket: string;
  resBucket: string;
  get(path: string, init?: RequestInit): Promise<Response>;
  post(path: string, init?: RequestInit): Promise<Response>;
}

/** The real service, in-process, on a free port of the loopback interface. */
export async function startTestService(
  backend: Backend,
  db: TestDatabase,
  env: Record<string, string> = {},
  opts: ServiceOptions & { log?: Logger } = {},
): Promise<TestService> {
  const config = testConfig(backend, db, { HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', WATCH: 'false', ...env });
  const { log = silentLogger(), ...serviceOpts } = opts;
  const service = await startService(config, log, { waitMs: 0, ...serviceOpts });
  return {
    ...service,
    srcBucket: config.srcBucket,
    resBucket: config.resBucket,
    get: (path, init) => fetch(service.url + path, init),
    post: (path, init) => fetch(service.url + path, { method: 'POST', ...init }),
  };
}

/** Shares one service's buckets with a second instance, as replicas behind one config would. */
export function sameBuckets(s: TestService): Record<string, string> {
  return { SRC_BUCKET: s.srcBucket, RES_BUCKET: s.resBucket };
}

/** A logger whose messages a test can read, for tests of what the service logs; never to wait on. */
export function recordingLogger(): { log: Logger; messages: () => string[]; entries: () => Array<Record<string, unknown> & { msg: string }> } {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const entries = () => lines.map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string });
  return { log, messages: () => entries().map((e) => e.msg), entries };
}

/**
 * For a suite whose every test gets a fresh backend and database: given to `use` before each
 * test. Returns how a test starts a service on them; its services are stopped after it.
 */
export function servicePerTest(
  startBackend: () => Promise<Backend>,
  use: (backend: Backend, db: TestDatabase) => void,
): (env?: Record<string, string>, opts?: Parameters<typeof startTestService>[3]) => Promise<TestService> {
  let backend: Backend;
  let db: TestDatabase;
  const services: TestService[] = [];
  beforeEach(async () => {
    backend = await startBackend();
    db = await createTestDatabase();
    use(backend, db);
  });
  afterEach(async () => {
    for (const s of services.splice(0)) await s.stop(0);
    await db.drop();
    await backend.stop();
  });
  return async (env = {}, opts = {}) => {
    const svc = await startTestService(backend, db, { ...backend.env, ...env }, opts);
    services.push(svc);
    return svc;
  };
}
