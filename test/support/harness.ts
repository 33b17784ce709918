import { Readable } from 'node:stream';
import type { Config } from '../../src/config.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import type { RunReport } from '../../src/core/model.js';
import type { RunOptions } from '../../src/runs/fullRun.js';
import { runPipeline } from '../../src/runs/fullRun.js';
import type { ObjectInfo, ObjectStore, ReadHint } from '../../src/storage/index.js';
import type { TestDatabase } from './database.js';
import type { Backend } from './stores.js';
import { PixelBudget } from '../../src/images/budget.js';

let bucketSeq = 0;

/** Configuration as an operator would give it, with buckets of this test's own. */
export function testConfig(backend: Backend, db: TestDatabase, extra: Record<string, string> = {}): Config {
  const suffix = `${process.pid}-${++bucketSeq}`;
  return loadConfig({
    ...backend.env,
    DATABASE_URL: db.url,
    SRC_BUCKET: `src-${suffix}`,
    RES_BUCKET: `res-${suffix}`,
    SCHEDULE: 'off',
    ...extra,
  });
}

/**
 * Wraps a real store to count what the pipeline does with it, and to make it fail on demand.
 * The wrapped store still does all the work.
 */
export class ObservedStore implements ObjectStore {
  reads: string[] = [];
  writes: string[] = [];
  failWrites: Error | null = null;
  failReads: Error | null = null;
  /** Makes ping fail: the store as a whole looks down. */
  failPing: Error | null = null;
  /** Makes ping never answer, as a server that accepts connections and then hangs. */
  hangPing = false;
  /** Keys whose read opens but never delivers a byte, as a stalled server would. */
  stallReads = new Set<string>();
  /** Streams handed out for stalled keys, so a test can check they were closed. */
  stalled: Readable[] = [];
  /** Slows every read down, to keep a run in progress while a test acts. */
  readDelayMs = 0;
  /** Called before each read; a test uses it to break something mid-run. */
  beforeRead: ((key: string) => Promise<void>) | null = null;
  /** 'reversed' lists in descending key order, as no S3 server does, to test order independence. */
  listOrder: 'store' | 'reversed' = 'store';
  constructor(private readonly inner: ObjectStore) {}
  get description() {
    return this.inner.description;
  }
  ensureBucket(bucket: string) {
    return this.inner.ensureBucket(bucket);
  }
  async *list(bucket: string, prefix?: string): AsyncIterable<ObjectInfo> {
    if (this.listOrder === 'store') {
      yield* this.inner.list(bucket, prefix);
      return;
    }
    const all: ObjectInfo[] = [];
    for await (const o of this.inner.list(bucket, prefix)) all.push(o);
    yield* all.reverse();
  }
  stat(bucket: string, key: string) {
    return this.inner.stat(bucket, key);
  }
  head(bucket: string, key: string) {
    return this.inner.head(bucket, key);
  }
  async read(bucket: string, key: string, hint?: ReadHint): Promise<Readable> {
    if (this.beforeRead) await this.beforeRead(key);
    if (this.readDelayMs > 0) await new Promise((r) => setTimeout(r, this.readDelayMs));
    if (this.failReads) throw this.failReads;
    this.reads.push(key);
    if (this.stallReads.has(key)) {
      const never = new Readable({ read: () => undefined });
      this.stalled.push(never);
      return never;
    }
    return this.inner.read(bucket, key, hint);
  }
  async write(bucket: string, key: string, body: Readable | Buffer, contentType?: string) {
    if (this.failWrites) throw this.failWrites;
    this.writes.push(key);
    return this.inner.write(bucket, key, body, contentType);
  }
  async ping(bucket: string) {
    if (this.failPing) throw this.failPing;
    if (this.hangPing) await new Promise(() => undefined);
    return this.inner.ping(bucket);
  }
  reset() {
    this.reads = [];
    this.writes = [];
  }
}

export async function runToCompletion(store: ObjectStore, db: TestDatabase, config: Config, opts: Partial<RunOptions> = {}): Promise<RunReport> {
  const outcome = await runPipeline({ db: db.pool, store, config, log: silentLogger(), budget: new PixelBudget(config.limits.maxImagePixels) }, { trigger: 'cli', ...opts });
  if (outcome.kind !== 'finished') throw new Error(`run did not start: ${JSON.stringify(outcome)}`);
  return outcome.report;
}
