import os from 'node:os';
import { abortStaleRuns, createRun, finishRun, getRun, reopenEventRun, updateRunProgress } from '../db/runs.js';
import type { Database } from '../db/index.js';
import type { Logger } from '../log.js';
import type { RunCounts, RunProgress, RunReport, RunTrigger } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { emptyCounts } from '../core/model.js';
import { describeFailure } from '../pipeline/failures.js';
import type { RunDeps } from './deps.js';

// A run's record, from its row's creation to its outcome. This module is the only writer of
// run state: the steps of a run change its RunState and call report(), and carryOut records
// how it ended.

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
  opts: {
    signal?: AbortSignal;
    onStart?: (runId: number) => void;
    onEnding?: (runId: number) => void;
    onProgress?: (progress: RunProgress, counts: RunCounts) => void;
  },
  how: { trigger: RunTrigger; full: boolean; reopenWindowMs: number | null; scope?: RunScope | null },
  work: (run: ActiveRun) => Promise<void>,
): Promise<RunReport> {
  const { db, log } = deps;
  const stale = await abortStaleRuns(db, how.trigger === 'event' ? 'event' : 'run');
  if (stale > 0) log.warn({ stale }, 'marked runs left by a stopped process as aborted');
  const reopened = how.reopenWindowMs === null ? null : await reopenEventRun(db, how.reopenWindowMs);
  const runId = reopened?.id ?? (await createRun(db, { trigger: how.trigger, full: how.full, host: os.hostname(), scope: how.scope }));
  const runLog = log.child({ runId });
  if (!reopened) runLog.info({ trigger: how.trigger, full: how.full, ...(how.scope ? { scope: how.scope } : {}) }, 'run started');
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
    opts.onEnding?.(runId);
    if (!(await finishRun(db, runId, { ...outcomeOf(st), status: 'succeeded', error: null }))) {
      throw new Error('the run was ended elsewhere before it finished (this instance lost its lock)');
    }
  } catch (err) {
    const aborted = opts.signal?.aborted === true;
    const reason = aborted ? 'aborted: the service is shutting down' : describeFailure(err);
    runLog.error({ err, phase: st.progress.phase }, aborted ? 'run aborted' : 'run failed');
    const status = aborted ? 'aborted' : 'failed';
    if (st.progress.phase !== 'done') opts.onEnding?.(runId);
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

/**
 * Records a run's failure. A continued event run keeps the success it had, with what this
 * batch committed before it failed; the failure gets a row of its own. Returns that row.
 */
async function recordFailure(
  db: Database,
  runId: number,
  continued: boolean,
  end: Parameters<typeof finishRun>[2],
  how: { trigger: RunTrigger; full: boolean; scope?: RunScope | null },
): Promise<number> {
  if (!continued) {
    await finishRun(db, runId, end);
    return runId;
  }
  await finishRun(db, runId, { ...end, status: 'succeeded', error: null, progress: { phase: 'done', done: end.progress.done, total: end.progress.done } });
  const failed = await createRun(db, { trigger: how.trigger, full: how.full, host: os.hostname(), scope: how.scope });
  await finishRun(db, failed, { ...end, counts: emptyCounts(), outputWritten: false });
  return failed;
}
