import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/support/summaryReporter.ts'],
    // One real PostgreSQL and one Ceph radosgw for the whole run; each test file makes its own
    // databases in the one (per file, per describe or per test), and its own users (tenants) in the other.
    globalSetup: ['test/support/globalPostgres.ts', 'test/support/globalRadosgw.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more workers only fight over them and over the shared PostgreSQL.
    maxWorkers: 2,
  },
});
