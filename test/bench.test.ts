// Smoke test of `npm run bench` in its small mode: it finishes and writes well-formed results.
// Timings are not checked: benchmarks are never pass/fail on speed.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/stores.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');

describe('npm run bench (small mode)', () => {
  let out: string;
  afterAll(async () => {
    if (out) await fs.rm(out, { recursive: true, force: true });
  });

  it('measures every step and writes JSON plus a markdown table', async () => {
    out = await tempDir('userjoin-bench-out-');
    await exec('npm', ['run', '-s', 'bench', '--', '--users', '300', '--s3-users', '100', '--api-seconds', '1', '--photos', '--photo-users', '40', '--out', out], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    const files = (await fs.readdir(out)).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/-300\.json$/);
    expect(files[1]).toMatch(/-300\.md$/);
    const r = JSON.parse(await fs.readFile(path.join(out, files[0]!), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(r.users).toBe(300);
    expect(r.data).toMatchObject({ objects: 570, withImage: 270, invalidCsv: 3 });
    expect(r.full!.counts).toMatchObject({ scanned: 570, read: 570, new: 297 });
    expect(r.onePercent!.changedUsers).toBe(6);
    const numbers = [
      r.full!.seconds, r.full!.floorSeconds, r.full!.ratioToFloor, r.full!.peakRssMb,
      r.noChange!.seconds, r.noChange!.listingFloorSeconds, r.onePercent!.seconds, r.onePercent!.budgetSeconds,
      (r.api!.filtered as Record<string, number>).p99Ms, (r.api!.trivial as Record<string, number>).requestsPerSec,
      r.s3!.seconds, r.s3!.floorSeconds, r.events!.p50Ms, r.events!.p99Ms,
    ];
    expect(r.events!.samples).toBe(10);
    // A small run may end before many files are dropped during it; its times are there all the same.
    const during = r.events!.duringFullRun as Record<string, number>;
    expect(during.samples).toBeGreaterThanOrEqual(0);
    for (const n of [during.quietRunSeconds, during.runSeconds, during.runRatio]) expect(n !== undefined && Number.isFinite(n) && n > 0, String(n)).toBe(true);
    // Which process takes the few items of a small run is the scheduler's business.
    expect((r.replicas!.itemsByProcess as number[]).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    for (const n of [r.replicas!.oneSeconds, r.replicas!.twoSeconds, r.replicas!.speedup]) expect(Number.isFinite(n) && (n as number) > 0, String(n)).toBe(true);
    for (const n of numbers) expect(Number.isFinite(n) && (n as number) > 0, String(n)).toBe(true);
    expect((r.api!.filtered as Record<string, number>).non2xx).toBe(0);
    // Photo mix: users 7 and 27 get a 12-megapixel JPEG. Rejected: the invalid CSV of user 37 and
    // the truncated PNGs of users 5, 18 and 31; never a photo.
    expect(r.photoMix).toMatchObject({ users: 40, photos: 2, counts: { scanned: 76, read: 76, rejected: 4 } });
    for (const n of [r.photoMix!.seconds, r.photoMix!.floorSeconds, r.photoMix!.ratioToFloor, r.photoMix!.peakRssMb]) expect(Number.isFinite(n) && (n as number) > 0, String(n)).toBe(true);
    for (const bytes of r.photoMix!.photoBytes as number[]) expect(bytes).toBeGreaterThan(2_000_000);
    const md = await fs.readFile(path.join(out, files[1]!), 'utf8');
    expect(md).toContain('| full run |');
    expect(md).toContain('| S3 full run (100 users, s3rver) |');
    expect(md).toContain('| event latency (10 files, folder watch → GET /data) |');
    expect(md).toContain('| event latency during a full run (');
    expect(md).toContain('| photo mix full run (40 users, 2 12 MP JPEGs) |');
  }, 300_000);
});
