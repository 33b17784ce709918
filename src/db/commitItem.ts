import type { Logger } from '../log.js';
import type { BatchPlan, RunIssue, UserChange } from '../core/model.js';
import { MAX_REASON_CHARS } from '../core/model.js';
import { clip, printable } from '../core/text.js';
import { notifyUsersChanged } from './changeFeed.js';
import { describeDataError, isDataError } from './errors.js';
import type { Database, DbClient } from './pool.js';
import { withSavepoint, withTransaction } from './pool.js';
import { claimItem, holdRunOpen, recordItemCounts } from './runItems.js';
import { markOutputStale } from './outputState.js';
import { recordRunIssues } from './runs.js';
import type { RecordedBest, SeenState } from './sourceFiles.js';
import { deleteFileStates, loadBestFiles, movedSince, saveFileStates } from './sourceFiles.js';
import { classifyKey } from '../core/keys.js';
import { eraseUsers } from './erasures.js';
import { lockUsers, upsertUsers } from './users.js';

/** A work item as its commit needs it. */
export interface ItemToCommit {
  runId: number;
  /** Its number within the run: claimed once, so a retried item commits once. */
  no: number;
  /** Who commits it, for run_items and GET /runs/:id. */
  instance: string;
  users: string[];
  /** The recorded state of each object the item read or found gone, as seen before reading it. */
  seen: SeenState[];
  /**
   * Keys whose record the item replaces (read and checked, or found gone): its users are
   * resolved from these as read and from the rest of the record (loadBestFiles).
   */
  settled: string[];
  /** RUN_ISSUES_LIMIT: issues recorded per run; the rest are counted as left out. */
  issueLimit: number;
}

export interface CommitResult {
  inserted: number;
  updated: number;
  /** Users erased: their last CSV went from the bucket (ON_SOURCE_DELETE=erase). */
  erased: number;
  /** Objects fetched. */
  read: number;
  /** Files rejected: on reading, and users the database refused. */
  rejected: RunIssue[];
  warnings: RunIssue[];
  /** Reported for this run only (refused names, skipped objects). */
  issues: RunIssue[];
  /** Issues past the run's RUN_ISSUES_LIMIT: counted, not recorded in run_issues. */
  issuesLeftOut: number;
}

export type CommitOutcome =
  | { kind: 'committed'; result: CommitResult }
  /** Committed by an earlier try of the item: nothing was written. */
  | { kind: 'committed-before' }
  /** Its run is no longer running (aborted, or ended elsewhere): nothing was written. */
  | { kind: 'run-ended' }
  /**
   * Newest wins: since the item read them, another commit recorded other states of these
   * objects. Nothing was written; the caller reads them again and retries.
   */
  | { kind: 'moved'; moved: SeenState[] };

class Moved extends Error {
  constructor(readonly moved: SeenState[]) {
    super('objects of the item were recorded anew since it read them');
  }
}

/**
 * The one transaction that commits a work item. In order: hold the run open (an item of an
 * ended run commits nothing), claim the item (an item commits once), lock its users (two
 * commits never write one user at once), check that no object it read was recorded anew since
 * (newest wins), and only then join the users, through `plan`, from the file states now
 * recorded, whichever instance recorded them.
 *
 * Checks at the edge keep bad values out, but as a last line of defence, when PostgreSQL
 * refuses the item for its data (SQLSTATE classes 22, 23, 54), it is committed again user by
 * user, each in a savepoint: a user it refuses is rejected with the reason and the others are
 * committed. Any other error fails the item.
 */
export async function commitItem(db: Database, item: ItemToCommit, plan: (recorded: RecordedBest) => BatchPlan, log: Logger): Promise<CommitOutcome> {
  const begin = async (tx: DbClient): Promise<BatchPlan | 'run-ended' | 'committed-before'> => {
    // Each statement must see what was committed before it (what the lock holder before us
    // wrote), whatever the server's default isolation.
    await tx.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    if (!(await holdRunOpen(tx, item.runId))) return 'run-ended';
    if (!(await claimItem(tx, item.runId, item.no, item.instance))) return 'committed-before';
    await lockUsers(tx, item.users);
    const moved = await movedSince(tx, item.seen);
    if (moved.length > 0) throw new Moved(moved);
    return plan(await loadBestFiles(tx, item.users, item.settled));
  };
  try {
    try {
      return await withTransaction(db, async (tx) => {
        const p = await begin(tx);
        if (typeof p === 'string') return { kind: p } as const;
        const written = await writeUsers(tx, item.runId, p.users);
        return { kind: 'committed', result: await finish(tx, item, p, written, []) } as const;
      });
    } catch (err) {
      if (!isDataError(err)) throw err;
      log.warn({ err, runId: item.runId }, 'the database refused a batch for its data; committing it user by user');
    }
    return await withTransaction(db, async (tx) => {
      const p = await begin(tx);
      if (typeof p === 'string') return { kind: p } as const;
      return { kind: 'committed', result: await commitOneByOne(tx, item, p, log) } as const;
    });
  } catch (err) {
    if (err instanceof Moved) return { kind: 'moved', moved: err.moved };
    throw err;
  }
}

