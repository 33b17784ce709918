// npm run bench -- [--users N] [--s3-users N] [--api-seconds S] [--photos] [--photo-users N] [--core] [--out DIR]
//
// Generates a data set, then measures userjoin against floors measured in the same run on
// the same machine: the least work each measured step cannot avoid, written as the plainest
// code. Results go to bench/results/ as JSON plus a markdown table. Never a pass/fail test.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import Koa from 'koa';
import * as Minio from 'minio';
import pLimit from 'p-limit';
import pg from 'pg';
import sharp from 'sharp';
import { loadConfig } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { silentLogger } from '../src/log.js';
import { startService } from '../src/service.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
// The pipeline's default; the floors read with the same concurrency so the comparison is fair.
const CONCURRENCY = 8;

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '100000' },
    's3-users': { type: 'string' },
    'api-seconds': { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench/results') },
    keep: { type: 'boolean', default: false },
    // The photo mix: 5% of users with a 12-megapixel JPEG photo, at --photo-users users.
    photos: { type: 'boolean', default: false },
    'photo-users': { type: 'string', default: '10000' },
    // Only the runs (full, no change, 1% changed) and their floors: for medians over repeated runs.
    core: { type: 'boolean', default: false },
  },
});
const N = positive(args.users, '--users');
const S3_USERS = args['s3-users'] ? positive(args['s3-users'], '--s3-users') : Math.min(10_000, N);
const PHOTO_USERS = positive(args['photo-users'], '--photo-users');
const EVENT_SAMPLES = N >= 10_000 ? 60 : 10;
// Files dropped during a full reprocess; as many as the run leaves time for, up to this.
const DURING_SAMPLES = N >= 10_000 ? 40 : 10;
// Users per work item in the replica runs: the default, or smaller so a small run has several.
const REPLICA_BATCH = Math.min(1000, Math.max(10, Math.floor(N / 20)));
const API_SECONDS = args['api-seconds'] ? positive(args['api-seconds'], '--api-seconds') : N >= 10_000 ? 10 : 3;

