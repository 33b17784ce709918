import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.js';
import { sleep } from './support/fixtures.js';
import { runEntry } from './support/spawn.js';
import { tempDir } from './support/stores.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Starts `src/main.ts` as a real process and resolves once it logs the URL it listens on. */
function startMain(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /"url":"(http:\/\/[^"]+)","schedule"/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`exited with ${code} before listening:\n${stderr}`)));
  });
  // Tests that never reach 'listening' must not leave an unhandled rejection behind.
  listening.catch(() => undefined);
  return { child, listening, exited, logs: () => stderr };
}

describe('npm start (src/main.ts)', () => {
  const cleanup: string[] = [];
  afterEach(async () => {
    for (const d of cleanup.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  it('starts on the embedded defaults, creates both buckets, and on SIGTERM stops PostgreSQL and exits 0', async () => {
    const dir = await tempDir('userjoin-main-');
    await fs.chmod(dir, 0o755);
    cleanup.push(dir);
    const main = startMain({ STORE_DIR: path.join(dir, 'minio'), PGDATA_DIR: path.join(dir, 'pg') });
    const url = await main.listening;
    expect(await fs.readdir(path.join(dir, 'minio'))).toEqual(expect.arrayContaining(['src', 'res']));
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    const pidFile = path.join(dir, 'pg', 'cluster', 'postmaster.pid');
    await expect(fs.access(pidFile)).resolves.toBeUndefined();

    main.child.kill('SIGTERM');
    expect(await main.exited).toBe(0);
    // PostgreSQL removes its pid file on a clean shutdown.
    await expect(fs.access(pidFile)).rejects.toThrow();
    const lines = main
      .logs()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['listening', 'signal received', 'shutting down', 'stopped']));
  });

  it('refuses to start on bad configuration, exiting 2 with the reason', async () => {
    const main = startMain({ PORT: 'eighty', SCHEDULE: 'sometimes' });
    await expect(main.listening).rejects.toThrow();
    expect(await main.exited).toBe(2);
    expect(main.logs()).toMatch(/PORT[\s\S]*SCHEDULE: "sometimes" is not a valid cron expression/);
  });

  it('refuses to listen beyond loopback without API_TOKEN, exiting 2 and naming the token and the opt-out', async () => {
    const dir = await tempDir('userjoin-main-');
    cleanup.push(dir);
    const main = startMain({ HOST: '0.0.0.0', STORE_DIR: path.join(dir, 'minio'), PGDATA_DIR: path.join(dir, 'pg') });
    await expect(main.listening).rejects.toThrow();
    expect(await main.exited).toBe(2);
    expect(main.logs()).toMatch(/API_TOKEN: required when HOST \(0\.0\.0\.0\) is not a loopback address/);
    expect(main.logs()).toContain('INSECURE_ALLOW_NO_TOKEN=true');
    // It stopped at the configuration: no embedded PostgreSQL was started.
    await expect(fs.access(path.join(dir, 'pg'))).rejects.toThrow();
  });

  it('refuses, beyond loopback, a token shorter than 32 characters and an EVENTS_TOKEN equal to API_TOKEN, exiting 2 with both reasons', async () => {
    const dir = await tempDir('userjoin-main-');
    cleanup.push(dir);
    const main = startMain({ HOST: '0.0.0.0', API_TOKEN: 'short-token', EVENTS_TOKEN: 'short-token', STORE_DIR: path.join(dir, 'minio'), PGDATA_DIR: path.join(dir, 'pg') });
    await expect(main.listening).rejects.toThrow();
    expect(await main.exited).toBe(2);
    expect(main.logs()).toMatch(/API_TOKEN: has 11 characters; at least 32 are required when HOST \(0\.0\.0\.0\) is not a loopback address/);
    expect(main.logs()).toContain('EVENTS_TOKEN: must differ from API_TOKEN');
    await expect(fs.access(path.join(dir, 'pg'))).rejects.toThrow();
  });

  it('does not apply that rule to `npm run process`, which does not listen', async () => {
    const dir = await tempDir('userjoin-main-');
    cleanup.push(dir);
    const db = await createTestDatabase();
    try {
      const r = await runEntry('src/cli/processMain.ts', ['--json'], { HOST: '0.0.0.0', DATABASE_URL: db.url, STORE_DIR: dir, SCHEDULE: 'off' });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'succeeded' });
    } finally {
      await db.drop();
    }
  });

  it('waits for a database that comes up late, logging what it waits for, instead of crash-looping', async () => {
    const dir = await tempDir('userjoin-main-');
    cleanup.push(dir);
    // Nothing listens on this port yet.
    const net = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const main = startMain({ STORE_DIR: path.join(dir, 'minio'), DATABASE_URL: `postgres://u:p@127.0.0.1:${port}/db` });
    let waited = false;
    for (let i = 0; i < 100 && !waited; i++) {
      await sleep(50);
      waited = main.logs().includes('"msg":"waiting for PostgreSQL"');
    }
    expect(waited).toBe(true);
    expect(main.child.exitCode).toBeNull();
    main.child.kill('SIGKILL');
    await main.exited;
  });
});
