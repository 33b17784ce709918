import os from 'node:os';
import pLimit from 'p-limit';
import type { Database } from '../db/index.js';
import { acquireLock, tryAcquireLock } from '../db/locks.js';
import {
  abortStaleRuns,
  createRun,
  finishRun,
  getOutputState,
  getRun,
  getRunningRunId,
  markOutputExported,
  reopenEventRun,
  updateRunProgress,
} from '../db/runs.js';
import { isRunActive, itemTotals, uncommittedItems } from '../db/runItems.js';
import { countUsersWithValidCsv, iterateFingerprints } from '../db/sourceFiles.js';
import type { Logger } from '../log.js';
import type { RunCounts, RunProgress, RunReport, RunTrigger } from '../core/model.js';
import { emptyCounts } from '../core/model.js';
import type { SourceChange } from '../pipeline/diffSource.js';
import { batchByUser, diffSource } from '../pipeline/diffSource.js';
import { ExportReadError, exportOutput, OUTPUT_KEY } from '../pipeline/exportOutput.js';
import { describeFailure, StoreFailure } from '../pipeline/failures.js';
import type { ListCounts } from '../pipeline/listSource.js';
import { listSource } from '../pipeline/listSource.js';
import type { RunDeps } from './deps.js';
import { thisInstance } from './deps.js';
import { processItem } from './worker.js';

export type { RunDeps } from './deps.js';

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
  const { db } = deps;
  const lock = await tryAcquireLock(db, 'run');
  if (!lock) return { kind: 'busy', runId: await getRunningRunId(db) };
  try {
    const full = opts.full ?? false;
    const report = await carryOut(deps, opts, { trigger: opts.trigger, full, reopenWindowMs: null }, async (run) => {
      const listed = { listed: 0, scanned: 0, ignored: 0 };
      const diffStats = { outOfOrder: 0 };
      const changes = diffSource(listSource(deps.store, deps.config.srcBucket, listed), iterateFingerprints(db), { full, stats: diffStats });
      await commitChanges(deps, opts, run, changes, listed, true);
      run.log.info(
        { scanned: listed.scanned, ignored: listed.ignored, affectedUsers: run.st.affectedUsers, outOfOrder: diffStats.outOfOrder },
        'source bucket processed',
      );
      run.st.counts.unchanged = Math.max(0, (await countUsersWithValidCsv(db)) - run.st.counts.new - run.st.counts.updated);
      opts.signal?.throwIfAborted();
      const needsExport =
        full ||
        (await getOutputState(db)).stale ||
        (await onStore('checking output.csv', () => deps.store.stat(deps.config.resBucket, OUTPUT_KEY))) === null;
      if (needsExport) await exportNow(deps, opts, run, 'wait');
    });
    return { kind: 'finished', report };
  } finally {
    await lock.release();
  }
}

export interface RunState {
  counts: RunCounts;
  progress: RunProgress;
  outputWritten: boolean;
  /** Users with a new, changed or removed file, processed so far. */
  affectedUsers: number;
}

/** A run in progress, as the steps of carryOut see it. */
export interface ActiveRun {
  id: number;
  st: RunState;
  log: Logger;
  /** Hands progress to the caller, and with persist also records it in the run's row. */
  report(persist: boolean): Promise<void>;
}

const outcomeOf = (st: RunState) => ({ counts: st.counts, progress: st.progress, outputWritten: st.outputWritten });

/**
 * Records a run around work: creates (or continues) its row, records its outcome however the
 * work ends, and returns its report. Call while holding the run lock, or for an event run the
 * events lock.
 */
