import type { ObjectStore } from '../storage/index.js';

export class ObjectTooLargeError extends Error {
  override name = 'ObjectTooLargeError';
}

/**
 * Reads a whole object into memory, refusing more than maxBytes. The listing's size is
 * checked before the call; this guards against an object that grew since it was listed.
 */
export async function readLimited(store: ObjectStore, bucket: string, key: string, maxBytes: number): Promise<Buffer> {
  const stream = await store.read(bucket, key);
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
  return Buffer.concat(chunks, total);
}
