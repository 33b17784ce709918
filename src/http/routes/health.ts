import { within } from '../../deadline.js';
import type { Database } from '../../db/index.js';
import { ping } from '../../db/index.js';
import type { Logger } from '../../log.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { healthSchema } from '../schemas.js';

// A health probe must answer quickly even when a dependency hangs.
const CHECK_TIMEOUT_MS = 3000;

export function healthOperations(db: Database, pingStore: () => Promise<void>, log: Logger): Operation[] {
  return [
    operation({
      method: 'get',
      path: '/health',
      operationId: 'health',
      tag: 'operations',
      summary: 'Whether PostgreSQL and the object store answer',
      access: 'public',
      responses: {
        200: { description: 'Both answer', json: healthSchema },
        503: { description: 'One of them does not; checks says which', json: healthSchema },
      },
      handler: async (ctx) => {
        const { database, store: objectStore } = await checkDependencies(db, pingStore);
        const checks = { database: database.ok ? 'ok' : 'unavailable', store: objectStore.ok ? 'ok' : 'unavailable' };
        const healthy = database.ok && objectStore.ok;
        if (!healthy) log.warn({ database: database.error, store: objectStore.error }, 'health check failed');
        ctx.status = healthy ? 200 : 503;
        ctx.body = { status: healthy ? 'ok' : 'unavailable', checks };
      },
    }),
  ];
}

/** Whether PostgreSQL and the object store answer, each within CHECK_TIMEOUT_MS: for /health and the metrics. */
export async function checkDependencies(db: Database, pingStore: () => Promise<void>): Promise<Record<'database' | 'store', { ok: boolean; error?: string }>> {
  const [database, store] = await Promise.all([check(() => ping(db)), check(pingStore)]);
  return { database, store };
}

async function check(fn: () => Promise<void>): Promise<{ ok: boolean; error?: string }> {
  try {
    return (await within(CHECK_TIMEOUT_MS, fn())) === 'timeout' ? { ok: false, error: 'timed out' } : { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
