import cron from 'node-cron';
import type { Logger } from '../log.js';
import type { Runner } from '../runs/coordinator.js';

export interface Scheduler {
  /** When the schedule next triggers a run. */
  nextRun(): Date | null;
  stop(): Promise<void>;
}

/**
 * Triggers a run on the cron schedule. Overlap is the runner's business: a tick during a run
 * joins it, and across instances only the advisory-lock holder processes.
 */
export function startScheduler(expression: string, runner: Runner, log: Logger): Scheduler {
  const task = cron.schedule(
    expression,
    async () => {
      try {
        const t = await runner.trigger({ trigger: 'schedule' });
        log.info({ runId: t.runId, joined: !t.started }, 'scheduled run triggered');
        await t.done;
      } catch (err) {
        log.error({ err }, 'scheduled run could not start');
      }
    },
    { name: 'userjoin-process', noOverlap: true },
  );
  log.info({ schedule: expression, next: task.getNextRun()?.toISOString() }, 'scheduler started');
  return {
    nextRun: () => task.getNextRun(),
    stop: async () => {
      await task.stop();
      await task.destroy();
    },
  };
}
