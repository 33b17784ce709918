import os from 'node:os';
import pLimit from 'p-limit';
import type { Config } from '../config.js';
import type { Database } from '../db/index.js';
import {
  abortStaleRuns,
  createRun,
  finishRun,
  getRun,
  getRunningRunId,
  isOutputStale,
  setOutputStale,
  tryAcquireRunLock,
  updateRunProgress,
} from '../db/runs.js';
import { countUsersWithValidCsv, iterateFingerprints, loadFileStates } from '../db/sourceFiles.js';
import type { Logger } from '../log.js';
import type { RunCounts, RunProgress, RunReport, RunTrigger } from '../model.js';
import { emptyCounts } from '../model.js';
import type { ObjectStore } from '../storage/index.js';
import { commitBatch } from './commitBatch.js';
import { batchByUser, diffSource } from './diffSource.js';
import { ExportReadError, exportOutput, OUTPUT_KEY } from './exportOutput.js';
import { describeFailure, StoreFailure } from './failures.js';
import { listSource } from './listSource.js';
import { planBatch } from './planBatch.js';
import { processObject } from './processObject.js';

export interface RunDeps {
  db: Database;
  store: ObjectStore;
  config: Config;
  log: Logger;
}

export interface RunOptions {
  trigger: RunTrigger;
  /** Reprocess every object and rewrite output.csv, ignoring what earlier runs recorded. */
  full?: boolean;
  /** Aborting stops the run between batches; work already committed stays. */
  signal?: AbortSignal;
  /** Called once the run has its id, before any work. */
  onStart?: (runId: number) => void;
  onProgress?: (progress: RunProgress, counts: RunCounts) => void;
}

export type RunOutcome =
  | { kind: 'finished'; report: RunReport }
  /** Another process holds the run lock; runId is its run if it has recorded one yet. */
  | { kind: 'busy'; runId: number | null };

