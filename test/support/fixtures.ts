import type { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Client } from 'minio';
import sharp from 'sharp';
import type { Backend } from './stores.js';

/** A user CSV in the shape operators drop: header, one row. */
export function userCsv(first: string, last: string, birthts: number | string, opts: { header?: string; eol?: string } = {}): string {
  const eol = opts.eol ?? '\n';
  return `${opts.header ?? 'first_name, last_name, birthts'}${eol}${first}, ${last}, ${birthts}${eol}`;
}

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' | 'avif';

/** A small real image, encoded by sharp, in the given format. */
export async function makeImage(format: ImageFormat = 'png', width = 8, height = 8, colour = { r: 200, g: 30, b: 60 }): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .toFormat(format)
    .toBuffer();
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A decompression bomb in miniature: a few hundred bytes whose header declares width x height
 * pixels. Decoding it would need gigabytes; only the declared size must be looked at.
 */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(0, 9); // greyscale
  const row = Buffer.alloc(1 + width); // one filter byte + one row of zeros
  const idat = zlib.deflateSync(row);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Writes an object through the backend's own store, as an operator's upload would. */
export async function put(backend: Backend, bucket: string, key: string, body: string | Buffer): Promise<void> {
  await backend.store.write(bucket, key, Buffer.isBuffer(body) ? body : Buffer.from(body));
}

/**
 * Removes an object the way an operator would: by hand in the folder, or with an S3 DELETE.
 * The store interface deliberately has no delete: userjoin never removes source files.
 */
export async function remove(backend: Backend, bucket: string, key: string): Promise<void> {
  if (backend.config.kind === 'folder') {
    await fs.rm(path.join(backend.config.dir, bucket, ...key.split('/')));
    return;
  }
  await (await s3Client(backend)).removeObject(bucket, key);
}

/** A minio client with the backend's own credentials, for what the store interface never does. */
export async function s3Client(backend: Backend): Promise<Client> {
  if (backend.config.kind !== 's3') throw new Error('not an S3 backend');
  const { port, endPoint, useSSL, accessKey, secretKey, region } = backend.config;
  const { Client: S3Client } = await import('minio');
  return new S3Client({ endPoint, port, useSSL, accessKey, secretKey, region, pathStyle: true });
}

export async function readText(backend: Backend, bucket: string, key: string): Promise<string> {
  const stream = await backend.store.read(bucket, key);
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Writes an object that the store then reports as modified after `than`, so its fingerprint
 * differs even from a same-size or same-content write, and it is the newer of two files.
 * The folder store: the file's mtime is set (a rewrite within one clock tick would keep it).
 * S3 reports whole seconds and has no way to set them: the object is written again until
 * the server's clock has passed `than`'s second.
 */
export async function putNewer(backend: Backend, bucket: string, key: string, body: string | Buffer, than: Date): Promise<void> {
  await put(backend, bucket, key, body);
  if (backend.config.kind === 'folder') {
    const later = new Date(than.getTime() + 1000);
    await fs.utimes(path.join(backend.config.dir, bucket, ...key.split('/')), later, later);
    return;
  }
  await waitFor(`the store to report ${key} newer than ${than.toISOString()}`, async () => {
    if (((await backend.store.stat(bucket, key))?.lastModified ?? than) > than) return true;
    await put(backend, bucket, key, body);
    return false;
  }, 5000);
}

/** When the store last modified an object, as it reports it. */
export async function modifiedAt(backend: Backend, bucket: string, key: string): Promise<Date> {
  const info = await backend.store.stat(bucket, key);
  if (!info) throw new Error(`${key} is not in ${bucket}`);
  return info.lastModified;
}

/**
 * Polls until check returns a value other than undefined or false, and returns it; fails
 * with what it waited for past the deadline. Never a fixed sleep: it ends as soon as it can.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** An emitter's listening side, as the service's parts expose it. */
interface Listenable {
  on(name: string, listener: (...args: never[]) => void): unknown;
  off(name: string, listener: (...args: never[]) => void): unknown;
}
type Payload<T, K extends keyof T> = T[K] extends [infer P, ...unknown[]] ? P : undefined;

/**
 * The payload of the next `name` event that matches; fails past the deadline, naming the
 * event. Call it before the action that causes the event, so the event cannot be missed.
 */
export function nextEvent<T extends Record<keyof T, unknown[]>, K extends keyof T & string>(
  emitter: Pick<EventEmitter<T>, 'on' | 'off'>,
  name: K,
  matches: (payload: Payload<T, K>) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<Payload<T, K>> {
  const e = emitter as unknown as Listenable;
  return new Promise((resolve, reject) => {
    const listener = (payload: Payload<T, K>) => {
      if (!matches(payload)) return;
      clearTimeout(timer);
      e.off(name, listener);
      resolve(payload);
    };
    const timer = setTimeout(() => {
      e.off(name, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for the ${name} event`));
    }, timeoutMs);
    e.on(name, listener);
  });
}

/** Every `name` event's payload from now on, in order, for a test to count or look through. */
export function recordEvents<T extends Record<keyof T, unknown[]>, K extends keyof T & string>(emitter: Pick<EventEmitter<T>, 'on'>, name: K): Array<Payload<T, K>> {
  const seen: Array<Payload<T, K>> = [];
  (emitter as unknown as Listenable).on(name, (payload: Payload<T, K>) => void seen.push(payload));
  return seen;
}
