import pLimit from 'p-limit';
import type { RunCounts, RunReport } from '../core/model.js';
import { emptyCounts } from '../core/model.js';
import type { RunScope } from '../core/scope.js';
import { safeIssue } from '../db/commitItem.js';
import { getOutputState } from '../db/outputState.js';
import { currentUsers } from '../db/preview.js';
import { countUsersWithValidCsv, databaseNowMs, iterateFingerprints, loadBestFiles } from '../db/sourceFiles.js';
import { batchByUser, diffSource } from '../pipeline/diffSource.js';
import { OUTPUT_KEY } from '../pipeline/exportOutput.js';
import { listSource } from '../pipeline/listSource.js';
import type { ItemPreview } from '../pipeline/previewPlan.js';
import { previewPlan } from '../pipeline/previewPlan.js';
import type { RunDeps } from './deps.js';
import { onStore } from './export.js';
import { planItem, readItem, settledKeys } from './worker.js';

// A dry run (POST /data?dry_run=true): what a run would do now, by the run's own stages (list,
// diff, read and check, plan from the record), with every write left out. It writes nothing:
// no run row, no source_files, users, pending_events, pipeline_state or output.csv. It takes no
// lock either: it changes nothing a run or an event batch could be kept apart from.

/** Each list of the answer holds at most this many entries; the counts count every one. */
export const DRY_RUN_LIST_LIMIT = 1000;

export interface DryRunAnswer {
  dry_run: true;
  full: boolean;
  scope: RunReport['scope'];
  counts: RunCounts;
  new: ItemPreview['new'];
  updated: ItemPreview['updated'];
  rejected: Array<{ key: string; reason: string }>;
  erased: ItemPreview['erased'];
  /** How many entries each list holds at most. */
  list_limit: number;
  /** Whether the run would write output.csv: users would change, or it is missing, stale or full=true asks. */
  output_would_be_written: boolean;
}

/**
 * Answers what runPipeline would do with these options now. Items are read one after another
 * (each with READ_CONCURRENCY reads), so a dry run takes about as long as the run's reading,
 * and its memory is one item and the capped lists. Each item is planned from the record as
 * it is: a user whose changes fall in two items (one user_id in far-apart folders, or past
 * ITEM_MAX_OBJECTS) is previewed by each, where the run's second item would see the first's.
 */
export async function dryRun(
  deps: RunDeps,
  opts: { full: boolean; scope: RunScope | null; signal?: AbortSignal; listLimit?: number },
): Promise<DryRunAnswer> {
  const listLimit = opts.listLimit ?? DRY_RUN_LIST_LIMIT;
  const { db, config, store } = deps;
  const scope = opts.scope;
  const full = opts.full && !scope;
  const listed = { listed: 0, scanned: 0, ignored: 0 };
  const listedFromMs = await databaseNowMs(db);
  const changes = diffSource(listSource(store, config.srcBucket, listed, scope), iterateFingerprints(db, undefined, scope), {
    full: full || scope !== null,
    listedFromMs,
  });
  const answer: DryRunAnswer = {
    dry_run: true,
    full,
    scope: scope && { user_ids: scope.userIds, prefix: scope.prefix },
    counts: emptyCounts(),
    new: [],
    updated: [],
    rejected: [],
    erased: [],
    list_limit: listLimit,
    output_would_be_written: false,
  };
  const { counts } = answer;
  const keep = <T>(list: T[], items: T[]) => list.push(...items.slice(0, Math.max(0, listLimit - list.length)));
  const before = await countUsersWithValidCsv(db, scope);
  let validCsvDelta = 0;
  const limit = pLimit(config.readConcurrency);
  const caps = { objects: config.work.maxObjects, bytes: config.work.maxBytes };
  for await (const given of batchByUser(changes, config.batchSize, undefined, caps)) {
    opts.signal?.throwIfAborted();
    const read = await readItem(deps, given, limit, opts.signal);
    const { batch, results } = read;
    const plan = planItem(config, read, await loadBestFiles(db, batch.users, settledKeys(batch, results)));
    const p = previewPlan(plan, await currentUsers(db, batch.users));
    counts.read += plan.read;
    counts.new += p.new.length;
    counts.updated += p.updated.length;
    counts.rejected += p.rejected.length;
    counts.erased += p.erased.length;
    validCsvDelta += p.validCsvDelta;
    keep(answer.new, p.new);
    keep(answer.updated, p.updated);
    keep(answer.erased, p.erased);
    keep(
      answer.rejected,
      p.rejected.map(safeIssue).map(({ key, reason }) => ({ key, reason })),
    );
  }
  counts.scanned = listed.scanned;
  counts.ignored = listed.ignored;
  // As the run counts it: users with a valid CSV after it, less those it inserted or updated.
  counts.unchanged = Math.max(0, before + validCsvDelta - counts.new - counts.updated);
  const changed = counts.new + counts.updated + counts.erased > 0;
  answer.output_would_be_written =
    changed || full || (await getOutputState(db)).stale || (await onStore('checking output.csv', () => store.stat(config.resBucket, OUTPUT_KEY))) === null;
  return answer;
}
