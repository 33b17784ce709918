import os from 'node:os';
import pLimit from 'p-limit';
import type { Config } from '../config.js';
import type { Database } from '../db/index.js';
import { withTransaction } from '../db/index.js';
import {
  abortStaleRuns,
  addRunIssues,
  createRun,
  finishRun,
  getRun,
  getRunningRunId,
  isOutputStale,
  setOutputStale,
  tryAcquireRunLock,
  updateRunProgress,
} from '../db/runs.js';
import { countUsersWithValidCsv, deleteFileStates, loadFileStates, loadFingerprints, saveFileStates } from '../db/sourceFiles.js';
import { upsertUsers } from '../db/users.js';
import type { Logger } from '../log.js';
import type { FileState, RunCounts, RunIssue, RunProgress, RunReport, RunTrigger, SourceObject, UserRow } from '../model.js';
import { emptyCounts, fingerprintOf } from '../model.js';
import type { ObjectStore } from '../storage/index.js';
import { exportOutput, OUTPUT_KEY } from './exportOutput.js';
import type { Listing } from './listSource.js';
import { classifyKey, listSource } from './listSource.js';
import { processObject } from './processObject.js';
import { resolveUser } from './resolveUser.js';

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
  /** Users with a new, changed or removed file: the processing phase's total. */
  affectedUsers: number;
}

const outcomeOf = (st: RunState) => ({ counts: st.counts, progress: st.progress, outputWritten: st.outputWritten });

async function processBucket(deps: RunDeps, opts: RunOptions, runId: number, st: RunState, log: Logger): Promise<void> {
  const { db, store, config } = deps;
  const report = (persist: boolean) => {
    opts.onProgress?.(st.progress, st.counts);
    return persist ? updateRunProgress(db, runId, st.progress, st.counts) : Promise.resolve();
  };

  st.progress = { phase: 'listing', done: 0, total: null };
  await report(true);
  const listing = await listSource(store, config.srcBucket, (n) => {
    st.progress = { phase: 'listing', done: n, total: null };
    void report(false);
  });
  st.counts.scanned = listing.objects.size;
  st.counts.ignored = listing.ignored;

  const { changed, removedByUser, affected } = await diffAgainstState(db, listing, opts.full ?? false);
  log.info({ scanned: st.counts.scanned, ignored: st.counts.ignored, changed: changed.size, affectedUsers: affected.length }, 'listed source bucket');
  st.affectedUsers = affected.length;
  st.progress = { phase: 'processing', done: 0, total: affected.length };
  await report(true);

  const limit = pLimit(config.readConcurrency);
  for (let i = 0; i < affected.length; i += config.batchSize) {
    opts.signal?.throwIfAborted();
    const users = affected.slice(i, i + config.batchSize);
    const stored = new Map((await loadFileStates(db, users)).map((f) => [f.key, f]));

    const toRead = users.flatMap((u) => (listing.byUser.get(u) ?? []).filter((k) => changed.has(k)));
    const results = await Promise.all(
      toRead.map((key) => limit(() => processObject(listing.objects.get(key) as SourceObject, store, config.srcBucket, config.limits))),
    );

    const fresh = new Map<string, FileState>();
    const gone: string[] = users.flatMap((u) => removedByUser.get(u) ?? []);
    results.forEach((r, idx) => {
      if ('vanished' in r) gone.push(toRead[idx]!);
      else {
        fresh.set(r.state.key, r.state);
        if (r.read) st.counts.read++;
      }
    });
    const rejected: RunIssue[] = [...fresh.values()]
      .filter((f) => f.status === 'rejected')
      .map((f) => ({ key: f.key, reason: f.reason ?? '' }));

    const rows: UserRow[] = [];
    const warnings: RunIssue[] = [];
    const goneSet = new Set(gone);
    for (const u of users) {
      const files = (listing.byUser.get(u) ?? [])
        .filter((k) => !goneSet.has(k))
        .map((k) => fresh.get(k) ?? stored.get(k))
        .filter((f): f is FileState => f !== undefined);
      const res = resolveUser(u, files, config.srcBucket);
      if (res.row) rows.push(res.row);
      warnings.push(...res.warnings);
    }

    await withTransaction(db, async (tx) => {
      await saveFileStates(tx, [...fresh.values()]);
      await deleteFileStates(tx, gone);
      const up = await upsertUsers(tx, rows);
      if (up.inserted.length + up.updated.length > 0) await setOutputStale(tx, true);
      await addRunIssues(tx, runId, 'rejected', rejected);
      await addRunIssues(tx, runId, 'warning', warnings);
      st.counts.new += up.inserted.length;
      st.counts.updated += up.updated.length;
      st.counts.rejected += rejected.length;
      st.progress = { phase: 'processing', done: Math.min(i + users.length, affected.length), total: affected.length };
      await updateRunProgress(tx, runId, st.progress, st.counts);
    });
    for (const r of rejected) log.warn({ key: r.key, reason: r.reason }, 'file rejected');
    opts.onProgress?.(st.progress, st.counts);
  }
  st.counts.unchanged = Math.max(0, (await countUsersWithValidCsv(db)) - st.counts.new - st.counts.updated);

  opts.signal?.throwIfAborted();
  const needsExport = (opts.full ?? false) || (await isOutputStale(db)) || (await store.stat(config.resBucket, OUTPUT_KEY)) === null;
  if (needsExport) {
    st.progress = { phase: 'exporting', done: 0, total: null };
    await report(true);
    const rows = await exportOutput(db, store, config.resBucket, (n) => {
      st.progress = { phase: 'exporting', done: n, total: null };
      void report(false);
    });
    await setOutputStale(db, false);
    st.outputWritten = true;
    log.info({ rows, bucket: config.resBucket, key: OUTPUT_KEY }, 'wrote output.csv');
  }
}

/**
 * Compares the listing with what earlier runs recorded. An object is changed when it is new
 * or its etag, size or modification time differ; removed when it is recorded but not listed.
 * The users owning any of these are the only ones a run touches.
 */
async function diffAgainstState(db: Database, listing: Listing, full: boolean) {
  const fingerprints = await loadFingerprints(db);
  const changed = new Set<string>();
  const affectedSet = new Set<string>();
  for (const obj of listing.objects.values()) {
    if (full || fingerprints.get(obj.key) !== fingerprintOf(obj.etag, obj.size, obj.lastModifiedMs)) {
      changed.add(obj.key);
      affectedSet.add(obj.userId);
    }
  }
  const removedByUser = new Map<string, string[]>();
  for (const key of fingerprints.keys()) {
    if (listing.objects.has(key)) continue;
    // Recorded keys were classified when first seen, so this cannot be null.
    const userId = classifyKey(key)?.userId ?? key;
    affectedSet.add(userId);
    const keys = removedByUser.get(userId);
    if (keys) keys.push(key);
    else removedByUser.set(userId, [key]);
  }
  // Sorted so batches, logs and progress are the same from run to run.
  const affected = [...affectedSet].sort();
  return { changed, removedByUser, affected };
}

function describeFailure(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: string }).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}
