import os from 'node:os';
import type { Config } from '../config.js';
import type { Database } from '../db/index.js';
import type { WorkQueue } from '../db/workQueue.js';
import type { PixelBudget } from '../images/budget.js';
import type { Logger } from '../log.js';
import type { ObjectStore } from '../storage/index.js';
import type { UserBatch } from '../pipeline/diffSource.js';

/** What runs, event batches and work items need, made once at start and passed explicitly. */
export interface RunDeps {
  db: Database;
  store: ObjectStore;
  config: Config;
  log: Logger;
  /** The process's one pixel budget (MAX_IMAGE_PIXELS), shared with GET /data/:user_id/image. */
  budget: PixelBudget;
  /** Who commits the work, in run_items and GET /runs/:id; by default host name and process id. */
  instance?: string;
  /** Spreads a full run's items over every replica; without it, this process does them all. */
  queue?: WorkQueue<WorkItem>;
}

/**
 * A unit of a run's work: one batch of users, numbered within the run. The run's owner makes
 * them; its own process, or any replica through the work queue, carries them out.
 */
export interface WorkItem {
  runId: number;
  no: number;
  batch: UserBatch;
}

/** This process, as run_items and GET /runs/:id name it. */
export const thisInstance = () => `${os.hostname()}:${process.pid}`;
