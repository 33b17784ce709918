import type { Queryable } from './pool.js';

// Whether output.csv holds the table as it is (pipeline_state): commits that change users move
// the table's version on, and an export records the version its snapshot saw.

/** Marks output.csv as behind the table; in the transaction that changes users. */
export async function markOutputStale(db: Queryable): Promise<void> {
  await db.query('UPDATE pipeline_state SET output_stale = true, output_version = output_version + 1 WHERE id = 1');
}

/** The table's version as this transaction's snapshot sees it: what an export made from it holds. */
export async function readOutputVersion(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ v: string }>('SELECT output_version AS v FROM pipeline_state WHERE id = 1');
  return Number(rows[0]?.v ?? 0);
}

/**
 * Records a successful export of output.csv made from the table at `version`. Commits made
 * while it was written moved the version on: output.csv is then still stale.
 */
export async function markOutputExported(db: Queryable, version: number): Promise<void> {
  await db.query(
    `UPDATE pipeline_state SET output_stale = output_version > $1,
       events_owe_export = events_owe_export AND output_version > $1, exported_at = now() WHERE id = 1`,
    [version],
  );
}

/** An event batch left output.csv behind the table: event processing writes it, in time. */
export async function markEventsOweExport(db: Queryable): Promise<void> {
  await db.query('UPDATE pipeline_state SET events_owe_export = output_stale WHERE id = 1');
}

/**
 * Whether output.csv lags behind the table, whether event batches made it lag (then they owe
 * the export), and how long ago it was last written (null: never).
 */
export async function getOutputState(db: Queryable): Promise<{ stale: boolean; eventsOwe: boolean; msSinceExport: number | null }> {
  const { rows } = await db.query<{ output_stale: boolean; events_owe_export: boolean; ms: number | null }>(
    `SELECT output_stale, events_owe_export, (extract(epoch FROM now() - exported_at) * 1000)::float8 AS ms FROM pipeline_state WHERE id = 1`,
  );
  const r = rows[0];
  return { stale: r?.output_stale ?? true, eventsOwe: r?.events_owe_export ?? false, msSinceExport: r?.ms ?? null };
}
