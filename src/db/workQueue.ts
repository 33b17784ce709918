import PgBoss from 'pg-boss';

const QUEUE = 'userjoin-items';

export interface WorkQueueOptions {
  /** An item not finished this long after a worker took it is given to another worker. */
  leaseSeconds: number;
  /** Tries of an item before the run that made it fails. */
  tries: number;
  /** Workers of this process, each taking one item at a time. */
  workers: number;
}

/**
 * Work items of runs, shared by every replica of the database through pg-boss (10.x: the
 * last major that runs on Node 20). A job is an item; a job a killed replica held is failed
 * by pg-boss's maintenance once its lease runs out, and retried by another replica.
 */
export class WorkQueue<T extends object> {
  private readonly workerIds: string[] = [];

  private constructor(
    private readonly boss: PgBoss,
    private readonly opts: WorkQueueOptions,
  ) {}

  static async open<T extends object>(url: string, opts: WorkQueueOptions, onError: (err: Error) => void): Promise<WorkQueue<T>> {
    const boss = new PgBoss({
      connectionString: url,
      application_name: 'userjoin-queue',
      max: opts.workers + 2,
      // Runs are scheduled by node-cron; pg-boss only moves items.
      schedule: false,
      supervise: true,
      // Expired items are found at this pace: at most a lease past the lease itself.
      maintenanceIntervalSeconds: Math.max(1, Math.min(10, opts.leaseSeconds)),
      // Finished items are only history; the run keeps its own record (run_items). Moved out
      // of the queue's table soon, which keeps failedItems' scan small.
      archiveCompletedAfterSeconds: 60,
      deleteAfterDays: 1,
    });
    boss.on('error', onError);
    await boss.start();
    const queue = { name: QUEUE, policy: 'standard' as const, retryLimit: opts.tries - 1, retryDelay: 0, expireInSeconds: opts.leaseSeconds };
    // Replicas starting together can deadlock in pg-boss's create_queue; the loser tries again
    // and finds the queue there.
    for (let attempt = 1; ; attempt++) {
      try {
        await boss.createQueue(QUEUE, queue);
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== '40P01' || attempt >= 5) throw err;
      }
    }
    // The lease of an existing queue follows the configuration.
    await boss.updateQueue(QUEUE, queue);
    return new WorkQueue<T>(boss, opts);
  }

  async enqueue(item: T): Promise<void> {
    await this.boss.send(QUEUE, item);
    // This process's workers take it at once; the others within their polling interval.
    for (const id of this.workerIds) this.boss.notifyWorker(id);
  }

  /** Starts this process's workers. A handler that throws fails the try; the item is retried. */
  async work(handler: (item: T) => Promise<void>): Promise<void> {
    for (let i = 0; i < this.opts.workers; i++) {
      const id = await this.boss.work<T>(QUEUE, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async ([job]) => {
        if (job) await handler(job.data);
      });
      this.workerIds.push(id);
    }
  }

  /**
   * Numbers of the run's items that failed on every try. A try also fails when it runs past
   * the lease on a live worker, which may still commit it: callers check run_items.
   */
  async failedItems(runId: number): Promise<number[]> {
    const { rows } = await this.boss.getDb().executeSql(
      `SELECT (data->>'no')::int AS no FROM pgboss.job WHERE name = $1 AND state = 'failed' AND data->>'runId' = $2`,
      [QUEUE, String(runId)],
    );
    return (rows as Array<{ no: number }>).map((r) => r.no);
  }

  /**
   * Returns items whose lease ran out (a worker killed with them in hand) to the queue now,
   * rather than at pg-boss's next maintenance, whose timer may be late on a busy machine.
   */
  async reclaimExpired(): Promise<void> {
    await this.boss.expire();
  }

  /** Stops taking items, lets the ones in progress finish for up to timeoutMs, and closes. */
  async stop(timeoutMs: number): Promise<void> {
    await this.boss.stop({ graceful: true, wait: true, timeout: Math.max(1000, timeoutMs) });
  }
}
