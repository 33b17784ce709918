import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import type { StoreConfig } from '../../src/config.js';
import type { ObjectStore } from '../../src/storage/index.js';
import { createStore } from '../../src/storage/index.js';

/** A storage backend the tests run against: a folder, or a real S3 wire protocol (s3rver). */
export interface Backend {
  name: 'folder' | 's3';
  config: StoreConfig;
  store: ObjectStore;
  /** Environment variables that select this backend in loadConfig(). */
  env: Record<string, string>;
  stop(): Promise<void>;
  /** Takes the server down and brings it back on the same address (S3 only). */
  outage?: { down(): Promise<void>; up(): Promise<void> };
}

export async function tempDir(prefix = 'userjoin-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function startFolderBackend(): Promise<Backend> {
  const dir = await tempDir('userjoin-store-');
  const config: StoreConfig = { kind: 'folder', dir };
  return {
    name: 'folder',
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

export const backends: Array<[string, () => Promise<Backend>]> = [
  ['folder', startFolderBackend],
  ['s3', startS3Backend],
];
