import pLimit from 'p-limit';
import type { Config } from '../config.js';
import type { BatchPlan, SourceObject } from '../core/model.js';
import type { CommitResult } from '../db/commitItem.js';
import { commitItem } from '../db/commitItem.js';
import { isRunActive } from '../db/runItems.js';
import type { RecordedBest, SeenState, StoredFingerprint } from '../db/sourceFiles.js';
import { databaseNowMs, movedSince } from '../db/sourceFiles.js';
import type { WorkQueue } from '../db/workQueue.js';
import type { Logger } from '../log.js';
import type { SourceChange, UserBatch } from '../pipeline/diffSource.js';
import { changesForKeys } from '../pipeline/eventChanges.js';
import { planBatch } from '../pipeline/planBatch.js';
import type { ProcessResult } from '../pipeline/processObject.js';
import { processObject } from '../pipeline/processObject.js';
import type { RunDeps, WorkItem } from './deps.js';

export type { WorkItem } from './deps.js';

// Objects moved under an item this many times in a row are left to whoever moved them.
const MAX_REREADS = 3;

/**
 * An item's run is no longer running: another instance ended it (this instance lost its lock's
 * connection, and the next holder found the run stale), or it was aborted. The item wrote nothing.
 */
export class RunEndedError extends Error {
  override name = 'RunEndedError';
  constructor(readonly runId: number) {
    super('the run was ended elsewhere while its items were being committed');
  }
}

/**
 * Carries out one work item: reads and checks its objects, then commits its users (commitItem).
 * Newest wins: when the commit finds objects recorded anew since they were read, they are
 * looked up and read again, and the commit retried; after MAX_REREADS the item leaves them
 * to the newer record. Returns null when the item was committed already, or its run is over.
 */
export async function processItem(
  deps: RunDeps,
  item: WorkItem,
  instance: string,
  limit: ReturnType<typeof pLimit>,
  signal?: AbortSignal,
): Promise<CommitResult | null> {
  const { db, config, log } = deps;
  const read = await readItem(deps, item.batch, limit, signal);
  let { batch, results } = read;
  const { startedAtMs } = read;
  for (let tries = 1; ; tries++) {
    const current = { batch, results, startedAtMs };
    const out = await commitItem(
      db,
      { runId: item.runId, no: item.no, instance, users: batch.users, seen: batch.seen, settled: settledKeys(batch, results), issueLimit: config.runIssuesLimit },
      (recorded) => planItem(config, current, recorded),
      log,
    );
    if (out.kind === 'committed-before') return null;
    if (out.kind === 'run-ended') throw new RunEndedError(item.runId);
    if (out.kind === 'committed') {
      for (const i of [...out.result.rejected, ...out.result.issues]) log.warn({ runId: item.runId, key: i.key, reason: i.reason }, 'file rejected');
      return out.result;
    }
    log.debug({ runId: item.runId, item: item.no, moved: out.moved.length, tries }, 'objects recorded anew since the item read them; reading them again');
    const kept = without(batch, results, new Set(out.moved.map((m) => m.key)));
    if (tries >= MAX_REREADS) {
      ({ batch, results } = kept);
      continue;
    }
    const again = await lookUpAgain(deps, kept.batch, out.moved);
    const fresh = again.changed.slice(kept.batch.changed.length);
    batch = again;
    const clock = await databaseClock(db);
    const started = new Map<string, number>();
    results = [...kept.results, ...(await readAll(deps, fresh, limit, signal, started))];
    for (const [key, ms] of started) startedAtMs.set(key, clock(ms));
  }
}

/**
 * An item's reading, shared by its commit (processItem) and a dry run: keys recorded anew since
 * the change was found (an event batch committed them) are looked up again, so what the item
 * reads is never older than what it saw. So are a listing's guesses made while others record
 * objects: its removals, and keys recorded after the listing saw them (verify). Then its
 * objects are read and checked; startedAtMs says when each read began, on the database's clock
 * (the version read existed then: see isTombstoned). Writes nothing.
 */
export async function readItem(
  deps: RunDeps,
  given: UserBatch,
  limit: ReturnType<typeof pLimit>,
  signal?: AbortSignal,
): Promise<ItemRead> {
  const moved = await movedSince(deps.db, given.seen);
  const movedKeys = new Set(moved.map((m) => m.key));
  const seen = new Map(given.seen.map((s) => [s.key, s]));
  const guesses = [...given.removed.map((r) => r.key), ...(given.verify ?? [])].filter((k) => !movedKeys.has(k));
  const batch = await lookUpAgain(deps, given, [...moved, ...guesses.map((key) => seen.get(key) ?? { key, fingerprint: null })]);
  const clock = await databaseClock(deps.db);
  const started = new Map<string, number>();
  const results = await readAll(deps, batch.changed, limit, signal, started);
  return { batch, results, startedAtMs: new Map([...started].map(([key, ms]) => [key, clock(ms)])) };
}

/** Read and checked, or gone: the record of these is replaced. A skipped object's stays. */
export function settledKeys(batch: UserBatch, results: ProcessResult[]): string[] {
  return [...batch.changed.filter((_, i) => results[i]!.kind !== 'skipped').map((o) => o.key), ...batch.removed.map((r) => r.key)];
}

/** What an item would write, from what it read and the record (loadBestFiles of settledKeys). Pure. */
export function planItem(config: Config, read: ItemRead, recorded: RecordedBest): BatchPlan {
  return planBatch(read.batch, read.results, recorded, config.srcBucket, { onSourceDelete: config.onSourceDelete, readStartedAtMs: read.startedAtMs });
}

