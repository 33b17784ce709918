import type { Readable } from 'node:stream';
import type { ObjectStore } from './index.js';

export class ObjectTooLargeError extends Error {
  override name = 'ObjectTooLargeError';
}

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
  const opening = store.read(bucket, key, { size: limits.listedSize });
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ObjectReadTimeoutError(timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([readAll(opening, maxBytes), expired]);
  } finally {
    clearTimeout(timer);
    // Whatever is still open (an open that answers late, a stalled body) is closed. No
    // AbortController: one per read cost more than the read of a small file.
    opening.then(
      (stream) => stream.destroy(),
      () => undefined,
    );
  }
}

async function readAll(opening: Promise<Readable>, maxBytes: number): Promise<Buffer> {
  const stream = await opening;
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new ObjectTooLargeError(`larger than the ${maxBytes}-byte limit`);
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}
