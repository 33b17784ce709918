import { forgetEvents, hasPendingEvents, takePendingEvents } from '../db/events.js';
import { isLockHeld, tryAcquireLock } from '../db/locks.js';
import { getOutputState, markEventsOweExport } from '../db/outputState.js';
import { databaseNowMs, fingerprintsOf } from '../db/sourceFiles.js';
import type { RunCounts, RunReport } from '../core/model.js';
import { emptyCounts } from '../core/model.js';
import { changesForKeys } from '../pipeline/eventChanges.js';
import type { RunDeps } from './deps.js';
import { exportNow } from './export.js';
import { commitChanges } from './items.js';
import { carryOut } from './lifecycle.js';

// Event-driven work: the keys that bucket notifications and the folder watch recorded, taken
// in batches. The same run record, commit and export as a full run (run.ts), without the listing.

export interface EventBatchOptions {
  signal?: AbortSignal;
  /** Keys taken from pending_events per batch. */
  maxKeys: number;
  /** output.csv is rewritten at most this often by event batches. */
  exportIntervalMs: number;
  /** An event batch continues the newest run when that is an event run younger than this. */
  coalesceMs: number;
  onStart?: (runId: number) => void;
}

export type EventBatchOutcome =
  | { kind: 'busy' }
  /** Nothing pending; exportInMs says when output.csv will be due, if it lags. */
  | { kind: 'idle'; exportInMs: number | null }
  | {
      kind: 'finished';
      report: RunReport;
      /** What this batch alone did, for metrics (the run may span several batches). */
      counts: RunCounts;
      /** More keys are pending: take the next batch at once. */
      more: boolean;
      /** When output.csv will be due (null: it does not lag). */
      exportInMs: number | null;
    };

/**
 * Processes keys that events named (pending_events), touching only the users they concern,
 * then rewrites output.csv if it lags and EXPORT_INTERVAL has passed since it was last
 * written. Holds the events lock, so one batch goes on at a time across instances, but not the
 * run lock: batches go on during a run and during an export. The user locks keep their
 * commits apart from a run's, and the newest state of each object wins (commitItem).
 */
// How soon to look again when output.csv is due but another export holds the lock.
const EXPORT_BUSY_RETRY_MS = 1000;

export async function runEventBatch(deps: RunDeps, opts: EventBatchOptions): Promise<EventBatchOutcome> {
  const { db, config } = deps;
  // Event processing writes output.csv only when event batches made it lag; a run that failed
  // to export leaves it to the next run, as without events.
  const exportIn = (o: { stale: boolean; eventsOwe: boolean; msSinceExport: number | null }) =>
    !o.stale || !o.eventsOwe ? null : Math.max(0, opts.exportIntervalMs - (o.msSinceExport ?? Number.POSITIVE_INFINITY));
  // Looked at before taking the lock, so idle instances do not take it in turn all the time.
  if (!(await hasPendingEvents(db))) {
    const due = exportIn(await getOutputState(db));
    if (due !== 0) return { kind: 'idle', exportInMs: due };
    // Due, but an export is being written (a run's, or another instance's): it may clear the
    // lag; look again in a while rather than open an event run only to find the lock taken.
    if (await isLockHeld(db, 'export')) return { kind: 'idle', exportInMs: EXPORT_BUSY_RETRY_MS };
  }
  const lock = await tryAcquireLock(db, 'events');
  if (!lock) return { kind: 'busy' };
  try {
    const pending = await takePendingEvents(db, opts.maxKeys);
    const output = await getOutputState(db);
    // output.csv lags after event batches (here or elsewhere, before a restart or a failed
    // export): it is rewritten once EXPORT_INTERVAL has passed since it was last written.
    if (pending.length === 0 && exportIn(output) !== 0) return { kind: 'idle', exportInMs: exportIn(output) };

    let before = emptyCounts();
    const report = await carryOut(deps, opts, { trigger: 'event', full: false, reopenWindowMs: opts.coalesceMs }, async (run) => {
      before = { ...run.st.counts };
      const listed = { listed: pending.length, scanned: before.scanned, ignored: before.ignored };
      const keys = pending.map((e) => e.key);
      const seenAtMs = await databaseNowMs(db);
      const changes = await changesForKeys(deps.store, config.srcBucket, keys, await fingerprintsOf(db, keys), {
        limits: config.limits,
        concurrency: config.readConcurrency,
        counts: listed,
        seenAtMs,
      });
      // Events concern a few users and want them soon: this process does them itself.
      await commitChanges(deps, opts, run, toAsync(changes), listed, false);
      run.st.counts.scanned = listed.scanned;
      run.st.counts.ignored = listed.ignored;
      // Only after the users are committed: a crash before this processes the keys again.
      await forgetEvents(db, pending);
      // A batch that changed users owes output.csv their change; one that changed nothing owes
      // nothing (during a run, the lag is the run's, and so is its export).
      if (run.st.counts.new + run.st.counts.updated > before.new + before.updated) await markEventsOweExport(db);
      run.log.info({ keys: pending.length, affectedUsers: run.st.affectedUsers }, 'event batch processed');
      opts.signal?.throwIfAborted();
      // Another instance exporting already: it clears the lag, or leaves it for the next batch.
      if (exportIn(await getOutputState(db)) === 0) await exportNow(deps, opts, run, { wait: false, force: false });
    });
    const counts = Object.fromEntries(Object.entries(report.counts).map(([k, v]) => [k, v - before[k as keyof RunCounts]])) as unknown as RunCounts;
    return { kind: 'finished', report, counts, more: pending.length === opts.maxKeys, exportInMs: exportIn(await getOutputState(db)) };
  } finally {
    await lock.release();
  }
}

// eslint-disable-next-line @typescript-eslint/require-await -- an async iterable of what is already at hand
async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