/** What an item read: its objects' results, and when each read began (database clock). */
export interface ItemRead {
  batch: UserBatch;
  results: ProcessResult[];
  startedAtMs: Map<string, number>;
}

/**
 * This process's clock mapped to the database's, measured now; a time maps to the earliest it
 * can be there (the database's time was read before the answer came back), so a read is never
 * taken for later than it began.
 */
async function databaseClock(db: RunDeps['db']): Promise<(localMs: number) => number> {
  const dbNow = await databaseNowMs(db);
  const after = Date.now();
  return (ms) => ms + dbNow - after;
}

function readAll(deps: RunDeps, objects: SourceObject[], limit: ReturnType<typeof pLimit>, signal?: AbortSignal, started?: Map<string, number>): Promise<ProcessResult[]> {
  const { store, config, log, budget } = deps;
  return Promise.all(
    objects.map((object) =>
      limit(() => {
        // Stopping: the objects not started yet are not read, and the item is not committed.
        signal?.throwIfAborted();
        started?.set(object.key, Date.now());
        return processObject(object, store, config.srcBucket, { limits: config.limits, budget, log });
      }),
    ),
  );
}

/** The batch without these keys (and their read results). */
function without(batch: UserBatch, results: ProcessResult[], keys: Set<string>): { batch: UserBatch; results: ProcessResult[] } {
  const keep = batch.changed.map((o) => !keys.has(o.key));
  return {
    batch: {
      ...batch,
      changed: batch.changed.filter((_, i) => keep[i]),
      removed: batch.removed.filter((r) => !keys.has(r.key)),
      seen: batch.seen.filter((s) => !keys.has(s.key)),
    },
    results: results.filter((_, i) => keep[i]),
  };
}

/**
 * Looks these keys up in the store now, against the given recorded states, and puts what
 * they are now in their place: changed objects (appended to `changed`), removals, or nothing
 * when the record already holds the object as it is.
 */
async function lookUpAgain(deps: RunDeps, batch: UserBatch, states: SeenState[]): Promise<UserBatch> {
  if (states.length === 0) return batch;
  const { store, config } = deps;
  const keys = new Set(states.map((s) => s.key));
  // A key looked up now was seen as the state it is looked up against, at that state's time.
  const seenAt = new Map(states.map((s) => [s.key, s.atMs]));
  const seen = (key: string, fingerprint: string | null): SeenState => {
    const atMs = seenAt.get(key);
    return atMs === undefined ? { key, fingerprint } : { key, fingerprint, atMs };
  };
  const recorded = new Map<string, StoredFingerprint>();
  for (const s of states) if (s.fingerprint !== null) recorded.set(s.key, { key: s.key, userId: '', fingerprint: s.fingerprint });
  const counts = { listed: 0, scanned: 0, ignored: 0 };
  const changes: SourceChange[] = await changesForKeys(store, config.srcBucket, [...keys], recorded, {
    limits: config.limits,
    concurrency: config.readConcurrency,
    counts,
  });
  const out: UserBatch = {
    ...batch,
    changed: batch.changed.filter((o) => !keys.has(o.key)),
    removed: batch.removed.filter((r) => !keys.has(r.key)),
    refused: [...batch.refused],
    seen: batch.seen.filter((s) => !keys.has(s.key)),
  };
  for (const c of changes) {
    if (c.kind === 'refused') out.refused.push({ key: c.key, reason: c.reason });
    else if (c.kind === 'changed') {
      out.changed.push(c.object);
      out.seen.push(seen(c.object.key, c.recorded));
    } else {
      out.removed.push({ key: c.key, userId: c.userId });
      out.seen.push(seen(c.key, c.recorded));
    }
  }
  return out;
}

// Each replica takes two items at a time: one is read while the other commits.
const QUEUE_WORKERS = 2;

/**
 * WORK_QUEUE=pgboss: the shared queue of work items, which every instance works. pg-boss is
 * loaded only then, so the CLI and WORK_QUEUE=local do not pay for it at start.
 */
export async function openWorkQueue(url: string, config: Config, log: Logger): Promise<WorkQueue<WorkItem>> {
  const { WorkQueue } = await import('../db/workQueue.js');
  return WorkQueue.open<WorkItem>(url, { leaseSeconds: config.work.leaseSeconds, tries: 4, workers: QUEUE_WORKERS }, (err) =>
    log.warn({ err }, 'work queue: an error in its background work; it goes on'),
  );
}

/**
 * Works the queue: carries out items of any instance's runs, with one read limit for the
 * process whichever worker reads. Aborting `signal` stops items in hand from reading and
 * committing; they go back to the queue. An item of a run that is over (aborted) is dropped.
 */
export async function workQueue(queue: WorkQueue<WorkItem>, deps: RunDeps & { instance: string }, signal: AbortSignal): Promise<void> {
  const limit = pLimit(deps.config.readConcurrency);
  await queue.work(async (item) => {
    if (!(await isRunActive(deps.db, item.runId))) return;
    const r = await processItem(deps, item, deps.instance, limit, signal).catch((err: unknown) => {
      // Its run is over: the item is dropped, not retried.
      if (err instanceof RunEndedError) return null;
      throw err;
    });
    deps.log.debug({ runId: item.runId, item: item.no, users: item.batch.users.length, committed: r !== null }, 'work item done');
  });
}
