import type { Database, DbClient } from '../db/index.js';
import { describeDataError, isDataError, withSavepoint, withTransaction } from '../db/index.js';
import { notifyUsersChanged } from '../db/changeFeed.js';
import { addRunIssues, markOutputStale } from '../db/runs.js';
import { deleteFileStates, saveFileStates } from '../db/sourceFiles.js';
import { claimItem, holdRunOpen, recordItemCounts } from '../db/runItems.js';
import { lockUsers, upsertUsers } from '../db/users.js';
import type { Logger } from '../log.js';
import type { RunIssue } from '../model.js';
import { MAX_REASON_CHARS } from '../model.js';
import { clip, printable } from '../text.js';
import type { BatchPlan, UserChange } from './planBatch.js';

export interface CommitResult {
  inserted: number;
  updated: number;
  /** Files rejected: on reading, and users the database refused. */
  rejected: RunIssue[];
  warnings: RunIssue[];
  /** Reported for this run only (refused names, skipped objects). */
  issues: RunIssue[];
}

/**
 * Commits one batch in one transaction. Checks at the edge keep bad values out, but as a last
 * line of defence, when PostgreSQL refuses the batch for its data (SQLSTATE classes 22, 23,
 * 54), the batch is committed again user by user, each in a savepoint: the user it refuses is
 * rejected with the reason and the others are committed. Any other error fails the batch.
 */
export async function commitBatch(db: Database, runId: number, plan: BatchPlan, log: Logger): Promise<CommitResult> {
  return (await commit(db, runId, () => Promise.resolve(plan), log, {}))!;
}

/** A work item's commit: who commits it, and its number within the run. */
export interface ItemClaim {
  no: number;
  instance: string;
}

/**
 * Commits a batch whose plan is made inside the transaction, once its users are locked: the
 * file states it joins are then the latest committed, whichever instance committed them. With
 * a claim, the item is claimed first, and null is returned when it was committed already.
 */
export async function commitItem(
  db: Database,
  runId: number,
  users: string[],
  prepare: (tx: DbClient) => Promise<BatchPlan>,
  log: Logger,
  claim?: ItemClaim,
): Promise<(CommitResult & { read: number }) | null> {
  return commit(db, runId, prepare, log, { lock: users, claim });
}

async function commit(
  db: Database,
  runId: number,
  prepare: (tx: DbClient) => Promise<BatchPlan>,
  log: Logger,
  opts: { lock?: string[]; claim?: ItemClaim },
): Promise<(CommitResult & { read: number }) | null> {
  // Claim, lock, then plan: in this order in each transaction, the fallback's included.
  const begin = async (tx: DbClient): Promise<BatchPlan | null> => {
    // Each statement must see what was committed before it (the plan, what the lock holder
    // before us wrote), whatever the server's default isolation.
    if (opts.lock) await tx.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    // Run first: an item of a run that has ended claims nothing.
    if (opts.claim && !(await holdRunOpen(tx, runId))) return null;
    if (opts.claim && !(await claimItem(tx, runId, opts.claim.no, opts.claim.instance))) return null;
    if (opts.lock) await lockUsers(tx, opts.lock);
    return prepare(tx);
  };
  const end = async (tx: DbClient, plan: BatchPlan, result: CommitResult) => {
    if (opts.claim) {
      const rejected = result.rejected.length + result.issues.length;
      await recordItemCounts(tx, runId, opts.claim.no, { users: plan.users.length, read: plan.read, new: result.inserted, updated: result.updated, rejected });
    }
    return { ...result, read: plan.read };
  };
  try {
    return await withTransaction(db, async (tx) => {
      const plan = await begin(tx);
      if (!plan) return null;
      const up = await writeUsers(tx, runId, plan.users);
      return end(tx, plan, await finish(tx, runId, plan, up, []));
    });
  } catch (err) {
    if (!isDataError(err)) throw err;
    log.warn({ err, runId }, 'the database refused a batch for its data; committing it user by user');
  }
  return withTransaction(db, async (tx) => {
    const plan = await begin(tx);
    if (!plan) return null;
    const up: Written = { inserted: 0, updated: 0, changed: 0 };
    const refused: RunIssue[] = [];
    for (const user of plan.users) {
      try {
        const r = await withSavepoint(tx, () => writeUsers(tx, runId, [user]));
        up.inserted += r.inserted;
        up.updated += r.updated;
        up.changed += r.changed;
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
    return end(tx, plan, await finish(tx, runId, plan, up, refused));
  });
}

interface Written {
  inserted: number;
  updated: number;
  /** Rows changed in all, users this run had already written included. */
  changed: number;
}

async function writeUsers(tx: DbClient, runId: number, users: UserChange[]): Promise<Written> {
  await saveFileStates(tx, users.flatMap((u) => u.files));
  await deleteFileStates(tx, users.flatMap((u) => u.gone));
  const up = await upsertUsers(tx, users.flatMap((u) => (u.row ? [u.row] : [])), runId);
  return { inserted: up.inserted.length, updated: up.updated.length, changed: up.inserted.length + up.updated.length + up.rewrittenThisRun.length };
}

async function finish(
  tx: DbClient,
  runId: number,
  plan: BatchPlan,
  up: Written,
  refused: RunIssue[],
): Promise<CommitResult> {
  if (up.changed > 0) {
    await markOutputStale(tx);
    await notifyUsersChanged(tx);
  }
  // The one place issues are made safe, just before they are stored and reported.
  const result: CommitResult = {
    inserted: up.inserted,
    updated: up.updated,
    rejected: [...plan.users.flatMap((u) => u.rejected), ...refused].map(safeIssue),
    warnings: plan.users.flatMap((u) => u.warnings).map(safeIssue),
    issues: plan.issues.map(safeIssue),
  };
  await addRunIssues(tx, runId, 'rejected', [...result.rejected, ...result.issues]);
  await addRunIssues(tx, runId, 'warning', result.warnings);
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
function safeIssue(i: RunIssue): RunIssue {
  return { key: printable(i.key), reason: clip(printable(i.reason), MAX_REASON_CHARS) || 'no reason given' };
}
