import type { Readable } from 'node:stream';
import type { ObjectStore } from '../storage/index.js';

export class ObjectTooLargeError extends Error {
  override name = 'ObjectTooLargeError';
}

const FINISHED = Symbol('finished');

export class ObjectReadTimeoutError extends Error {
  override name = 'ObjectReadTimeoutError';
  constructor(readonly timeoutMs: number) {
    super(`reading took longer than ${timeoutMs} ms`);
  }
}

/**
 * Reads a whole object into memory, refusing more than maxBytes and giving up after
 * timeoutMs. The listing's size is checked before the call; the byte limit guards against an
 * object that grew since it was listed, the deadline against one that never ends.
 */
export async function readLimited(
  store: ObjectStore,
  bucket: string,
  key: string,
  limits: { maxBytes: number; timeoutMs: number; listedSize?: number },
): Promise<Buffer> {
  const { maxBytes, timeoutMs } = limits;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new ObjectReadTimeoutError(timeoutMs)), timeoutMs);
  const expired = new Promise<never>((_, reject) => deadline.signal.addEventListener('abort', () => reject(deadline.signal.reason as Error)));
  expired.catch(() => undefined);
  try {
    return await Promise.race([readAll(store.read(bucket, key, { size: limits.listedSize }), maxBytes, deadline.signal), expired]);
  } finally {
    clearTimeout(timer);
    // Whatever is still open (an open that answers late, a stalled body) is closed. A plain
    // reason: abort() without one builds a DOMException, which costs more than the read.
    deadline.abort(FINISHED);
  }
}

async function readAll(opening: Promise<Readable>, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  const stream = await opening;
  const stop = () => stream.destroy();
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new ObjectTooLargeError(`larger than the ${maxBytes}-byte limit`);
      chunks.push(chunk);
    }
  } finally {
    signal.removeEventListener('abort', stop);
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}
