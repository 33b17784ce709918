import { tryAcquireLock } from '../db/locks.js';
import { getRunningRunId } from '../db/runs.js';
import { getOutputState } from '../db/outputState.js';
import { countUsersWithValidCsv, databaseNowMs, iterateFingerprints, pruneRemovals } from '../db/sourceFiles.js';
import type { RunCounts, RunProgress, RunTrigger } from '../core/model.js';
import type { RunReport } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { diffSource } from '../pipeline/diffSource.js';
import { OUTPUT_KEY } from '../pipeline/exportOutput.js';
import { listSource } from '../pipeline/listSource.js';
import type { RunDeps } from './deps.js';
import { exportNow, onStore } from './export.js';
import { commitChanges } from './items.js';
import { carryOut } from './lifecycle.js';

export type { RunDeps } from './deps.js';
export { RunFailedError } from './lifecycle.js';

export interface RunOptions {
  trigger: RunTrigger;
  /** Reprocess every object and rewrite output.csv, ignoring what earlier runs recorded. */
  full?: boolean;
  /**
   * A targeted run: reread every object inside the scope, as a full run would, and nothing
   * outside it; objects outside it are never treated as removed. output.csv is rewritten only
   * when users changed (or it is missing or stale), as after an incremental run.
   */
  scope?: RunScope | null;
  /** Aborting stops the run between batches; work already committed stays. */
  signal?: AbortSignal;
  /** Called once the run has its id, before any work. */
  onStart?: (runId: number) => void;
  /** Called once its work is over, right before its outcome is recorded. */
  onEnding?: (runId: number) => void;
  onProgress?: (progress: RunProgress, counts: RunCounts) => void;
}

export type RunOutcome =
  | { kind: 'finished'; report: RunReport }
  /** Another process holds the run lock; runId is its run if it has recorded one yet. */
  | { kind: 'busy'; runId: number | null };

/**
 * One pass of the pipeline: list the source bucket, read what is new or changed, join each
 * affected user's CSV and image, upsert users in batches, and rewrite output.csv from the
 * table when it changed or is missing. The CLI, the HTTP API and the scheduler all call this.
 */
export async function runPipeline(deps: RunDeps, opts: RunOptions): Promise<RunOutcome> {
  const { db } = deps;
  const lock = await tryAcquireLock(db, 'run');
  if (!lock) return { kind: 'busy', runId: await getRunningRunId(db) };
  try {
    const scope = opts.scope ?? null;
    // A scoped run is full within its scope; the row says full only of a whole-bucket run.
    const full = (opts.full ?? false) && !scope;
    const report = await carryOut(deps, opts, { trigger: opts.trigger, full, reopenWindowMs: null, scope }, async (run) => {
      const listed = { listed: 0, scanned: 0, ignored: 0 };
      const diffStats = { outOfOrder: 0 };
      // On the database's clock, as recordedAtMs is: what is recorded from here on may be newer than the listing.
      await pruneRemovals(db);
      const listedFromMs = await databaseNowMs(db);
      const changes = diffSource(listSource(deps.store, deps.config.srcBucket, listed, scope), iterateFingerprints(db, undefined, scope), {
        full: full || scope !== null,
        stats: diffStats,
        listedFromMs,
      });
      await commitChanges(deps, opts, run, changes, listed, true);
      run.log.info(
        { scanned: listed.scanned, ignored: listed.ignored, affectedUsers: run.st.affectedUsers, outOfOrder: diffStats.outOfOrder },
        'source bucket processed',
      );
      run.st.counts.unchanged = Math.max(0, (await countUsersWithValidCsv(db, scope)) - run.st.counts.new - run.st.counts.updated);
      opts.signal?.throwIfAborted();
      const missing = (await onStore('checking output.csv', () => deps.store.stat(deps.config.resBucket, OUTPUT_KEY))) === null;
      if (full || missing || (await getOutputState(db)).stale) await exportNow(deps, opts, run, { wait: true, force: full || missing });
    });
    return { kind: 'finished', report };
  } finally {
    await lock.release();
  }
}
