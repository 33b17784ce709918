import type { Database } from '../../db/index.js';
import { readClusterStats } from '../../db/stats.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { overviewSchema } from '../schemas.js';

/** The schedule as the service runs it. */
export interface ScheduleInfo {
  /** SCHEDULE, or null when it is off. */
  expression: string | null;
  /** When this instance's schedule next triggers a run; null when off, or before the scheduler starts. */
  nextRun(): Date | null;
}

// The counts are fresh on every call (the console's Overview asks every 10 s); PostgreSQL
// cancels them past this, and the answer is a 503.
const STATS_TIMEOUT_MS = 5_000;

export function overviewOperations(db: Database, schedule: ScheduleInfo): Operation[] {
  return [
    operation({
      method: 'get',
      path: '/overview',
      operationId: 'overview',
      tag: 'operations',
      summary: 'At a glance: users and photos, the event backlog, the last successful run and the next scheduled one',
      access: 'api',
      responses: { 200: { description: 'The figures', json: overviewSchema } },
      handler: async (ctx) => {
        const stats = await readClusterStats(db, STATS_TIMEOUT_MS);
        ctx.body = {
          users: stats.users,
          users_with_photo: stats.usersWithPhoto,
          pending_events: stats.pendingEvents,
          last_success_at: stats.lastSuccessAt?.toISOString() ?? null,
          schedule: schedule.expression,
          next_run_at: schedule.nextRun()?.toISOString() ?? null,
        };
      },
    }),
  ];
}
