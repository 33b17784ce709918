import type { ReportedIssue, RunCounts, RunIssue, RunProgress, RunReport, RunStatus, RunTrigger } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { erasedSince } from './erasures.js';
import type { Queryable } from './pool.js';
import { runWorkers } from './runItems.js';

/**
 * Runs left 'running' by a process that died. Event runs are carried out under the events lock
 * and every other run under the run lock, so the holder of one finds only stale runs of its
 * own kind running: call with kind 'event' while holding the events lock, 'run' the run lock.
 */
export async function abortStaleRuns(db: Queryable, kind: 'run' | 'event'): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE runs SET status = 'aborted', finished_at = now(),
       error = coalesce(error, 'the process running it stopped before it finished')
     WHERE status = 'running' AND (trigger = 'event') = ($1 = 'event')`,
    [kind],
  );
  return rowCount ?? 0;
}

export async function createRun(db: Queryable, run: { trigger: RunTrigger; full: boolean; host: string; scope?: RunScope | null }): Promise<number> {
  const scope = run.scope ? { user_ids: run.scope.userIds, prefix: run.scope.prefix } : null;
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO runs (trigger, full_scan, host, progress, scope) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
    [run.trigger, run.full, run.host, { phase: 'starting', done: 0, total: null } satisfies RunProgress, scope],
  );
  return rows[0]!.id;
}

export async function updateRunProgress(db: Queryable, id: number, progress: RunProgress, counts: RunCounts): Promise<void> {
  await db.query(
    `UPDATE runs SET progress = $2, scanned = $3, read = $4, new = $5, updated = $6, unchanged = $7,
       rejected = $8, ignored = $9, erased = $10 WHERE id = $1`,
    [id, progress, counts.scanned, counts.read, counts.new, counts.updated, counts.unchanged, counts.rejected, counts.ignored, counts.erased],
  );
}

/**
 * Records an item's rejected files and warnings, at most `limit` per run in all (RUN_ISSUES_LIMIT):
 * past it, issues are only counted as left out. A warning about a user as a whole (userId
 * set) replaces that user's earlier one of the run, and takes no more room; left out, it is
 * counted once per run (run_issue_left_out_users). Called last in
 * an item's transaction: the run's tally row, locked here, keeps the count exact while items
 * of the run commit side by side. Returns how many were left out.
 */
export async function recordRunIssues(
  tx: Queryable,
  runId: number,
  limit: number,
  issues: { rejected: RunIssue[]; warnings: RunIssue[] },
): Promise<number> {
  type Issue = RunIssue & { severity: 'rejected' | 'warning' };
  const all: Issue[] = [
    ...issues.rejected.map((i) => ({ ...i, severity: 'rejected' as const })),
    ...issues.warnings.map((i) => ({ ...i, severity: 'warning' as const })),
  ];
  if (all.length === 0) return 0;
  const { rows } = await tx.query<{ recorded: number }>(
    `INSERT INTO run_issue_tally AS t (run_id) VALUES ($1) ON CONFLICT (run_id) DO UPDATE SET recorded = t.recorded RETURNING recorded`,
    [runId],
  );
  const perUser = all.filter((i) => i.userId !== undefined);
  const replaced = new Set<string>();
  if (perUser.length > 0) {
    const { rows: done } = await tx.query<{ user_id: string }>(
      `UPDATE run_issues r SET severity = w.severity, key = w.key, reason = w.reason
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS w(user_id, severity, key, reason)
       WHERE r.run_id = $1 AND r.user_id = w.user_id RETURNING r.user_id`,
      [runId, perUser.map((i) => i.userId), perUser.map((i) => i.severity), perUser.map((i) => i.key), perUser.map((i) => i.reason)],
    );
    for (const d of done) replaced.add(d.user_id);
  }
  const fresh = all.filter((i) => i.userId === undefined || !replaced.has(i.userId));
  const kept = fresh.slice(0, Math.max(0, limit - rows[0]!.recorded));
  if (kept.length > 0) {
    await tx.query(
      `INSERT INTO run_issues (run_id, severity, key, reason, user_id)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])`,
      [runId, kept.map((i) => i.severity), kept.map((i) => i.key), kept.map((i) => i.reason), kept.map((i) => i.userId ?? null)],
    );
  }
  const dropped = fresh.slice(kept.length);
  const droppedUsers = dropped.flatMap((i) => (i.userId === undefined ? [] : [i.userId]));
  let newlyDroppedUsers = 0;
  if (droppedUsers.length > 0) {
    // A user's warning left out by an earlier item of the run was counted then.
    const { rowCount } = await tx.query(
      `INSERT INTO run_issue_left_out_users (run_id, user_id) SELECT $1, * FROM unnest($2::text[]) ON CONFLICT DO NOTHING`,
      [runId, droppedUsers],
    );
    newlyDroppedUsers = rowCount ?? 0;
  }
  const leftOut = dropped.length - droppedUsers.length + newlyDroppedUsers;
  await tx.query(`UPDATE run_issue_tally SET recorded = recorded + $2, left_out = left_out + $3 WHERE run_id = $1`, [runId, kept.length, leftOut]);
  return leftOut;
}

/**
 * Records how a run ended. Only a run still running: false when another instance ended it
 * first (it found the run stale after this one lost its lock's connection), whose word stays.
 */
export async function finishRun(
  db: Queryable,
  id: number,
  end: { status: Exclude<RunStatus, 'running'>; counts: RunCounts; progress: RunProgress; outputWritten: boolean; error: string | null },
): Promise<boolean> {
  const c = end.counts;
  const { rowCount } = await db.query(
    `UPDATE runs SET progress = $2, scanned = $3, read = $4, new = $5, updated = $6, unchanged = $7, rejected = $8, ignored = $9,
       status = $10, finished_at = now(), output_written = $11, error = $12, erased = $13,
       -- Users erased while it ran leave its scope (an erasure scrubs only ended runs').
       scope = CASE WHEN jsonb_typeof(scope->'user_ids') = 'array' THEN jsonb_set(scope, '{user_ids}', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(scope->'user_ids') x
         WHERE NOT ${erasedSince("x #>> '{}'", 'started_at')})) ELSE scope END
     WHERE id = $1 AND status = 'running'`,
    [id, end.progress, c.scanned, c.read, c.new, c.updated, c.unchanged, c.rejected, c.ignored, end.status, end.outputWritten, end.error, c.erased],
  );
  return rowCount === 1;
}

interface RunRow {
  id: number;
  trigger: RunTrigger;
  full_scan: boolean;
  status: RunStatus;
  started_at: Date;
  finished_at: Date | null;
  scanned: number;
  read: number;
  new: number;
  updated: number;
  unchanged: number;
  rejected: number;
  ignored: number;
  erased: number;
  output_written: boolean;
  progress: RunProgress;
  error: string | null;
  issues_left_out: string | number | null;
  scope: RunReport['scope'];
}

// Each run with what its items left out of run_issues (past RUN_ISSUES_LIMIT).
const RUNS = `SELECT r.*, t.left_out AS issues_left_out FROM runs r LEFT JOIN run_issue_tally t ON t.run_id = r.id`;

function toReport(r: RunRow, rejected: ReportedIssue[], warnings: ReportedIssue[], workers: RunReport['workers'] = []): RunReport {
  return {
    id: r.id,
    trigger: r.trigger,
    full: r.full_scan,
    status: r.status,
    started_at: r.started_at.toISOString(),
    finished_at: r.finished_at?.toISOString() ?? null,
    output_written: r.output_written,
    progress: r.progress,
    error: r.error,
    counts: {
      scanned: r.scanned,
      read: r.read,
      new: r.new,
      updated: r.updated,
      unchanged: r.unchanged,
      rejected: r.rejected,
      ignored: r.ignored,
      erased: r.erased,
    },
    rejected,
    warnings,
    workers,
    issues_left_out: Number(r.issues_left_out ?? 0),
    scope: r.scope ?? null,
  };
}

/** One run with the files it rejected or warned about (at most issueLimit of each). */
export async function getRun(db: Queryable, id: number, issueLimit = 10_000): Promise<RunReport | null> {
  const { rows } = await db.query<RunRow>(`${RUNS} WHERE r.id = $1`, [id]);
  const row = rows[0];
  if (!row) return null;
  const { rows: issues } = await db.query<{ severity: string; key: string; reason: string }>(
    `(SELECT severity, key, reason FROM run_issues WHERE run_id = $1 AND severity = 'rejected' ORDER BY key LIMIT $2)
     UNION ALL
     (SELECT severity, key, reason FROM run_issues WHERE run_id = $1 AND severity = 'warning' ORDER BY key LIMIT $2)`,
    [id, issueLimit],
  );
  const pick = (s: string) => issues.filter((i) => i.severity === s).map(({ key, reason }) => ({ key, reason }));
  return toReport(row, pick('rejected'), pick('warning'), await runWorkers(db, id));
}

/** Recent runs, newest first, without their file lists. */
export async function listRuns(db: Queryable, opts: { limit: number; beforeId?: number }): Promise<RunReport[]> {
  const { rows } = await db.query<RunRow>(
    `${RUNS} WHERE $1::bigint IS NULL OR r.id < $1 ORDER BY r.id DESC LIMIT $2`,
    [opts.beforeId ?? null, opts.limit],
  );
  return rows.map((r) => toReport(r, [], []));
}

/** The run in progress anywhere in the cluster, if any; event runs go on beside runs and are not one. */
export async function getRunningRunId(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>(
    `SELECT id FROM runs WHERE status = 'running' AND trigger <> 'event' ORDER BY id DESC LIMIT 1`,
  );
  return rows[0]?.id ?? null;
}

/**
 * Event-driven work arrives in many small batches. To keep the history readable, a batch
 * continues the newest event run when that started less than windowMs ago and
 * did not fail; it is set running again, and its counts go on from where they were.
 */
export async function reopenEventRun(db: Queryable, windowMs: number): Promise<{ id: number; counts: RunCounts; outputWritten: boolean } | null> {
  const { rows } = await db.query<RunRow>(
    `UPDATE runs SET status = 'running', finished_at = NULL
     WHERE id = (SELECT max(id) FROM runs WHERE trigger = 'event') AND status = 'succeeded'
       AND started_at > now() - make_interval(secs => $1::float8 / 1000)
     RETURNING *`,
    [windowMs],
  );
  const row = rows[0];
  return row ? { id: row.id, counts: toReport(row, [], []).counts, outputWritten: row.output_written } : null;
}

/** Records the failure of a run whose outcome could not be written when it failed. */
export async function markRunFailed(db: Queryable, id: number, reason: string): Promise<void> {
  await db.query(`UPDATE runs SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1 AND status = 'running'`, [id, reason]);
}
