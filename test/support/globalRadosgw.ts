import type { TestProject } from 'vitest/node';
import { INSTALL_HINT, missingBinaries, startRadosgwCluster } from './radosgw.js';

export interface ProvidedRadosgw {
  port: number;
  tlsPort: number;
  certPath: string;
  conf: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared radosgw cluster, or null where Ceph is not installed (never in CI). */
    radosgw: ProvidedRadosgw | null;
  }
}

/**
 * Starts one Ceph radosgw for the whole run; each backend made from it is a user in a tenant
 * of its own. Without Ceph the radosgw cases are skipped on a developer's machine, and fail
 * in CI, which must run them. USERJOIN_TEST_RADOSGW=off skips them on purpose.
 */
export default async function setup(project: TestProject) {
  // npm run test:sabotage turns it off for the tests that do not need it.
  if (process.env.USERJOIN_TEST_RADOSGW === 'off') {
    project.provide('radosgw', null);
    return;
  }
  const missing = missingBinaries();
  if (missing.length > 0) {
    const message = `radosgw cases need Ceph (missing: ${missing.join(', ')}); install it with: ${INSTALL_HINT}`;
    if (process.env.CI === 'true') throw new Error(message);
    console.warn(`\n⚠ skipping the radosgw cases: ${message}\n`);
    project.provide('radosgw', null);
    return;
  }
  const cluster = await startRadosgwCluster();
  project.provide('radosgw', { port: cluster.port, tlsPort: cluster.tlsPort, certPath: cluster.certPath, conf: cluster.conf });
  return () => cluster.stop();
}
