import { Readable } from 'node:stream';
import type { ObjectInfo, ObjectStore, ReadHint } from '../../src/storage/index.js';

/** A door a test opens: the store stops at it until then, and says when it got there. */
export class Gate {
  /** Settles once the store has got to the gate (for a read: the bytes are read, not handed on). */
  readonly reached: Promise<void>;
  private arrive!: () => void;
  private opened!: () => void;
  private readonly open_: Promise<void>;
  constructor() {
    this.reached = new Promise((r) => (this.arrive = r));
    this.open_ = new Promise((r) => (this.opened = r));
  }
  open(): void {
    this.opened();
  }
  /** Called by the store. */
  async pass(): Promise<void> {
    this.arrive();
    await this.open_;
  }
}

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * Wraps a real store so that a test decides when some operations go on, instead of slowing
 * them down and hoping: no timing decides an interleaving.
 * - holdRead(key): the next read of key takes the object's bytes as they are now, then waits
 *   at the gate before handing them on (a reader that read an object, and has yet to commit).
 * - holdWrite(key): the next write of key takes the first chunk of its body, then waits at the
 *   gate before taking the rest (a writer partway through).
 * - openAll(): opens every gate handed out, so a test that failed midway can still stop.
 */
export class GateStore implements ObjectStore {
  private readonly reads = new Map<string, Gate>();
  private readonly writes = new Map<string, Gate>();
  private readonly handedOut: Gate[] = [];
  constructor(private readonly inner: ObjectStore) {}

  holdRead(key: string): Gate {
    const g = new Gate();
    this.reads.set(key, g);
    this.handedOut.push(g);
    return g;
  }
  holdWrite(key: string): Gate {
    const g = new Gate();
    this.writes.set(key, g);
    this.handedOut.push(g);
    return g;
  }
  openAll(): void {
    for (const g of this.handedOut) g.open();
  }

  get description() {
    return this.inner.description;
  }
  ensureBucket(bucket: string) {
    return this.inner.ensureBucket(bucket);
  }
  list(bucket: string, prefix?: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(bucket, prefix);
  }
  stat(bucket: string, key: string) {
    return this.inner.stat(bucket, key);
  }
  head(bucket: string, key: string) {
    return this.inner.head(bucket, key);
  }
  ping(bucket: string) {
    return this.inner.ping(bucket);
  }
  async read(bucket: string, key: string, hint?: ReadHint): Promise<Readable> {
    const gate = this.reads.get(key);
    if (!gate) return this.inner.read(bucket, key, hint);
    this.reads.delete(key);
    const body = await bytes(await this.inner.read(bucket, key, hint));
    await gate.pass();
    return Readable.from([body]);
  }
  async write(bucket: string, key: string, body: Readable | Buffer, contentType?: string): Promise<void> {
    const gate = this.writes.get(key);
    if (!gate || Buffer.isBuffer(body)) return this.inner.write(bucket, key, body, contentType);
    this.writes.delete(key);
    const it = body[Symbol.asyncIterator]();
    const first = await it.next();
    await gate.pass();
    async function* rest() {
      if (!first.done) yield first.value as Buffer;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value as Buffer;
    }
    return this.inner.write(bucket, key, Readable.from(rest()), contentType);
  }
}