async function commitOneByOne(tx: DbClient, item: ItemToCommit, p: BatchPlan, log: Logger): Promise<CommitResult> {
  const written: Written = { inserted: 0, updated: 0, erased: 0, changed: 0, relinked: 0 };
  const refused: RunIssue[] = [];
  for (const user of p.users) {
    try {
      const r = await withSavepoint(tx, () => writeUsers(tx, item.runId, [user]));
      written.inserted += r.inserted;
      written.updated += r.updated;
      written.erased += r.erased;
      written.changed += r.changed;
      written.relinked += r.relinked;
    } catch (err) {
      if (!isDataError(err)) throw err;
      const reason = `user_id "${user.userId}" could not be stored: ${describeDataError(err)}`;
      log.warn({ err, userId: user.userId }, 'the database refused one user; rejected');
      refused.push(...refusedIssues(user, reason));
      // Its files are recorded as rejected (those already rejected keep their own reason), so
      // they are not read again until they change. If even that is refused, they stay
      // unrecorded and the next run tries again.
      const asRejected = user.files.map((f) => (f.status === 'ok' ? { ...f, status: 'rejected' as const, reason, csv: null, image: null } : f));
      await withSavepoint(tx, () => saveFileStates(tx, asRejected)).catch((e: unknown) => {
        if (!isDataError(e)) throw e;
      });
    }
  }
  return finish(tx, item, p, written, refused);
}

interface Written {
  inserted: number;
  updated: number;
  erased: number;
  /** Rows changed in all, users this run had already written included. */
  changed: number;
  /** Rows whose lineage alone changed: GET /data changes, output.csv does not. */
  relinked: number;
}

async function writeUsers(tx: DbClient, runId: number, users: UserChange[]): Promise<Written> {
  await saveFileStates(tx, users.flatMap((u) => u.files));
  // Before the CSVs found gone are forgotten: their recorded versions are what it tombstones.
  const toErase = users.filter((u) => u.erase);
  const erased = await eraseUsers(
    tx,
    toErase.map((u) => u.userId),
    // The CSVs that went, not a photo that went with them: it may come back with a new CSV.
    { reason: 'source_delete', runId, gone: toErase.flatMap((u) => u.gone.filter((k) => classifyKey(k)?.kind === 'csv')) },
  );
  await deleteFileStates(tx, users.flatMap((u) => u.gone));
  const up = await upsertUsers(tx, users.flatMap((u) => (u.row ? [u.row] : [])), runId);
  return {
    inserted: up.inserted.length,
    updated: up.updated.length,
    erased: erased.length,
    changed: up.inserted.length + up.updated.length + up.rewrittenThisRun.length + erased.length,
    relinked: up.relinked.length,
  };
}

/** Records what the item did: its issues, its counts in run_items, and that output.csv lags. */
async function finish(tx: DbClient, item: ItemToCommit, p: BatchPlan, written: Written, refused: RunIssue[]): Promise<CommitResult> {
  if (written.changed > 0) await markOutputStale(tx);
  if (written.changed + written.relinked > 0) await notifyUsersChanged(tx);
  // The one place issues are made safe, just before they are stored and reported.
  const result: CommitResult = {
    inserted: written.inserted,
    updated: written.updated,
    erased: written.erased,
    read: p.read,
    rejected: [...p.users.flatMap((u) => u.rejected), ...refused].map(safeIssue),
    warnings: p.users.flatMap((u) => u.warnings).map(safeIssue),
    issues: p.issues.map(safeIssue),
    issuesLeftOut: 0,
  };
  // Counts below take every issue; run_issues keeps up to the run's limit.
  await recordItemCounts(tx, item.runId, item.no, {
    users: p.users.length,
    read: p.read,
    new: result.inserted,
    updated: result.updated,
    rejected: result.rejected.length + result.issues.length,
    erased: result.erased,
  });
  // Last: it locks the run's tally until commit.
  result.issuesLeftOut = await recordRunIssues(tx, item.runId, item.issueLimit, { rejected: [...result.rejected, ...result.issues], warnings: result.warnings });
  return result;
}

/**
 * One issue per valid file the refused user brought in this run (its rejected files are
 * already reported with their own reason); the user_id if it brought none.
 */
function refusedIssues(user: UserChange, reason: string): RunIssue[] {
  const keys = user.files.filter((f) => f.status === 'ok').map((f) => f.key);
  return (keys.length > 0 ? keys : [user.userId]).map((key) => ({ key, reason }));
}

/** Keys and reasons come from the bucket: printable, and reasons of a readable length. */
export function safeIssue(i: RunIssue): RunIssue {
  const safe = { key: printable(i.key), reason: clip(printable(i.reason), MAX_REASON_CHARS) || 'no reason given' };
  return i.userId === undefined ? safe : { ...safe, userId: i.userId };
}
