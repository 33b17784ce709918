import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Readable, Transform } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Limits } from '../config.js';
import { within } from '../deadline.js';
import { fingerprintOf } from '../core/model.js';
import { PixelBudget, PixelBudgetTimeout } from './budget.js';
import { askSharp, loadSharp, pixelLimitReason, sharpMessage } from './checkImage.js';
import { ObjectReadTimeoutError, ObjectTooLargeError, readLimited } from '../storage/readLimited.js';
import type { ObjectInfo, ObjectStore } from '../storage/index.js';
import { ObjectNotFoundError, ObjectUnreadableError } from '../storage/index.js';

/**
 * Why a photo cannot be served. gone: the object is no longer in the store. unusable: it is
 * there but no longer passes the checks (too large, not an image, over the pixel limit,
 * unreadable). timeout: reading or resizing it ran past OBJECT_TIMEOUT_MS. store: the store
 * itself failed.
 */
export class PhotoError extends Error {
  override name = 'PhotoError';
  constructor(
    readonly kind: 'gone' | 'unusable' | 'timeout' | 'store',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A stored photo as the users table names it. */
export interface PhotoRef {
  /** `<bucket>/<key>`, as in img_path. */
  path: string;
}

/** The object behind a photo, as it is in the store now. */
export interface PhotoObject {
  bucket: string;
  key: string;
  info: ObjectInfo;
  /** Strong validator of the stored bytes (its etag, size and modification time). */
  fingerprint: string;
}

export const MIN_WIDTH = 16;
export const MAX_WIDTH = 1024;

// Thumbnails a page of the console asks for again and again; bounded by bytes, so the cache
// stays this small however many users there are.
const CACHE_BYTES = 32 * 1024 * 1024;
// Bumped when resizing changes, so browsers do not keep an old rendering under the same ETag.
const RESIZE_VERSION = 'webp-q80-v1';
// WebP holds at most 16383 pixels a side: a very tall photo is shrunk to fit that too.
const WEBP_MAX_SIDE = 16_383;

/**
 * Serves stored photos, as stored or resized. The object may have changed since a run
 * checked it, so everything is checked again: its size against MAX_IMAGE_BYTES, its header
 * against the accepted formats and MAX_IMAGE_PIXELS, and every read, decode and resize runs
 * under OBJECT_TIMEOUT_MS and the process-wide pixel budget.
 */
export class Photos {
  private readonly cache: LRUCache<string, Buffer, PhotoObject & { width: number }>;
  // A resize holds the whole stored photo (up to MAX_IMAGE_BYTES) in memory before the pixel
  // budget admits it: without a bound, a page of thumbnails asked for at once held them all.
  private readonly resizeSlots: PixelBudget;

  constructor(
    private readonly store: ObjectStore,
    private readonly limits: Limits,
    /** The process's pixel budget, shared with the runs' image checks. */
    private readonly budget: PixelBudget,
    opts: { cacheBytes?: number; maxResizes?: number } = {},
  ) {
    // A counter of slots, one "pixel" per resize.
    this.resizeSlots = new PixelBudget(opts.maxResizes ?? Math.max(4, availableParallelism()));
    this.cache = new LRUCache<string, Buffer, PhotoObject & { width: number }>({
      maxSize: opts.cacheBytes ?? CACHE_BYTES,
      sizeCalculation: (buf, key) => buf.length + key.length + 64,
      // One resize for requests that arrive together for the same thumbnail.
      fetchMethod: (_key, _stale, { context }) => this.resize(context, context.width),
    });
  }

  /** Drops every cached resize: an erasure takes its user's thumbnails with it. Rare, so all go. */
  forgetCached(): void {
    this.cache.clear();
  }

  /** Bytes the resized photos in the cache take, keys included. */
  get cachedBytes(): number {
    return this.cache.calculatedSize;
  }

  /** Finds the photo's object; throws PhotoError gone when it is no longer there. */
  async locate(ref: PhotoRef): Promise<PhotoObject> {
    const slash = ref.path.indexOf('/');
    if (slash <= 0) throw new PhotoError('gone', 'the photo path is not <bucket>/<key>');
    const bucket = ref.path.slice(0, slash);
    const key = ref.path.slice(slash + 1);
    const info = await this.onStore(() => this.store.stat(bucket, key), 'looking up the photo');
    if (!info) throw new PhotoError('gone', 'the photo is no longer in the store');
    if (info.size > this.limits.maxImageBytes) {
      throw new PhotoError('unusable', `the stored photo is ${info.size} bytes, over the limit of ${this.limits.maxImageBytes}`);
    }
    return { bucket, key, info, fingerprint: fingerprintOf(info.etag, info.size, info.lastModified.getTime()) };
  }

  /** A quoted ETag for the photo as stored, or resized to width. */
  etag(photo: PhotoObject, width?: number): string {
    const what = width === undefined ? photo.fingerprint : `${photo.fingerprint}\u0000${width}\u0000${RESIZE_VERSION}`;
    return `"${createHash('sha256').update(`${photo.bucket}/${photo.key}\u0000${what}`).digest('base64url').slice(0, 32)}"`;
  }

  /**
   * The stored bytes, streamed. The stream fails (and the answer is cut) if the object has
   * grown past MAX_IMAGE_BYTES or the transfer runs past OBJECT_TIMEOUT_MS.
   */
  async original(photo: PhotoObject): Promise<Readable> {
    const { maxImageBytes, objectTimeoutMs } = this.limits;
    const started = Date.now();
    const source = await this.onStore(() => this.store.read(photo.bucket, photo.key, { size: photo.info.size }), 'opening the photo');
    // The answer says Content-Length: the size just looked up. An object that changed since
    // then is cut there rather than answered with bytes of another length.
    const guarded = bounded(source, Math.min(photo.info.size, maxImageBytes), Math.max(1, objectTimeoutMs - (Date.now() - started)));
    // The first bytes are awaited before answering, so a store that stalls or fails at once
    // gets a proper error status; later, the only way to fail is to cut the answer.
    const chunks = guarded[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let first: IteratorResult<Buffer> | 'timeout';
    try {
      first = await within(objectTimeoutMs, chunks.next());
    } catch (err) {
      throw photoReadError(err);
    }
    if (first === 'timeout') {
      guarded.destroy();
      throw new PhotoError('timeout', `reading the photo took longer than ${objectTimeoutMs} ms`);
    }
    const head = first;
    return Readable.from(
      (async function* () {
        try {
          if (head.done) return;
          yield head.value;
          for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
        } finally {
          // Also when the client goes away early.
          guarded.destroy();
        }
      })(),
    );
  }

  /** A WebP at most width pixels wide (never enlarged), from the cache when it has one. */
  async resized(photo: PhotoObject, width: number): Promise<Buffer> {
    const key = `${photo.bucket}/${photo.key}\u0000${photo.fingerprint}\u0000${width}`;
    const out = await this.cache.fetch(key, { context: { ...photo, width } });
    if (!out) throw new Error('unreachable: the resize returned nothing');
    return out;
  }

  private async resize(photo: PhotoObject, width: number): Promise<Buffer> {
    const { objectTimeoutMs } = this.limits;
    const deadline = Date.now() + objectTimeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const timedOut = () => new PhotoError('timeout', `resizing the photo took longer than ${objectTimeoutMs} ms`);

    const slot = this.resizeSlots.acquire(1);
    const done = await within(left(), slot);
    if (done === 'timeout') {
      void slot.then((release) => release());
      throw timedOut();
    }
    try {
      return await this.resizeBytes(photo, width, left, timedOut);
    } finally {
      done();
    }
  }

  private async resizeBytes(photo: PhotoObject, width: number, left: () => number, timedOut: () => PhotoError): Promise<Buffer> {
    const { maxImageBytes, maxImagePixels } = this.limits;
    let bytes: Buffer;
    try {
      bytes = await readLimited(this.store, photo.bucket, photo.key, { maxBytes: maxImageBytes, timeoutMs: left(), listedSize: photo.info.size });
    } catch (err) {
      throw photoReadError(err);
    }

    // The header, as the run's image check reads it, against the same formats and pixel limit.
    const header = await askSharp(bytes, left());
    if (header === 'timeout') throw timedOut();
    const refused = (reason: string) => new PhotoError('unusable', `the stored photo fails the image checks: ${reason}`);
    if (!('width' in header)) throw refused(header.reason);
    const overLimit = pixelLimitReason(header, maxImagePixels);
    if (overLimit) throw refused(overLimit);

    // Only the first frame is decoded, shrunk while loading where the format allows it.
    let admitted: () => void;
    try {
      admitted = await this.budget.acquire(header.width * header.height, left());
    } catch (err) {
      if (err instanceof PixelBudgetTimeout) throw timedOut();
      throw err;
    }
    const sharp = await loadSharp();
    const resizing = sharp(bytes, { limitInputPixels: maxImagePixels, failOn: 'error', sequentialRead: true })
      .timeout({ seconds: Math.max(1, Math.ceil(left() / 1000)) })
      .autoOrient()
      .resize({ width, height: WEBP_MAX_SIDE, fit: 'inside', withoutEnlargement: true })
      .webp({ quality: 80 })
      .toBuffer();
    // libvips cannot be stopped: a resize that runs over keeps its share of the budget until it ends.
    void resizing.then(admitted, admitted);
    let out: Buffer | 'timeout';
    try {
      out = await within(left(), resizing);
    } catch (err) {
      const message = sharpMessage(err);
      if (/^timeout\b/i.test(message)) throw timedOut();
      throw new PhotoError('unusable', `the stored photo is corrupt or truncated: ${message}`);
    }
    if (out === 'timeout') throw timedOut();
    return out;
  }

  /** A store call under the deadline; its failures become PhotoErrors. */
  private async onStore<T>(fn: () => Promise<T>, doing: string): Promise<T> {
    let result: T | 'timeout';
    try {
      const work = fn();
      result = await within(this.limits.objectTimeoutMs, work);
      // A call that answers after all: close what it opened.
      if (result === 'timeout') void work.then((r) => (r as { destroy?: () => void } | null)?.destroy?.(), () => undefined);
    } catch (err) {
      throw photoReadError(err, doing);
    }
    if (result === 'timeout') throw new PhotoError('timeout', `${doing} took longer than ${this.limits.objectTimeoutMs} ms`);
    return result;
  }
}

function photoReadError(err: unknown, doing = 'reading the photo'): PhotoError {
  if (err instanceof PhotoError) return err;
  if (err instanceof ObjectNotFoundError) return new PhotoError('gone', 'the photo is no longer in the store', { cause: err });
  if (err instanceof ObjectUnreadableError) return new PhotoError('unusable', `the stored photo cannot be read: ${err.reason}`, { cause: err });
  if (err instanceof ObjectTooLargeError) return new PhotoError('unusable', `the stored photo is ${err.message}`, { cause: err });
  if (err instanceof ObjectReadTimeoutError) return new PhotoError('timeout', `reading the photo took longer than ${err.timeoutMs} ms`, { cause: err });
  return new PhotoError('store', `the object store failed while ${doing}`, { cause: err });
}

/** Passes a stream on, failing it past maxBytes or once timeoutMs have gone by. */
function bounded(source: Readable, maxBytes: number, timeoutMs: number): Readable {
  let total = 0;
  const guard = new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      if (total > maxBytes) done(new ObjectTooLargeError(`larger than the ${maxBytes}-byte limit`));
      else done(null, chunk);
    },
  });
  const timer = setTimeout(() => guard.destroy(new ObjectReadTimeoutError(timeoutMs)), timeoutMs);
  const stop = () => {
    clearTimeout(timer);
    source.destroy();
  };
  guard.once('close', stop);
  source.once('error', (err) => guard.destroy(err));
  source.pipe(guard);
  return guard;
}
