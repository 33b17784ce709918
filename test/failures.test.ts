import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeFailure, StoreFailure } from '../src/pipeline/failures.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';

describe('describeFailure: what a failed run reports', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('names the store for a store failure, without its cause', () => {
    const err = new StoreFailure('the object store failed while listing the source bucket', { cause: new Error('connect ECONNREFUSED 10.0.0.5:9000') });
    expect(describeFailure(err)).toBe('the object store failed while listing the source bucket');
  });

  it('gives the SQLSTATE of an error PostgreSQL sent, and no SQL or object names', async () => {
    const err = await db.pool.query('SELECT * FROM no_such_table_here').catch((e: unknown) => e);
    expect(describeFailure(err)).toBe('a database operation failed (SQLSTATE 42P01)');
  });

  it('does not take a file system code of five capitals for a SQLSTATE', () => {
    expect(describeFailure(Object.assign(new Error("EPERM: operation not permitted, open '/srv/res/output.csv'"), { code: 'EPERM' }))).toBe(
      'an internal error stopped the run (see the service log)',
    );
  });
});