export async function carryOut(
  deps: RunDeps,
  opts: { signal?: AbortSignal; onStart?: (runId: number) => void; onProgress?: RunOptions['onProgress'] },
  how: { trigger: RunTrigger; full: boolean; reopenWindowMs: number | null },
  work: (run: ActiveRun) => Promise<void>,
): Promise<RunReport> {
  const { db, log } = deps;
  const stale = await abortStaleRuns(db, how.trigger === 'event' ? 'event' : 'run');
  if (stale > 0) log.warn({ stale }, 'marked runs left by a stopped process as aborted');
  const reopened = how.reopenWindowMs === null ? null : await reopenEventRun(db, how.reopenWindowMs);
  const runId = reopened?.id ?? (await createRun(db, { trigger: how.trigger, full: how.full, host: os.hostname() }));
  const runLog = log.child({ runId });
  if (!reopened) runLog.info({ trigger: how.trigger, full: how.full }, 'run started');
  opts.onStart?.(runId);

  const st: RunState = {
    counts: reopened?.counts ?? emptyCounts(),
    progress: { phase: 'starting', done: 0, total: null },
    outputWritten: reopened?.outputWritten ?? false,
    affectedUsers: 0,
  };
  const run: ActiveRun = {
    id: runId,
    st,
    log: runLog,
    report: (persist) => {
      opts.onProgress?.(st.progress, st.counts);
      return persist ? updateRunProgress(db, runId, st.progress, st.counts) : Promise.resolve();
    },
  };
  try {
    await work(run);
    st.progress = { phase: 'done', done: st.affectedUsers, total: st.affectedUsers };
    await finishRun(db, runId, { ...outcomeOf(st), status: 'succeeded', error: null });
  } catch (err) {
    const aborted = opts.signal?.aborted === true;
    const reason = aborted ? 'aborted: the service is shutting down' : describeFailure(err);
    runLog.error({ err, phase: st.progress.phase }, aborted ? 'run aborted' : 'run failed');
    const status = aborted ? 'aborted' : 'failed';
    const failedId = await recordFailure(db, runId, reopened !== null, { ...outcomeOf(st), status, error: reason }, how).catch((e: unknown) => {
      runLog.error({ err: e }, 'could not record the run outcome');
      return runId;
    });
    throw new RunFailedError(failedId, reason, { cause: err });
  }
  const report = (await getRun(db, runId)) as RunReport;
  if (how.trigger !== 'event') runLog.info({ counts: report.counts, output_written: report.output_written }, 'run finished');
  return report;
}

// Items of this process in progress at once: one is read while another commits.
const LOCAL_ITEMS = 2;
// The queue holds at most this many items of a run that no one has finished yet.
const QUEUED_ITEMS = 16;
const QUEUE_POLL_MS = 200;

/**
 * Records a run's failure. A continued event run keeps the success it had, with what this
 * batch committed before it failed; the failure gets a row of its own. Returns that row.
 */
async function recordFailure(
  db: Database,
  runId: number,
  continued: boolean,
  end: Parameters<typeof finishRun>[2],
  how: { trigger: RunTrigger; full: boolean },
): Promise<number> {
  if (!continued) {
    await finishRun(db, runId, end);
    return runId;
  }
  await finishRun(db, runId, { ...end, status: 'succeeded', error: null, progress: { phase: 'done', done: end.progress.done, total: end.progress.done } });
  const failed = await createRun(db, { trigger: how.trigger, full: how.full, host: os.hostname() });
  await finishRun(db, failed, { ...end, counts: emptyCounts(), outputWritten: false });
  return failed;
}

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
    };
    st.affectedUsers = t.users - before.users;
    st.progress = { phase: 'processing', done: st.affectedUsers, total: null };
    await run.report(true);
    return t.items - before.items;
  };

  if (queued && deps.queue) {
    const queue = deps.queue;
    let done = 0;
    let polls = 0;
    const waitUntil = async (enough: () => boolean) => {
      while (!enough()) {
        opts.signal?.throwIfAborted();
        await new Promise((r) => setTimeout(r, QUEUE_POLL_MS));
        done = await refresh();
        // About every 2 s: items that failed for good, and a run another instance ended (its
        // lock's connection died, and the next run marked this one aborted).
        if (++polls % 10 !== 0) continue;
        if ((await uncommittedItems(db, run.id, await queue.failedItems(run.id))).length > 0) throw new Error('a work item of the run failed on every try');
        if (!(await isRunActive(db, run.id))) throw new Error('the run was ended by another instance');
      }
    };
    for await (const batch of batchByUser(changes, config.batchSize)) {
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
    for await (const batch of batchByUser(changes, config.batchSize)) {
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

/**
 * Rewrites output.csv under the export lock, which only exports take: items and event batches
 * commit meanwhile, and the export's snapshot keeps the file equal to the table at one moment.
 * With 'try', gives up at once when another export is in progress (it clears the lag or
 * leaves it for the next try); returns whether it wrote the file.
 */
export async function exportNow(deps: RunDeps, opts: { signal?: AbortSignal }, run: ActiveRun, wait: 'wait' | 'try'): Promise<boolean> {
  const { db, store, config } = deps;
  const { st } = run;
  const lock = wait === 'wait' ? await acquireLock(db, 'export', opts.signal) : await tryAcquireLock(db, 'export');
  if (!lock) return false;
  try {
    st.progress = { phase: 'exporting', done: 0, total: null };
    await run.report(true);
    const { rows, version } = await onStore('writing output.csv', () =>
      exportOutput(db, store, config.resBucket, {
        onRows: (n) => {
          st.progress = { phase: 'exporting', done: n, total: null };
          void run.report(false);
        },
      }),
    );
    await markOutputExported(db, version);
    st.outputWritten = true;
    run.log.info({ rows, version, bucket: config.resBucket, key: OUTPUT_KEY }, 'wrote output.csv');
    return true;
  } finally {
    await lock.release();
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
