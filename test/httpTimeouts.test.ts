import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, userCsv } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import { closedWithin, raw } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend } from './support/stores.js';

const hostOf = (url: string) => new URL(url).host;

describe('HTTP server timeouts', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const timeouts = { headersMs: 300, requestMs: 600, keepAliveMs: 300, checkIntervalMs: 50 };
  const READ_DELAY_MS = 500;

  beforeAll(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(
      backend,
      db,
      { READ_CONCURRENCY: '1' },
      {
        httpTimeouts: timeouts,
        wrapStore: (store) => {
          const slow = new ObservedStore(store);
          slow.readDelayMs = READ_DELAY_MS;
          return slow;
        },
      },
    );
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  it('disconnects a client that never finishes its headers', async () => {
    const { hostname, port } = new URL(svc.url);
    const socket = net.connect(Number(port), hostname);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`GET /health HTTP/1.1\r\nHost: ${hostOf(svc.url)}\r\nX-Slow: `);
    // Default timeouts would keep it open for 10 s.
    await closedWithin(socket, 3000);
    expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
  });

  it('closes an idle keep-alive connection', async () => {
    const { hostname, port } = new URL(svc.url);
    const socket = net.connect(Number(port), hostname);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    // A bare socket: an http.Agent would act on the Keep-Alive hint and close it itself.
    const answered = new Promise<void>((resolve) =>
      socket.on('data', (d: string) => {
        answer += d;
        if (answer.endsWith('}')) resolve();
      }),
    );
    socket.write(`GET /health HTTP/1.1\r\nHost: ${hostOf(svc.url)}\r\n\r\n`);
    await answered;
    expect(answer).toMatch(/^HTTP\/1\.1 200 [\s\S]*Connection: keep-alive/i);
    // Node's default would keep it for 5 s.
    await closedWithin(socket, 3000);
  });

  it('does not cut POST /data?wait=true, which answers after the request timeout', async () => {
    for (let i = 0; i < 3; i++) await put(backend, svc.srcBucket, `${i}.csv`, userCsv('A', 'B', 1000 * i));
    const start = Date.now();
    const res = await raw(svc.url, '/data?wait=true', { method: 'POST' });
    const elapsed = Date.now() - start;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ status: 'succeeded', counts: { new: 3 } });
    // Three reads one after another: the answer came well after requestMs.
    expect(elapsed).toBeGreaterThan(timeouts.requestMs * 2);
  });
});
