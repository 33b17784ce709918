import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import S3rver from 's3rver';
import { inject } from 'vitest';
import type { StoreConfig } from '../../src/config.js';
import type { ObjectStore } from '../../src/storage/index.js';
import { createStore } from '../../src/storage/index.js';
import type { ProvidedRadosgw } from './globalRadosgw.js';
import { createRadosgwUser } from './radosgw.js';

/**
 * A storage backend the tests run against: a folder, or S3 from s3rver (a mock that speaks
 * the wire protocol) or from Ceph radosgw (a real server).
 */
export interface Backend {
  name: 'folder' | 's3';
  server: 'folder' | 's3rver' | 'radosgw';
  /** radosgw only: the cluster and this backend's tenant, for what needs the admin tools. */
  radosgw?: ProvidedRadosgw & { tenant: string };
  config: StoreConfig;
  store: ObjectStore;
  /** Environment variables that select this backend in loadConfig(). */
  env: Record<string, string>;
  stop(): Promise<void>;
  /** Takes the server down and brings it back on the same address (S3 only). */
  outage?: { down(): Promise<void>; up(): Promise<void> };
}

const run = promisify(execFile);

export async function tempDir(prefix = 'userjoin-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function startFolderBackend(): Promise<Backend> {
  const dir = await tempDir('userjoin-store-');
  const config: StoreConfig = { kind: 'folder', dir };
  return {
    name: 'folder',
    server: 'folder',
    config,
    store: await createStore(config),
    env: { STORE_DIR: dir },
    stop: () => fs.rm(dir, { recursive: true, force: true }),
  };
}

export async function startS3Backend(): Promise<Backend> {
  const dir = await tempDir('userjoin-s3rver-');
  let server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir });
  const { port } = (await server.run()) as { port: number };
  let running = true;
  const config: StoreConfig = {
    kind: 's3',
    endPoint: '127.0.0.1',
    port,
    useSSL: false,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    region: 'us-east-1',
  };
  return {
    name: 's3',
    server: 's3rver',
    config,
    store: await createStore(config),
    env: { MINIO_ENDPOINT: `http://127.0.0.1:${port}`, MINIO_ACCESS_KEY: 'S3RVER', MINIO_SECRET_KEY: 'S3RVER' },
    stop: async () => {
      if (running) await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
    outage: {
      down: async () => {
        await server.close();
        running = false;
      },
      up: async () => {
        server = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir });
        await server.run();
        running = true;
      },
    },
  };
}

const cluster = inject('radosgw');

/** Whether this run has a radosgw (always in CI; see globalRadosgw.ts). */
export const hasRadosgw = cluster !== null;

/** A radosgw user in a tenant of its own: its buckets are its alone. */
export async function startRadosgwBackend(): Promise<Backend> {
  if (!cluster) throw new Error('no radosgw in this run (see test/support/globalRadosgw.ts)');
  const { tenant, accessKey, secretKey } = await createRadosgwUser(cluster);
  const config: StoreConfig = { kind: 's3', endPoint: '127.0.0.1', port: cluster.port, useSSL: false, accessKey, secretKey, region: 'us-east-1' };
  return {
    name: 's3',
    server: 'radosgw',
    radosgw: { ...cluster, tenant },
    config,
    store: await createStore(config),
    env: { MINIO_ENDPOINT: `http://127.0.0.1:${cluster.port}`, MINIO_ACCESS_KEY: accessKey, MINIO_SECRET_KEY: secretKey },
    // Frees the memory its objects hold in the in-memory OSD.
    stop: async () => {
      await run('radosgw-admin', ['-c', cluster.conf, 'user', 'rm', '--tenant', tenant, '--uid', 'tester', '--purge-data']);
    },
  };
}

/** The backend matrix: radosgw joins where Ceph is installed. */
export const backends: Array<[string, () => Promise<Backend>]> = [
  ['folder', startFolderBackend],
  ['s3rver', startS3Backend],
  ...(hasRadosgw ? [['radosgw', startRadosgwBackend] as [string, () => Promise<Backend>]] : []),
];
