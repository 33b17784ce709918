import type { Queryable } from './pool.js';

export interface ItemCounts {
  users: number;
  read: number;
  new: number;
  updated: number;
  rejected: number;
  /** Users erased: their last CSV went from the bucket (ON_SOURCE_DELETE=erase). */
  erased: number;
}

/**
 * Claims a work item inside the transaction that commits it. False when the item is already
 * committed (a retry after its lease ran out); a copy being committed concurrently makes this
 * wait for that transaction, then answer false.
 */
export async function claimItem(tx: Queryable, runId: number, itemNo: number, instance: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO run_items (run_id, item_no, instance) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    [runId, itemNo, instance],
  );
  return rowCount === 1;
}

export async function recordItemCounts(tx: Queryable, runId: number, itemNo: number, c: ItemCounts): Promise<void> {
  await tx.query(
    `UPDATE run_items SET users = $3, read = $4, new = $5, updated = $6, rejected = $7, erased = $8, done_at = now() WHERE run_id = $1 AND item_no = $2`,
    [runId, itemNo, c.users, c.read, c.new, c.updated, c.rejected, c.erased],
  );
}

/** What the committed items of a run add up to, and how many there are. */
export async function itemTotals(db: Queryable, runId: number): Promise<ItemCounts & { items: number; lastItemNo: number }> {
  const { rows } = await db.query<ItemCounts & { items: number; last: number }>(
    `SELECT count(*)::int AS items, coalesce(max(item_no), 0)::int AS last, coalesce(sum(users), 0)::int AS users,
            coalesce(sum(read), 0)::int AS read, coalesce(sum(new), 0)::int AS new,
            coalesce(sum(updated), 0)::int AS updated, coalesce(sum(rejected), 0)::int AS rejected,
            coalesce(sum(erased), 0)::int AS erased
     FROM run_items WHERE run_id = $1`,
    [runId],
  );
  const r = rows[0]!;
  return { items: r.items, lastItemNo: r.last, users: r.users, read: r.read, new: r.new, updated: r.updated, rejected: r.rejected, erased: r.erased };
}

/** Which instances committed a run's items, and how many each. */
export async function runWorkers(db: Queryable, runId: number): Promise<Array<{ instance: string; items: number }>> {
  const { rows } = await db.query<{ instance: string; items: number }>(
    `SELECT instance, count(*)::int AS items FROM run_items WHERE run_id = $1 GROUP BY instance ORDER BY instance`,
    [runId],
  );
  return rows;
}

/**
 * Inside an item's transaction, after its claim: whether its run is still in progress, with a
 * share lock on the run's row until commit. Recording the run's end waits for the items being
 * committed, and an item of a run that has ended commits nothing.
 */
export async function holdRunOpen(tx: Queryable, runId: number): Promise<boolean> {
  const { rows } = await tx.query(`SELECT 1 FROM runs WHERE id = $1 AND status = 'running' FOR SHARE`, [runId]);
  return rows.length === 1;
}

/** Which of these item numbers of the run were never committed. */
export async function uncommittedItems(db: Queryable, runId: number, itemNos: number[]): Promise<number[]> {
  if (itemNos.length === 0) return [];
  const { rows } = await db.query<{ n: number }>(
    `SELECT n FROM unnest($2::int[]) AS n WHERE NOT EXISTS (SELECT 1 FROM run_items WHERE run_id = $1 AND item_no = n)`,
    [runId, itemNos],
  );
  return rows.map((r) => r.n);
}

/** Whether the run is still in progress: items of a run that was aborted are dropped. */
export async function isRunActive(db: Queryable, runId: number): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(`SELECT status = 'running' AS ok FROM runs WHERE id = $1`, [runId]);
  return rows[0]?.ok === true;
}