/** Thrown when a run fails; the run row already says why, when the database allowed it. */
export class RunFailedError extends Error {
  override name = 'RunFailedError';
  constructor(
    readonly runId: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * One pass of the pipeline: list the source bucket, read what is new or changed, join each
 * affected user's CSV and image, upsert users in batches, and rewrite output.csv from the
 * table when it changed or is missing. The CLI, the HTTP API and the scheduler all call this.
 */
export async function runPipeline(deps: RunDeps, opts: RunOptions): Promise<RunOutcome> {
  const { db, log } = deps;
  const lock = await tryAcquireRunLock(db);
  if (!lock) return { kind: 'busy', runId: await getRunningRunId(db) };
  try {
    const stale = await abortStaleRuns(db);
    if (stale > 0) log.warn({ stale }, 'marked runs left by a stopped process as aborted');
    const full = opts.full ?? false;
    const runId = await createRun(db, { trigger: opts.trigger, full, host: os.hostname() });
    const runLog = log.child({ runId });
    runLog.info({ trigger: opts.trigger, full }, 'run started');
    opts.onStart?.(runId);

    const state: RunState = {
      counts: emptyCounts(),
      progress: { phase: 'starting', done: 0, total: null },
      outputWritten: false,
      affectedUsers: 0,
    };
    try {
      await processBucket(deps, opts, runId, state, runLog);
      state.progress = { phase: 'done', done: state.affectedUsers, total: state.affectedUsers };
      await finishRun(db, runId, { ...outcomeOf(state), status: 'succeeded', error: null });
    } catch (err) {
      const aborted = opts.signal?.aborted === true;
      const reason = aborted ? 'aborted: the service is shutting down' : describeFailure(err);
      runLog.error({ err, phase: state.progress.phase }, aborted ? 'run aborted' : 'run failed');
      await finishRun(db, runId, { ...outcomeOf(state), status: aborted ? 'aborted' : 'failed', error: reason }).catch((e: unknown) =>
        runLog.error({ err: e }, 'could not record the run outcome'),
      );
      throw new RunFailedError(runId, reason, { cause: err });
    }
    const report = (await getRun(db, runId)) as RunReport;
    runLog.info({ counts: report.counts, output_written: report.output_written }, 'run finished');
    return { kind: 'finished', report };
  } finally {
    await lock.release();
  }
}

interface RunState {
  counts: RunCounts;
  progress: RunProgress;
  outputWritten: boolean;
  /** Users with a new, changed or removed file, processed so far. */
  affectedUsers: number;
}

const outcomeOf = (st: RunState) => ({ counts: st.counts, progress: st.progress, outputWritten: st.outputWritten });

async function processBucket(deps: RunDeps, opts: RunOptions, runId: number, st: RunState, log: Logger): Promise<void> {
  const { db, store, config } = deps;
  const report = (persist: boolean) => {
    opts.onProgress?.(st.progress, st.counts);
    return persist ? updateRunProgress(db, runId, st.progress, st.counts) : Promise.resolve();
  };

  // Listing, diffing, reading and committing overlap: the listing is pulled as batches are
  // needed, and batch i+1 is read while batch i commits. Only the batches in flight are in
  // memory, however large the bucket.
  st.progress = { phase: 'processing', done: 0, total: null };
  await report(true);
  const listed = { listed: 0, scanned: 0, ignored: 0 };
  const diffStats = { outOfOrder: 0 };
  const changes = diffSource(listSource(store, config.srcBucket, listed), iterateFingerprints(db), {
    full: opts.full ?? false,
    stats: diffStats,
  });
  const limit = pLimit(config.readConcurrency);
  let committing: Promise<void> | null = null;
  try {
    for await (const batch of batchByUser(changes, config.batchSize)) {
      opts.signal?.throwIfAborted();
      const results = await Promise.all(
        batch.changed.map((object) => limit(() => processObject(object, store, config.srcBucket, { limits: config.limits, log }))),
      );
      if (committing) await committing;
      committing = (async () => {
        // Loaded only now: the batch before may have just recorded files of the same user.
        const plan = planBatch(batch, results, await loadFileStates(db, batch.users), config.srcBucket);
        const r = await commitBatch(db, runId, plan, log);
        st.counts.scanned = listed.scanned;
        st.counts.ignored = listed.ignored;
        st.counts.read += plan.read;
        st.counts.new += r.inserted;
        st.counts.updated += r.updated;
        st.counts.rejected += r.rejected.length + r.issues.length;
        st.affectedUsers += batch.users.length;
        st.progress = { phase: 'processing', done: st.affectedUsers, total: null };
        for (const i of [...r.rejected, ...r.issues]) log.warn({ key: i.key, reason: i.reason }, 'file rejected');
        await report(true);
      })();
      // Awaited before the next commit or below; this only keeps it from being unhandled meanwhile.
      committing.catch(() => undefined);
    }
  } finally {
    // Even when the loop fails, let the commit in flight settle before the run is recorded as
    // finished, so its progress update cannot land after the final status.
    await committing?.catch(() => undefined);
  }
  if (committing) await committing;
  st.counts.scanned = listed.scanned;
  st.counts.ignored = listed.ignored;
  log.info({ scanned: listed.scanned, ignored: listed.ignored, affectedUsers: st.affectedUsers, outOfOrder: diffStats.outOfOrder }, 'source bucket processed');
  st.counts.unchanged = Math.max(0, (await countUsersWithValidCsv(db)) - st.counts.new - st.counts.updated);

  opts.signal?.throwIfAborted();
  const needsExport = (opts.full ?? false) || (await isOutputStale(db)) || (await onStore('checking output.csv', () => store.stat(config.resBucket, OUTPUT_KEY))) === null;
  if (needsExport) {
    st.progress = { phase: 'exporting', done: 0, total: null };
    await report(true);
    const rows = await onStore('writing output.csv', () =>
      exportOutput(db, store, config.resBucket, (n) => {
        st.progress = { phase: 'exporting', done: n, total: null };
        void report(false);
      }),
    );
    await setOutputStale(db, false);
    st.outputWritten = true;
    log.info({ rows, bucket: config.resBucket, key: OUTPUT_KEY }, 'wrote output.csv');
  }
}

/**
 * Runs a store operation, turning its failure into a StoreFailure that says what was being
 * done. The export also reads the database while it writes; such a failure is passed on as
 * the database error it is.
 */
async function onStore<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ExportReadError) throw err.cause;
    throw new StoreFailure(`the object store failed while ${doing}`, { cause: err });
  }
}
