import type { Limits } from '../config.js';
import type { FileState, SourceObject } from '../model.js';
import type { ObjectStore } from '../storage/index.js';
import { ObjectNotFoundError } from '../storage/index.js';
import { checkImage } from './checkImage.js';
import { parseUserCsv } from './parseUserCsv.js';
import { ObjectTooLargeError, readLimited } from './readObject.js';

/** The outcome for one object: its new state, or 'vanished' if it was deleted since the listing. */
export type ProcessResult = { state: FileState; read: boolean } | { vanished: true };

/**
 * Reads and checks one source object. Content problems become a rejected state with a reason;
 * only storage failures throw, because those are not the file's fault.
 */
export async function processObject(obj: SourceObject, store: ObjectStore, bucket: string, limits: Limits): Promise<ProcessResult> {
  const rejected = (reason: string, read: boolean): ProcessResult => ({
    state: { ...obj, status: 'rejected', reason, csv: null, image: null },
    read,
  });
  const maxBytes = obj.kind === 'csv' ? limits.maxCsvBytes : limits.maxImageBytes;
  if (obj.size > maxBytes) return rejected(`${obj.kind === 'csv' ? 'CSV' : 'image'} is ${obj.size} bytes, over the ${maxBytes}-byte limit`, false);
  if (obj.size === 0) return rejected('the file is empty', false);

  let bytes: Buffer;
  try {
    bytes = await readLimited(store, bucket, obj.key, maxBytes);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return { vanished: true };
    if (err instanceof ObjectTooLargeError) return rejected(`${obj.kind === 'csv' ? 'CSV' : 'image'} is ${err.message}`, true);
    throw err;
  }

  if (obj.kind === 'csv') {
    const r = parseUserCsv(bytes);
    return r.ok
      ? { state: { ...obj, status: 'ok', reason: null, csv: r.data, image: null }, read: true }
      : rejected(r.reason, true);
  }
  const r = await checkImage(bytes, limits.maxImagePixels);
  return r.ok ? { state: { ...obj, status: 'ok', reason: null, csv: null, image: r.data }, read: true } : rejected(r.reason, true);
}