function positive(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const seconds = (ms: number) => Math.round(ms) / 1000;
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
function percentiles(ms: number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: Math.round(sorted.at(-1)!) };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

// ---------------------------------------------------------------------------------------
// Data: N users; 90% with a 64x64 PNG; 1% invalid CSVs; a few corrupt images.

interface DataSet {
  ids: string[];
  withImage: number;
  invalidCsv: number;
  corruptImages: number;
  photos: number;
}

const userId = (i: number) => String(1_000_000 + i);

async function pngVariants(): Promise<Buffer[]> {
  // Noise, so the PNGs are the size real 64x64 photos compress to, not a few bytes.
  return Promise.all(
    Array.from({ length: 16 }, () => sharp(randomBytes(64 * 64 * 3), { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer()),
  );
}

/**
 * A phone photo: 4000x3000, JPEG quality 88, 3-4 MB. Smooth large shapes, mid-scale detail
 * and sensor noise, so the encoder and the decoder work as on a real picture; a flat colour
 * would compress to nothing and decode in no time.
 */
async function photo(): Promise<Buffer> {
  const W = 4000;
  const H = 3000;
  const field = (w: number, h: number) => sharp(randomBytes(w * h * 3), { raw: { width: w, height: h, channels: 3 } }).resize(W, H, { kernel: 'cubic' });
  const base = await field(40, 30).blur(3).raw().toBuffer();
  const mid = await field(500, 375).raw().toBuffer();
  const fine = randomBytes(W * H * 3);
  const px = Buffer.allocUnsafe(W * H * 3);
  for (let i = 0; i < px.length; i++) px[i] = Math.min(255, Math.max(0, base[i]! * 0.7 + (mid[i]! - 128) * 0.35 + (fine[i]! - 128) * 0.12));
  return sharp(px, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 88 }).toBuffer();
}

// A handful of distinct photos, generated once and copied: enough for the decoder, cheap to make.
const PHOTO_VARIANTS = 4;

async function generate(users: number, write: (key: string, body: Buffer) => Promise<void>, opts: { photos?: Buffer[] } = {}): Promise<DataSet> {
  const pngs = await pngVariants();
  const limit = pLimit(32);
  const corruptEvery = Math.max(1, Math.floor(users / Math.max(3, Math.round(users / 20_000))));
  const set: DataSet = { ids: [], withImage: 0, invalidCsv: 0, corruptImages: 0, photos: 0 };
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < users; i++) {
    const id = userId(i);
    set.ids.push(id);
    const invalid = i % 100 === 37;
    const birthts = Date.UTC(1950, 0, 1) + ((i * 7919) % 60) * 365 * 86_400_000 + (i % 365) * 86_400_000;
    const csv = invalid ? `first_name,last_name,birthts\nFirst${i},Last${i},not-a-number\n` : `first_name,last_name,birthts\nFirst${i},Last${i},${birthts}\n`;
    if (invalid) set.invalidCsv++;
    jobs.push(limit(() => write(`${id}.csv`, Buffer.from(csv))));
    if (opts.photos && i % 20 === 7) {
      // 5% of users: a 12-megapixel JPEG instead of the small PNG.
      set.withImage++;
      set.photos++;
      jobs.push(limit(() => write(`${id}.jpg`, opts.photos![i % opts.photos!.length]!)));
    } else if (i % 10 !== 3) {
      set.withImage++;
      let png = pngs[i % pngs.length]!;
      if (i % corruptEvery === 5) {
        png = png.subarray(0, Math.floor(png.length / 2)); // truncated: a valid header, broken data
        set.corruptImages++;
      }
      jobs.push(limit(() => write(`${id}.png`, png)));
    }
    if (jobs.length >= 2000) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return set;
}

// ---------------------------------------------------------------------------------------
// Floors: the least work a run cannot avoid, in the plainest code.

interface Listed {
  key: string;
  size: number;
  mtimeMs: number;
}

async function listFolder(dir: string): Promise<Listed[]> {
  const names = await fs.readdir(dir);
  const limit = pLimit(64);
  return Promise.all(names.map((key) => limit(async () => {
    const st = await fs.stat(path.join(dir, key));
    return { key, size: st.size, mtimeMs: st.mtimeMs };
  })));
}

async function listS3(client: Minio.Client, bucket: string): Promise<Listed[]> {
  const out: Listed[] = [];
  for await (const o of client.listObjectsV2(bucket, '', true) as AsyncIterable<{ name?: string; size: number; lastModified?: Date }>) {
    if (o.name) out.push({ key: o.name, size: o.size, mtimeMs: o.lastModified?.getTime() ?? 0 });
  }
  return out;
}

async function streamToBuffer(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

// The floor decodes each image as the image check must, to see all of its data: once, into
// a 256-pixel box without enlargement, so small images decode as they are and large ones
// shrink while decoding (shrink-on-load), as the pipeline may.
const decodeOnce = (body: Buffer) => sharp(body).resize(256, 256, { fit: 'inside', withoutEnlargement: true }).raw().toBuffer();

/** List, read every object, decode every image once, one bulk INSERT of N rows. */
async function fullFloor(list: () => Promise<Listed[]>, read: (key: string) => Promise<Buffer>, dbUrl: string): Promise<number> {
  const client = new pg.Client(dbUrl);
  await client.connect();
  await client.query('DROP TABLE IF EXISTS floor_users');
  await client.query('CREATE TABLE floor_users (user_id text PRIMARY KEY, first_name text, last_name text, birthts bigint, img text)');
  const t0 = performance.now();
  const listed = await list();
  const limit = pLimit(CONCURRENCY);
  const rows = new Map<string, [string, string, string, string | null]>();
  await Promise.all(
    listed.map((o) =>
      limit(async () => {
        const body = await read(o.key);
        const id = o.key.slice(0, o.key.lastIndexOf('.'));
        if (o.key.endsWith('.csv')) {
          const [first = '', last = '', ts = ''] = body.toString('utf8').split('\n')[1]!.split(',');
          const row = rows.get(id);
          rows.set(id, [first, last, ts, row?.[3] ?? null]);
        } else {
          // A truncated image fails here, as it must: the floor does not store it.
          if (!(await decodeOnce(body).then(() => true, () => false))) return;
          const row = rows.get(id);
          if (row) row[3] = o.key;
          else rows.set(id, ['', '', '', o.key]);
        }
      }),
    ),
  );
  const all = [...rows.entries()].filter(([, r]) => /^-?\d+$/.test(r[2]));
  await client.query(
    'INSERT INTO floor_users SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])',
    [all.map((r) => r[0]), all.map((r) => r[1][0]), all.map((r) => r[1][1]), all.map((r) => r[1][2]), all.map((r) => r[1][3])],
  );
  const ms = performance.now() - t0;
  await client.end();
  return ms;
}

// ---------------------------------------------------------------------------------------
// Running userjoin: the real CLI, as a separate process, so its peak RSS is its own.

interface ProcessRun {
  ms: number;
  peakRssMb: number;
  report: { status: string; counts: Record<string, number> };
}

async function runCli(env: Record<string, string>, full: boolean): Promise<ProcessRun> {
  const rssFile = path.join(os.tmpdir(), `userjoin-bench-rss-${randomBytes(4).toString('hex')}`);
  const t0 = performance.now();
  const { stdout } = await exec(
    process.execPath,
    ['--import', path.join(ROOT, 'bench/maxrss.mjs'), path.join(ROOT, 'dist/cli/processMain.js'), '--json', ...(full ? ['--full'] : [])],
    { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', BENCH_RSS_FILE: rssFile, ...env }, maxBuffer: 256 * 1024 * 1024 },
  );
  const ms = performance.now() - t0;
  const peak = Number(await fs.readFile(rssFile, 'utf8'));
  await fs.rm(rssFile, { force: true });
  const report = JSON.parse(stdout) as ProcessRun['report'];
  if (report.status !== 'succeeded') throw new Error(`run ${report.status}: ${stdout}`);
  return { ms, peakRssMb: mb(peak), report };
}

// ---------------------------------------------------------------------------------------
// API load: autocannon in its own process against the service and a trivial Koa route.

interface Load {
  p50Ms: number;
  p99Ms: number;
  requestsPerSec: number;
  non2xx: number;
}

/** `npm start` as its own process (from dist/), on a free port; stop() sends SIGTERM and waits. */
async function startServiceProcess(env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/main.js')], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', WATCH: 'false', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /"url":"(http:\/\/[^"]+)","schedule"/.exec(stderr);
      if (m) resolve(m[1]!);
      // Only the start is needed; the rest of the log is dropped.
      if (stderr.length > 1_000_000) stderr = stderr.slice(-10_000);
    });
    child.once('exit', (code) => reject(new Error(`service exited with ${code}: ${stderr.slice(-2000)}`)));
  });
  return {
    url,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function autocannon(url: string): Promise<Load> {
  const { stdout } = await exec(process.execPath, [path.join(ROOT, 'node_modules/autocannon/autocannon.js'), '-c', '10', '-d', String(API_SECONDS), '-j', url], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const r = JSON.parse(stdout) as { latency: { p50: number; p99: number }; requests: { average: number }; non2xx: number };
  return { p50Ms: r.latency.p50, p99Ms: r.latency.p99, requestsPerSec: Math.round(r.requests.average), non2xx: r.non2xx };
}

/** Peak RSS growth of this process while fn runs, sampled every 5 ms. */
async function rssGrowth<T>(fn: () => Promise<T>): Promise<{ ms: number; growthMb: number; value: T }> {
  global.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  try {
    const { ms, value } = await timed(fn);
    peak = Math.max(peak, process.memoryUsage.rss());
    return { ms, growthMb: mb(peak - before), value };
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-bench-'));
  // As root, the embedded PostgreSQL runs as the postgres user, which must reach its folder.
  await fs.chmod(work, 0o755);
  const storeDir = path.join(work, 'minio');
  const srcDir = path.join(storeDir, 'src');
  await fs.mkdir(srcDir, { recursive: true });
  say(`working in ${work}`);

  const pgServer = await startEmbeddedPostgres({ dataDir: path.join(work, 'pg'), port: 0 });
  const admin = new pg.Client(pgServer.url);
  await admin.connect();
  const database = async (name: string) => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
    const u = new URL(pgServer.url);
    u.pathname = `/${name}`;
    return u.toString();
  };
  const results: Record<string, unknown> = {};
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    say(`generating ${N} users`);
    const gen = await timed(() => generate(N, (key, body) => fs.writeFile(path.join(srcDir, key), body)));
    const data = gen.value;
    const objects = N + data.withImage;
    say(`generated ${objects} objects in ${seconds(gen.ms)} s`);

    // Floors first, on a cold-ish cache like the first run would be... both read the same files,
    // so run the floor once to warm the page cache, then measure each.
    const floorDb = await database('bench_floor');
    await fullFloor(() => listFolder(srcDir), (k) => fs.readFile(path.join(srcDir, k)), floorDb);
    const floorFull = await fullFloor(() => listFolder(srcDir), (k) => fs.readFile(path.join(srcDir, k)), floorDb);
    say(`full floor: ${seconds(floorFull)} s`);

    const appDb = await database('bench_userjoin');
    const env = { STORE_DIR: storeDir, DATABASE_URL: appDb };
    const full = await runCli(env, true);
    say(`full run: ${seconds(full.ms)} s, peak RSS ${full.peakRssMb} MB`);

    const listFloor = (await timed(() => listFolder(srcDir))).ms;
    const noChange = await runCli(env, false);
    say(`no-change re-run: ${seconds(noChange.ms)} s (listing floor ${seconds(listFloor)} s)`);

    // 1% of CSVs and 1% of images rewritten with new content.
    const changedUsers = new Set<string>();
    const pngs = await pngVariants();
    const step = 100;
    for (let i = 1; i < N; i += step) {
      const id = userId(i);
      await fs.writeFile(path.join(srcDir, `${id}.csv`), `first_name,last_name,birthts\nChanged${i},Last${i},${Date.UTC(1980, 0, 1)}\n`);
      changedUsers.add(id);
    }
    // i % 10 === 0 here, so every one of these users has an image.
    for (let i = 50; i < N; i += step) {
      await fs.writeFile(path.join(srcDir, `${userId(i)}.png`), pngs[(i + 1) % pngs.length]!);
      changedUsers.add(userId(i));
    }
    const onePercent = await runCli(env, false);
    const floorPerUser = floorFull / N;
    say(`1% changed re-run: ${seconds(onePercent.ms)} s (${changedUsers.size} users)`);

    const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryGb: Math.round(os.totalmem() / 1024 ** 3), node: process.version, platform: `${os.platform()} ${os.release()}` };
    const coreResults = {
      machine,
      date: new Date().toISOString(),
      users: N,
      data: { objects, withImage: data.withImage, invalidCsv: data.invalidCsv, corruptImages: data.corruptImages },
      full: { seconds: seconds(full.ms), usersPerSec: Math.round(N / (full.ms / 1000)), floorSeconds: seconds(floorFull), ratioToFloor: ratio(full.ms, floorFull), peakRssMb: full.peakRssMb, counts: full.report.counts },
      noChange: { seconds: seconds(noChange.ms), listingFloorSeconds: seconds(listFloor), ratioToFloor: ratio(noChange.ms, listFloor), peakRssMb: noChange.peakRssMb, counts: noChange.report.counts },
      onePercent: {
        seconds: seconds(onePercent.ms),
        changedUsers: changedUsers.size,
        budgetSeconds: seconds(noChange.ms + 1.2 * floorPerUser * changedUsers.size),
        peakRssMb: onePercent.peakRssMb,
        counts: onePercent.report.counts,
      },
    };
    Object.assign(results, coreResults);
    // --core: the run measures only (full, no change, 1%), for medians over repeated runs.
    if (!args.core) {
      // API: the service in this process, a trivial Koa route beside it, autocannon in another.
      const config = loadConfig({ ...env, HOST: '127.0.0.1', PORT: '0', SCHEDULE: 'off', LOG_LEVEL: 'silent' });
      const service = await startService(config, silentLogger());
      cleanup.push(() => service.stop());
      // Its folder watch, for the event latency below.
      const trivial = new Koa();
      trivial.use((ctx) => {
        ctx.body = { ok: true };
      });
      const trivialServer = trivial.listen(0, '127.0.0.1');
      await new Promise((r) => trivialServer.once('listening', r));
      cleanup.push(() => new Promise((r) => trivialServer.close(r)));
      const trivialUrl = `http://127.0.0.1:${(trivialServer.address() as { port: number }).port}/`;
      const filtered = await autocannon(`${service.url}/data?min_age=30&max_age=40&is_image_exists=true&limit=100`);
      const reference = await autocannon(trivialUrl);
      say(`GET /data filtered: p99 ${filtered.p99Ms} ms, ${filtered.requestsPerSec} req/s; trivial route ${reference.requestsPerSec} req/s`);

      const streamed = await rssGrowth(async () => {
        const res = await fetch(`${service.url}/data`);
        let bytes = 0;
        for await (const chunk of res.body!) bytes += (chunk as Uint8Array).length;
        return bytes;
      });
      const csvStreamed = await rssGrowth(async () => {
        const res = await fetch(`${service.url}/data?format=csv`);
        let bytes = 0;
        for await (const chunk of res.body!) bytes += (chunk as Uint8Array).length;
        return bytes;
      });
      // output.csv: a --full run with nothing changed re-reads every object, so time the export
      // alone by deleting output.csv and running normally (nothing else changed).
      await fs.rm(path.join(storeDir, 'res', 'output.csv'));
      const exportRun = await runCli(env, false);
      say(`export: GET /data ${seconds(streamed.ms)} s (+${streamed.growthMb} MB), output.csv run ${seconds(exportRun.ms)} s`);

      // Event latency: a CSV written into the watched folder, until its user answers in GET
      // /data/:user_id. One at a time, with the EXPORT_INTERVAL exports of the full table in between.
      // Writes a new user's CSV, and answers how long until GET /data/:user_id has the user.
      const dropAndWait = async (id: string, first: string): Promise<number> => {
        const t0 = performance.now();
        await fs.writeFile(path.join(srcDir, `${id}.csv`), `first_name,last_name,birthts\n${first},Latency,0\n`);
        for (;;) {
          const res = await fetch(`${service.url}/data/${id}`);
          await res.arrayBuffer();
          if (res.status === 200) return performance.now() - t0;
          if (performance.now() - t0 > 60_000) throw new Error(`user ${id} did not appear within 60 s of its file`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      const latencies: number[] = [];
      for (let i = 0; i < EVENT_SAMPLES; i++) {
        latencies.push(await dropAndWait(`event${i}`, `Event${i}`));
        // A pause, so the samples fall at different points of the export cycle.
        await new Promise((r) => setTimeout(r, 50 + ((i * 37) % 200)));
      }
      const eventLatency = percentiles(latencies);
      say(`event latency: p50 ${eventLatency.p50Ms} ms, p99 ${eventLatency.p99Ms} ms over ${EVENT_SAMPLES} files`);

      // Event latency during a full run: the same reprocess timed alone, then again with files
      // dropped one after another while it runs. Only files dropped while it still runs count.
      const runTimes = async (id: number) => {
        for (;;) {
          const r = (await (await fetch(`${service.url}/runs/${id}?issues=0`)).json()) as { status: string; started_at: string; finished_at: string | null };
          if (r.status !== 'running') {
            if (r.status !== 'succeeded') throw new Error(`full run ${id}: ${r.status}`);
            return Date.parse(r.finished_at!) - Date.parse(r.started_at);
          }
          await new Promise((res) => setTimeout(res, 50));
        }
      };
      const startFull = async () => ((await (await fetch(`${service.url}/data?full=true`, { method: 'POST' })).json()) as { id: number }).id;
      const quietRunMs = await runTimes(await startFull());
      const busyRun = await startFull();
      const during: number[] = [];
      for (let i = 0; during.length < DURING_SAMPLES; i++) {
        const state = (await (await fetch(`${service.url}/runs/${busyRun}?issues=0`)).json()) as { status: string };
        if (state.status !== 'running') break;
        during.push(await dropAndWait(`during${i}`, `During${i}`));
        await new Promise((r) => setTimeout(r, 50 + ((i * 37) % 200)));
      }
      const busyRunMs = await runTimes(busyRun);
      const duringRun = {
        samples: during.length,
        ...(during.length > 0 ? percentiles(during) : { p50Ms: null, p99Ms: null, maxMs: null }),
        quietRunSeconds: seconds(quietRunMs),
        runSeconds: seconds(busyRunMs),
        runRatio: ratio(busyRunMs, quietRunMs),
      };
      say(`event latency during a full run: ${JSON.stringify(duringRun)}`);

      await service.stop();
      // Replicas: the same full run (fresh database, so every user is inserted) with the work
      // queue, by one service process and then by two; the run is asked of the first.
      const replicaRun = async (processes: number) => {
        const dbUrl = await database(`bench_replicas_${processes}`);
        const procs = await Promise.all(
          Array.from({ length: processes }, () => startServiceProcess({ STORE_DIR: storeDir, DATABASE_URL: dbUrl, WORK_QUEUE: 'pgboss', BATCH_SIZE: String(REPLICA_BATCH) })),
        );
        try {
          const t0 = performance.now();
          const res = await fetch(`${procs[0]!.url}/data?wait=true`, { method: 'POST' });
          const run = (await res.json()) as { status: string; counts: { new: number }; id: number };
          const ms = performance.now() - t0;
          if (run.status !== 'succeeded' || run.counts.new < N - data.invalidCsv) throw new Error(`replica run: ${JSON.stringify(run).slice(0, 300)}`);
          const { workers } = (await (await fetch(`${procs[0]!.url}/runs/${run.id}?issues=0`)).json()) as { workers: Array<{ items: number }> };
          return { ms, items: workers.map((w) => w.items) };
        } finally {
          await Promise.all(procs.map((p) => p.stop()));
        }
      };
      const oneReplica = await replicaRun(1);
      const twoReplicas = await replicaRun(2);
      say(`replicas: 1 process ${seconds(oneReplica.ms)} s, 2 processes ${seconds(twoReplicas.ms)} s (items ${twoReplicas.items.join(' + ')})`);

      // S3 path: the same full run and floor at S3_USERS users against s3rver.
      say(`S3: ${S3_USERS} users on s3rver`);
      const s3Dir = path.join(work, 's3rver');
      await fs.mkdir(s3Dir);
      const s3 = spawn(process.execPath, [path.join(ROOT, 'bench/s3rver.mjs'), s3Dir], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' } });
      cleanup.push(async () => {
        s3.kill('SIGTERM');
        await new Promise((r) => s3.once('exit', r));
      });
      const port = Number((await new Promise<string>((resolve) => s3.stdout.once('data', (d: Buffer) => resolve(d.toString())))).trim());
      const minio = new Minio.Client({ endPoint: '127.0.0.1', port, useSSL: false, accessKey: 'S3RVER', secretKey: 'S3RVER', region: 'us-east-1', pathStyle: true });
      await minio.makeBucket('src', 'us-east-1');
      const s3Gen = await timed(() => generate(S3_USERS, async (key, body) => void (await minio.putObject('src', key, body, body.length))));
      say(`uploaded ${S3_USERS + s3Gen.value.withImage} objects in ${seconds(s3Gen.ms)} s`);
      const s3FloorDb = await database('bench_s3_floor');
      const readS3 = async (key: string) => streamToBuffer(await minio.getObject('src', key));
      await fullFloor(() => listS3(minio, 'src'), readS3, s3FloorDb);
      const s3Floor = await fullFloor(() => listS3(minio, 'src'), readS3, s3FloorDb);
      const s3Db = await database('bench_s3_userjoin');
      const s3Full = await runCli({ MINIO_ENDPOINT: `http://127.0.0.1:${port}`, MINIO_ACCESS_KEY: 'S3RVER', MINIO_SECRET_KEY: 'S3RVER', DATABASE_URL: s3Db }, true);
      say(`S3 full run ${seconds(s3Full.ms)} s, floor ${seconds(s3Floor)} s`);

      // Photo mix: real-size photos for 5% of users, at PHOTO_USERS users, folder store.
      let photoMix: Record<string, unknown> | null = null;
      if (args.photos) {
        const photoStore = path.join(work, 'photos');
        const photoSrc = path.join(photoStore, 'src');
        await fs.mkdir(photoSrc, { recursive: true });
        say(`photo mix: generating ${PHOTO_VARIANTS} 12-megapixel photos`);
        const photos: Buffer[] = [];
        for (let i = 0; i < PHOTO_VARIANTS; i++) photos.push(await photo());
        const photoGen = await generate(PHOTO_USERS, (key, body) => fs.writeFile(path.join(photoSrc, key), body), { photos });
        const photoFloorDb = await database('bench_photo_floor');
        await fullFloor(() => listFolder(photoSrc), (k) => fs.readFile(path.join(photoSrc, k)), photoFloorDb);
        const photoFloor = await fullFloor(() => listFolder(photoSrc), (k) => fs.readFile(path.join(photoSrc, k)), photoFloorDb);
        const photoRun = await runCli({ STORE_DIR: photoStore, DATABASE_URL: await database('bench_photo_userjoin') }, true);
        say(`photo mix: full run ${seconds(photoRun.ms)} s, floor ${seconds(photoFloor)} s, peak RSS ${photoRun.peakRssMb} MB`);
        photoMix = {
          users: PHOTO_USERS,
          photos: photoGen.photos,
          photoBytes: photos.map((p) => p.length),
          seconds: seconds(photoRun.ms),
          floorSeconds: seconds(photoFloor),
          ratioToFloor: ratio(photoRun.ms, photoFloor),
          peakRssMb: photoRun.peakRssMb,
          counts: photoRun.report.counts,
        };
      }

      Object.assign(results, {
        api: { seconds: API_SECONDS, connections: 10, filtered, trivial: reference, ratioOfTrivial: ratio(filtered.requestsPerSec, reference.requestsPerSec) },
        export: {
          getDataJson: { seconds: seconds(streamed.ms), bytes: streamed.value, rssGrowthMb: streamed.growthMb },
          getDataCsv: { seconds: seconds(csvStreamed.ms), bytes: csvStreamed.value, rssGrowthMb: csvStreamed.growthMb },
          outputCsvRun: { seconds: seconds(exportRun.ms), peakRssMb: exportRun.peakRssMb },
        },
        replicas: {
          oneSeconds: seconds(oneReplica.ms),
          twoSeconds: seconds(twoReplicas.ms),
          speedup: ratio(oneReplica.ms, twoReplicas.ms),
          itemsByProcess: twoReplicas.items,
        },
        events: { samples: EVENT_SAMPLES, exportIntervalSeconds: config.events.exportIntervalMs / 1000, ...eventLatency, duringFullRun: duringRun },
        s3: { users: S3_USERS, seconds: seconds(s3Full.ms), floorSeconds: seconds(s3Floor), ratioToFloor: ratio(s3Full.ms, s3Floor), peakRssMb: s3Full.peakRssMb },
        photoMix,
      });
    }
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await admin.end();
    await pgServer.stop();
    if (!args.keep) await fs.rm(work, { recursive: true, force: true });
  }

  await fs.mkdir(args.out, { recursive: true });
  const stamp = `${new Date().toISOString().replace(/[:.]/g, '-')}-${N}`;
  await fs.writeFile(path.join(args.out, `${stamp}.json`), JSON.stringify(results, null, 2) + '\n');
  const md = markdown(results as unknown as CoreResults | Results);
  await fs.writeFile(path.join(args.out, `${stamp}.md`), md);
  process.stdout.write(md);
  say(`wrote ${path.join(args.out, stamp)}.{json,md}`);
}

type CoreResults = {
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string };
  date: string;
  users: number;
  data: { objects: number };
  full: { seconds: number; usersPerSec: number; floorSeconds: number; ratioToFloor: number; peakRssMb: number };
  noChange: { seconds: number; listingFloorSeconds: number; ratioToFloor: number; peakRssMb: number };
  onePercent: { seconds: number; changedUsers: number; budgetSeconds: number };
};

type Results = CoreResults & {
  api: { filtered: Load; trivial: Load; ratioOfTrivial: number; seconds: number };
  export: { getDataJson: { seconds: number; rssGrowthMb: number }; getDataCsv: { seconds: number; rssGrowthMb: number }; outputCsvRun: { seconds: number; peakRssMb: number } };
  s3: { users: number; seconds: number; floorSeconds: number; ratioToFloor: number };
  events: {
    samples: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    exportIntervalSeconds: number;
    duringFullRun: { samples: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null; quietRunSeconds: number; runSeconds: number; runRatio: number };
  };
  replicas: { oneSeconds: number; twoSeconds: number; speedup: number; itemsByProcess: number[] };
  photoMix: { users: number; photos: number; seconds: number; floorSeconds: number; ratioToFloor: number; peakRssMb: number } | null;
};

function markdown(r: CoreResults | Results): string {
  const core = [
    ['full run', `${r.full.seconds} s, ${r.full.usersPerSec} users/s`, `floor ${r.full.floorSeconds} s`, `${r.full.ratioToFloor}`, '≤ 1.25'],
    ['peak RSS, full run', `${r.full.peakRssMb} MB`, '', '', '≤ 256 MB at 100,000 users'],
    ['no-change re-run', `${r.noChange.seconds} s`, `listing floor ${r.noChange.listingFloorSeconds} s`, `${r.noChange.ratioToFloor}`, '≤ 1.2'],
    ['1% changed re-run', `${r.onePercent.seconds} s (${r.onePercent.changedUsers} users)`, `budget ${r.onePercent.budgetSeconds} s`, `${ratio(r.onePercent.seconds, r.onePercent.budgetSeconds)} of budget`, '≤ 1 of budget'],
  ];
  const rows = 'api' in r ? [...core, ...restRows(r)] : core;
  return [
    `### ${r.users.toLocaleString('en-US')} users (${r.data.objects.toLocaleString('en-US')} objects), ${r.date.slice(0, 10)}${'api' in r ? '' : ' (--core)'}`,
    '',
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGb} GB RAM, Node ${r.machine.node}. Folder store and embedded PostgreSQL unless noted.${'api' in r ? ` API load: autocannon, 10 connections, ${r.api.seconds} s.` : ''}`,
    '',
    '| measure | userjoin | floor / reference | ratio | target |',
    '|---|---|---|---|---|',
    ...rows.map((c) => `| ${c.join(' | ')} |`),
    '',
  ].join('\n');
}

function restRows(r: Results): string[][] {
  return [
    ['GET /data filtered page', `p50 ${r.api.filtered.p50Ms} ms, p99 ${r.api.filtered.p99Ms} ms, ${r.api.filtered.requestsPerSec} req/s`, `trivial Koa route ${r.api.trivial.requestsPerSec} req/s`, `${r.api.ratioOfTrivial}`, 'p99 ≤ 20 ms, ≥ 0.4'],
    ['GET /data, all users (JSON)', `${r.export.getDataJson.seconds} s, RSS +${r.export.getDataJson.rssGrowthMb} MB`, '', '', '≤ +50 MB'],
    ['GET /data, all users (CSV)', `${r.export.getDataCsv.seconds} s, RSS +${r.export.getDataCsv.rssGrowthMb} MB`, '', '', '≤ +50 MB'],
    [`event latency (${r.events.samples} files, folder watch → GET /data)`, `p50 ${r.events.p50Ms} ms, p99 ${r.events.p99Ms} ms, max ${r.events.maxMs} ms`, `EXPORT_INTERVAL ${r.events.exportIntervalSeconds} s`, '', 'p99 ≤ 2 s'],
    [
      `event latency during a full run (${r.events.duringFullRun.samples} files)`,
      `p50 ${r.events.duringFullRun.p50Ms} ms, p99 ${r.events.duringFullRun.p99Ms} ms, max ${r.events.duringFullRun.maxMs} ms`,
      `idle p50 ${r.events.p50Ms} ms, p99 ${r.events.p99Ms} ms`,
      `full run ${r.events.duringFullRun.runSeconds} s against ${r.events.duringFullRun.quietRunSeconds} s without events: ${r.events.duringFullRun.runRatio}`,
      'p99 ≤ 2 s; run ≤ 1.1',
    ],
    ['full run with WORK_QUEUE=pgboss, 2 processes against 1', `${r.replicas.twoSeconds} s (items ${r.replicas.itemsByProcess.join(' + ')})`, `1 process ${r.replicas.oneSeconds} s`, `${r.replicas.speedup} × faster`, ''],
    ['run that only writes output.csv', `${r.export.outputCsvRun.seconds} s, peak RSS ${r.export.outputCsvRun.peakRssMb} MB`, '', '', ''],
    [`S3 full run (${r.s3.users} users, s3rver)`, `${r.s3.seconds} s`, `floor ${r.s3.floorSeconds} s`, `${r.s3.ratioToFloor}`, '≤ 1.2'],
    ...(r.photoMix
      ? [
          [`photo mix full run (${r.photoMix.users} users, ${r.photoMix.photos} 12 MP JPEGs)`, `${r.photoMix.seconds} s`, `floor ${r.photoMix.floorSeconds} s`, `${r.photoMix.ratioToFloor}`, '≤ 1.3'],
          ['peak RSS, photo mix', `${r.photoMix.peakRssMb} MB`, '', '', '≤ 400 MB'],
        ]
      : []),
  ];
}

await main();
