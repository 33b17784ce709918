import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryUsers, streamUsers, upsertUsers } from '../src/db/users.js';
import type { UserRow } from '../src/core/model.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { csvSource } from './support/rows.js';

const row = (userId: string, birth: Date, img: string | null = null): UserRow => ({
  userId,
  firstName: 'F',
  lastName: 'L',
  birthts: birth.getTime(),
  imgPath: img,
  imgFormat: img ? 'png' : null,
  imgWidth: img ? 1 : null,
  imgHeight: img ? 1 : null,
  source: csvSource(userId),
});

describe('users queries', () => {
  let db: TestDatabase;
  // Ages are measured at a fixed instant so boundaries can be tested exactly.
  const asOf = new Date('2026-06-15T12:00:00.000Z');
  beforeAll(async () => {
    db = await createTestDatabase();
    await upsertUsers(db.pool, [
      row('exactly30', new Date('1996-06-15T12:00:00.000Z'), 'src/a.png'),
      row('30and1ms', new Date('1996-06-15T11:59:59.999Z')),
      row('29y11m', new Date('1996-07-15T12:00:00.000Z')),
      row('30y6m', new Date('1995-12-15T12:00:00.000Z'), 'src/b.png'),
      row('born1960', new Date('1960-01-01T00:00:00.000Z')),
    ]);
  });
  afterAll(() => db.drop());

  const ids = async (f: Parameters<typeof queryUsers>[1]) => (await queryUsers(db.pool, { asOf, ...f }, 100)).map((u) => u.user_id).sort();

  it('both age bounds are inclusive, to the millisecond', async () => {
    expect(await ids({ minAge: 30 })).toEqual(['30and1ms', '30y6m', 'born1960', 'exactly30']);
    expect(await ids({ maxAge: 30 })).toEqual(['29y11m', 'exactly30']);
    expect(await ids({ minAge: 30, maxAge: 30 })).toEqual(['exactly30']);
  });

  it('decimal ages count calendar months: 30.5 years is 30 years and 6 months', async () => {
    expect(await ids({ minAge: 30.5 })).toEqual(['30y6m', 'born1960']);
    expect(await ids({ minAge: 30.5, maxAge: 30.5 })).toEqual(['30y6m']);
    // 29.95 years = 359.4 months = 29 years 11 months 12 days.
    expect(await ids({ maxAge: 29.95 })).toEqual(['29y11m']);
    expect(await ids({ maxAge: 29.9 })).toEqual([]);
  });

  it('filters on photo presence and combines filters with AND', async () => {
    expect(await ids({ hasImage: true })).toEqual(['30y6m', 'exactly30']);
    expect(await ids({ hasImage: false })).toEqual(['29y11m', '30and1ms', 'born1960']);
    expect(await ids({ hasImage: true, minAge: 30.1 })).toEqual(['30y6m']);
    expect(await ids({})).toHaveLength(5);
  });

  it('returns birthdate as ISO 8601 UTC and birthts in ms, also before 1970', async () => {
    const [u] = await queryUsers(db.pool, { asOf, minAge: 60 }, 10);
    expect(u).toMatchObject({ user_id: 'born1960', birthdate: '1960-01-01T00:00:00.000Z', birthts: Date.UTC(1960, 0, 1), img_path: null });
  });

  it('streams every match in keyset pages', async () => {
    const seen: string[] = [];
    for await (const page of streamUsers(db.pool, { asOf }, 2)) {
      expect(page.length).toBeLessThanOrEqual(2);
      seen.push(...page.map((u) => u.user_id));
    }
    expect(seen).toEqual([...seen].sort());
    expect(seen).toHaveLength(5);
  });

  it('serves an age filter from the birthdate index', async () => {
    const client = await db.pool.connect();
    try {
      // On five rows a sequential scan is cheaper; forbid it to see whether the index applies at all.
      await client.query('SET enable_seqscan = off');
      const plan = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT id FROM users WHERE birthdate <= now() - 30::numeric * interval '1 year'`,
      );
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toContain('users_birthdate_idx');
    } finally {
      client.release();
    }
  });
});
