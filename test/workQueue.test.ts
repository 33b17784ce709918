import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WorkQueue } from '../src/db/workQueue.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { waitFor } from './support/fixtures.js';

interface Item {
  runId: number;
  no: number;
}

describe('work queue (pg-boss)', () => {
  let db: TestDatabase;
  const queues: Array<WorkQueue<Item>> = [];
  const open = async (leaseSeconds: number) => {
    const q = await WorkQueue.open<Item>(db.url, { leaseSeconds, tries: 3, workers: 1 }, () => undefined);
    queues.push(q);
    return q;
  };
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop(0);
    await db.drop();
  });

  it('gives an item whose worker never finishes to another worker once its lease runs out', async () => {
    const first = await open(1);
    const taken: string[] = [];
    // A worker that takes the item and never answers, as a replica killed with SIGKILL would.
    await first.work(async (item) => {
      taken.push(`first:${item.no}`);
      await new Promise(() => undefined);
    });
    await first.enqueue({ runId: 1, no: 7 });
    await waitFor('the first worker to take the item', () => taken.length === 1);
    // Killed: it takes nothing more. (Alive, pg-boss would free its worker once the lease ran
    // out, and it could take the retried item itself, again and again, until its tries ran out.)
    queues.splice(queues.indexOf(first), 1);
    await first.stop(0);

    const second = await open(1);
    await second.work(async (item) => {
      taken.push(`second:${item.no}`);
      return Promise.resolve();
    });
    // Reclaimed as the run's owner does while it waits, once the 1 s lease has run out.
    await waitFor('the item to reach the second worker', async () => {
      await second.reclaimExpired();
      return taken.includes('second:7');
    }, 30_000);
    expect(taken[0]).toBe('first:7');
  }, 40_000);

  it('counts the items of a run that failed on every try', async () => {
    const q = await open(30);
    let tries = 0;
    await q.work(() => {
      tries++;
      return Promise.reject(new Error('this item always fails'));
    });
    await q.enqueue({ runId: 42, no: 1 });
    await waitFor('the item to fail for good', async () => (await q.failedItems(42)).length === 1, 30_000);
    expect(tries).toBe(3);
    expect(await q.failedItems(42)).toEqual([1]);
    expect(await q.failedItems(41)).toEqual([]);
  }, 40_000);
});
