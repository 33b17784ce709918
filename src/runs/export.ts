import { acquireLock, tryAcquireLock } from '../db/locks.js';
import { getOutputState, markOutputExported } from '../db/outputState.js';
import { ExportReadError, exportOutput, OUTPUT_KEY } from '../pipeline/exportOutput.js';
import { StoreFailure } from '../pipeline/failures.js';
import type { RunDeps } from './deps.js';
import type { ActiveRun } from './lifecycle.js';

/**
 * Rewrites output.csv under the export lock, which only exports take: items and event batches
 * commit meanwhile, and the export's snapshot keeps the file equal to the table at one moment.
 * With 'try', gives up at once when another export is in progress (it clears the lag or
 * leaves it for the next try). Exports coalesce: once the lock is taken, an export that
 * another one made unnecessary meanwhile is skipped, unless `force` (a full run, or a missing
 * file). Returns whether it wrote the file.
 */
export async function exportNow(
  deps: RunDeps,
  opts: { signal?: AbortSignal },
  run: ActiveRun,
  how: { wait: boolean; force: boolean },
): Promise<boolean> {
  const { db, store, config } = deps;
  const { st } = run;
  const lock = how.wait ? await acquireLock(db, 'export', opts.signal) : await tryAcquireLock(db, 'export');
  if (!lock) return false;
  try {
    if (!how.force && !(await getOutputState(db)).stale) return false;
    st.progress = { phase: 'exporting', done: 0, total: null };
    await run.report(true);
    const { rows, version } = await onStore('writing output.csv', () =>
      exportOutput(db, store, config.resBucket, {
        neutralizeFormulas: config.csvNeutralizeFormulas,
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
export async function onStore<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ExportReadError) throw err.cause;
    throw new StoreFailure(`the object store failed while ${doing}`, { cause: err });
  }
}
