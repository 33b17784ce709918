import pLimit from 'p-limit';
import { isRunActive, itemTotals, uncommittedItems } from '../db/runItems.js';
import type { SourceChange } from '../pipeline/diffSource.js';
import { batchByUser } from '../pipeline/diffSource.js';
import type { ListCounts } from '../pipeline/listSource.js';
import type { RunDeps } from './deps.js';
import { thisInstance } from './deps.js';
import type { ActiveRun } from './lifecycle.js';
import { processItem } from './worker.js';

// The owner's side of a run's work items: cut the changes into items, have them carried out
// (here, or by every replica through the queue), and follow their progress in run_items.

// Items of this process in progress at once: one is read while another commits.
const LOCAL_ITEMS = 2;
// The queue holds at most this many items of a run that no one has finished yet.
const QUEUED_ITEMS = 16;
const QUEUE_POLL_MS = 200;
// A batch is cut at the latest once the listing has moved this many batches' worth of objects.
const SPAN_BATCHES = 10;

/**
 * Reads, checks and commits the changes batch by batch, each batch a work item. Listing,
 * diffing, reading and committing overlap, and only the items in flight are in memory,
 * however large the bucket. Without a work queue, this process carries the items out, two
 * at a time; with one, every replica does, and this waits for them. Either way the counts
 * come from what the items recorded (run_items).
 */
export async function commitChanges(deps: RunDeps, opts: { signal?: AbortSignal }, run: ActiveRun, changes: AsyncIterable<SourceChange>, listed: ListCounts, queued: boolean): Promise<void> {
  const { db, config } = deps;
  const { st } = run;
  st.progress = { phase: 'processing', done: 0, total: null };
  await run.report(true);
  const base = { ...st.counts };
  const before = await itemTotals(db, run.id);
  let made = before.lastItemNo;
  const refresh = async () => {
    const t = await itemTotals(db, run.id);
    st.counts = {
      ...st.counts,
      scanned: listed.scanned,
      ignored: listed.ignored,
      read: base.read + t.read - before.read,
      new: base.new + t.new - before.new,
      updated: base.updated + t.updated - before.updated,
      rejected: base.rejected + t.rejected - before.rejected,
      erased: base.erased + t.erased - before.erased,
    };
    st.affectedUsers = t.users - before.users;
    st.progress = { phase: 'processing', done: st.affectedUsers, total: null };
    await run.report(true);
    return t.items - before.items;
  };

  // Sparse changes (1% of a large bucket) fill a batch only near the listing's end; cut one
  // every SPAN_BATCHES batches' worth of listed objects so their reading overlaps the listing.
  const span = { listed: () => listed.listed, objects: SPAN_BATCHES * config.batchSize };
  // However many objects one user has, an item stays small (a user may span several items).
  const caps = { objects: config.work.maxObjects, bytes: config.work.maxBytes };

  if (queued && deps.queue) {
    const queue = deps.queue;
    let done = 0;
    let polls = 0;
    const waitUntil = async (enough: () => boolean) => {
      while (!enough()) {
        opts.signal?.throwIfAborted();
        await new Promise((r) => setTimeout(r, QUEUE_POLL_MS));
        done = await refresh();
        // About every 2 s: items of dead workers back to the queue, items that failed for good,
        // and a run another instance ended (its lock's connection died, and the next run
        // marked this one aborted).
        if (++polls % 10 !== 0) continue;
        await queue.reclaimExpired();
        if ((await uncommittedItems(db, run.id, await queue.failedItems(run.id))).length > 0) throw new Error('a work item of the run failed on every try');
        if (!(await isRunActive(db, run.id))) throw new Error('the run was ended by another instance');
      }
    };
    for await (const batch of batchByUser(changes, config.batchSize, span, caps)) {
      opts.signal?.throwIfAborted();
      await queue.enqueue({ runId: run.id, no: ++made, batch });
      await waitUntil(() => made - before.lastItemNo - done < QUEUED_ITEMS);
    }
    await waitUntil(() => done >= made - before.lastItemNo);
    if (made === before.lastItemNo) await refresh();
    return;
  }

  const limit = pLimit(config.readConcurrency);
  const inFlight = new Set<Promise<unknown>>();
  // Progress is reported after each item, in order, but off the items' path: recording it
  // waits for the items being committed (they hold the run's row), and the next item must not.
  let reporting: Promise<unknown> = Promise.resolve();
  const reportAfterItem = () => {
    reporting = reporting.then(refresh);
    reporting.catch(() => undefined);
  };
  try {
    for await (const batch of batchByUser(changes, config.batchSize, span, caps)) {
      opts.signal?.throwIfAborted();
      const p: Promise<unknown> = processItem(deps, { runId: run.id, no: ++made, batch }, deps.instance ?? thisInstance(), limit, opts.signal).then(reportAfterItem);
      inFlight.add(p);
      void p.then(
        () => inFlight.delete(p),
        () => undefined,
      );
      // Awaited below; this only keeps a failure from being unhandled meanwhile.
      p.catch(() => undefined);
      if (inFlight.size >= LOCAL_ITEMS) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await reporting;
  } finally {
    // Even when the loop fails, let the commits in flight and their reports settle before the
    // run is recorded as finished, so a progress update cannot land after the final status.
    await Promise.allSettled(inFlight);
    await reporting.catch(() => undefined);
  }
  // Each item reported as it finished; the listing's counts may have moved since.
  st.counts.scanned = listed.scanned;
  st.counts.ignored = listed.ignored;
}
