import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, userCsv } from './support/fixtures.js';
import { runEntry } from './support/spawn.js';
import { tempDir } from './support/stores.js';

const CLI = 'src/cli/processMain.ts';

describe('npm run process (CLI)', () => {
  let db: TestDatabase;
  let storeDir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    storeDir = await tempDir('userjoin-cli-');
    await fs.mkdir(path.join(storeDir, 'src'), { recursive: true });
    await fs.writeFile(path.join(storeDir, 'src', '1.csv'), userCsv('Ann', 'Lee', 1000));
    await fs.writeFile(path.join(storeDir, 'src', '1.png'), await makeImage('png'));
    await fs.writeFile(path.join(storeDir, 'src', '2.csv'), 'first_name,last_name,birthts\nBob,,5\n');
    env = { DATABASE_URL: db.url, STORE_DIR: storeDir, SCHEDULE: 'off' };
  });
  afterAll(async () => {
    await db.drop();
    await fs.rm(storeDir, { recursive: true, force: true });
  });

  it('--json prints the run report with status, counts and rejected files; exit 0 despite rejections', async () => {
    const r = await runEntry(CLI, ['--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      status: 'succeeded',
      counts: { scanned: 3, new: 1, rejected: 1 },
      rejected: [{ key: '2.csv', reason: 'last_name is empty' }],
      output_written: true,
    });
    const out = await fs.readFile(path.join(storeDir, 'res', 'output.csv'), 'utf8');
    expect(out).toBe('user_id,first_name,last_name,birthts,img_path\r\n1,Ann,Lee,1000,src/1.png\r\n');
  });

  it('prints a human summary, and --full reprocesses everything', async () => {
    const r = await runEntry(CLI, ['--full'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^run #\d+ succeeded in [\d.]+s \(full\)\n/);
    expect(r.stdout).toContain('objects: 3 scanned, 3 read, 1 rejected, 0 ignored');
    expect(r.stdout).toContain('users:   0 new, 0 updated, 1 unchanged');
    expect(r.stdout).toContain('2.csv: last_name is empty');
  });

  it('--dry-run prints what a run would do; --user-id narrows a run; a bad --prefix exits 2', async () => {
    await fs.writeFile(path.join(storeDir, 'src', '1.csv'), userCsv('Anne', 'Lee', 1000));
    const dry = await runEntry(CLI, ['--dry-run', '--user-id', '1'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, counts: { scanned: 2, updated: 1 }, updated: [{ user_id: '1', changes: { first_name: { old: 'Ann', new: 'Anne' } } }] });
    const r = await runEntry(CLI, ['--user-id', '1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ scope: { user_ids: ['1'], prefix: null }, counts: { scanned: 2, read: 2, updated: 1 } });
    const bad = await runEntry(CLI, ['--prefix', ''], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--prefix: must not be empty');
  });

  it('exits 2 with a clear message on bad configuration', async () => {
    const r = await runEntry(CLI, [], { ...env, SRC_BUCKET: 'No_Such' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SRC_BUCKET: must be 3-63 characters');
  });

  it('exits 2 on an unknown option', async () => {
    const r = await runEntry(CLI, ['--fast'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--fast'[\s\S]*usage: npm run process/);
  });

  it('exits 1 when the database cannot be reached', async () => {
    const r = await runEntry(CLI, [], { ...env, DATABASE_URL: 'postgres://u:p@127.0.0.1:1/none' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot start: .*PostgreSQL.*ECONNREFUSED/);
  });

  it('runs on the embedded defaults: starts its own PostgreSQL, and reuses it the second time', async () => {
    const dataDir = await tempDir('userjoin-cli-pg-');
    await fs.chmod(dataDir, 0o755);
    try {
      const embeddedEnv = { STORE_DIR: storeDir, PGDATA_DIR: path.join(dataDir, 'pg'), SCHEDULE: 'off' };
      const first = await runEntry(CLI, ['--json'], embeddedEnv, 120_000);
      expect(first.code, first.stderr).toBe(0);
      expect(JSON.parse(first.stdout)).toMatchObject({ status: 'succeeded', counts: { new: 1 } });
      const second = await runEntry(CLI, ['--json'], embeddedEnv, 120_000);
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ status: 'succeeded', counts: { new: 0, unchanged: 1, read: 0 } });
      // The generated password is kept for the next start, readable by its owner only.
      expect((await fs.stat(path.join(dataDir, 'pg', 'password'))).mode & 0o777).toBe(0o600);
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('npm run process: files the service may not read', () => {
  let db: TestDatabase;
  let storeDir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    storeDir = await tempDir('userjoin-cli-perm-');
    const src = path.join(storeDir, 'src');
    await fs.mkdir(path.join(src, 'locked'), { recursive: true });
    await fs.writeFile(path.join(src, '1.csv'), userCsv('Ann', 'Lee', 1000));
    await fs.writeFile(path.join(src, '2.csv'), userCsv('Bob', 'Ray', 2000));
    await fs.writeFile(path.join(src, 'locked', '3.csv'), userCsv('Cy', 'Orr', 3000));
    await fs.writeFile(path.join(src, '4.csv'), userCsv('Di', 'Fox', 4000));
    await fs.chmod(path.join(src, '2.csv'), 0o000);
    await fs.chmod(path.join(src, 'locked'), 0o000);
  });
  afterAll(async () => {
    await fs.chmod(path.join(storeDir, 'src', 'locked'), 0o755).catch(() => undefined);
    await db.drop();
    await fs.rm(storeDir, { recursive: true, force: true });
  });

  it('reports a file and a folder it may not read, stores everyone else, and picks them up once readable', async () => {
    const env = { DATABASE_URL: db.url, STORE_DIR: storeDir, SCHEDULE: 'off' };
    const first = await runEntry(CLI, ['--json'], env, 60_000, { withoutFileOverride: true });
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({
      status: 'succeeded',
      counts: { new: 2, rejected: 2 },
      rejected: [
        { key: '2.csv', reason: 'it could not be read: permission denied (EACCES)' },
        { key: 'locked/', reason: 'the folder cannot be listed (EACCES)' },
      ],
    });

    await fs.chmod(path.join(storeDir, 'src', '2.csv'), 0o644);
    await fs.chmod(path.join(storeDir, 'src', 'locked'), 0o755);
    const second = await runEntry(CLI, ['--json'], env, 60_000, { withoutFileOverride: true });
    expect(second.code, second.stderr).toBe(0);
    // A permission fix does not change a file's fingerprint: it is read again because the
    // refusal was never recorded.
    expect(JSON.parse(second.stdout)).toMatchObject({ status: 'succeeded', counts: { read: 2, new: 2, rejected: 0 } });
  });
});
