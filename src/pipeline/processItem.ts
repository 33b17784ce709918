import type pLimit from 'p-limit';
import { loadFileStates } from '../db/sourceFiles.js';
import type { CommitResult } from './commitBatch.js';
import { commitItem } from './commitBatch.js';
import type { UserBatch } from './diffSource.js';
import { planBatch } from './planBatch.js';
import { processObject } from './processObject.js';
import type { RunDeps } from './run.js';

/**
 * A unit of a run's work: one batch of users, numbered within the run. The run's owner makes
 * them; its own process, or any replica through the work queue, carries them out.
 */
export interface WorkItem {
  runId: number;
  no: number;
  batch: UserBatch;
}

/**
 * Reads and checks the item's objects, then commits its users: in one transaction that
 * claims the item, locks its users and joins them from the latest recorded file states.
 * Returns null when the item was committed already (by an earlier try of it).
 */
export async function processItem(
  deps: RunDeps,
  item: WorkItem,
  instance: string,
  limit: ReturnType<typeof pLimit>,
  signal?: AbortSignal,
): Promise<(CommitResult & { read: number }) | null> {
  const { db, store, config, log } = deps;
  const { batch } = item;
  const results = await Promise.all(
    batch.changed.map((object) =>
      limit(() => {
        // Stopping: the objects not started yet are not read, and the item is not committed.
        signal?.throwIfAborted();
        return processObject(object, store, config.srcBucket, { limits: config.limits, log });
      }),
    ),
  );
  const r = await commitItem(
    db,
    item.runId,
    batch.users,
    async (tx) => planBatch(batch, results, await loadFileStates(tx, batch.users), config.srcBucket),
    log,
    { no: item.no, instance },
  );
  for (const i of [...(r?.rejected ?? []), ...(r?.issues ?? [])]) log.warn({ runId: item.runId, key: i.key, reason: i.reason }, 'file rejected');
  return r;
}
