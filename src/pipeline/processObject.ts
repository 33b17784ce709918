import type { Limits } from '../config.js';
import { within } from '../deadline.js';
import type { Logger } from '../log.js';
import type { FileState, SourceObject } from '../core/model.js';
import { MAX_REASON_CHARS } from '../core/model.js';
import type { ObjectStore } from '../storage/index.js';
import { ObjectNotFoundError, ObjectUnreadableError } from '../storage/index.js';
import { clip, printable } from '../core/text.js';
import type { PixelBudget } from '../images/budget.js';
import { checkImage } from '../images/checkImage.js';
import { StoreFailure } from './failures.js';
import { parseUserCsv } from './parseUserCsv.js';
import { ObjectReadTimeoutError, ObjectTooLargeError, readLimited } from '../storage/readLimited.js';

export type ProcessResult =
  /** Read and checked, or refused on its listed size: the state to record. */
  | { kind: 'checked'; state: FileState; read: boolean }
  /** Deleted since the listing. */
  | { kind: 'vanished' }
  /**
   * Could not be read or checked this time (permission denied, timed out, an I/O error on
   * this object alone). Reported but not recorded, so the next run tries it again: fixing a
   * permission does not change a file's fingerprint.
   */
  | { kind: 'skipped'; reason: string };

export interface ProcessOptions {
  limits: Limits;
  /** The process's pixel budget, shared with every other decode. */
  budget: PixelBudget;
  log: Logger;
}

/**
 * Reads and checks one source object. Whatever the object holds or however reading it fails,
 * the outcome is about this object alone. Only the store failing as a whole throws (a
 * StoreFailure), because that is not the object's fault and the run cannot go on.
 */
export async function processObject(obj: SourceObject, store: ObjectStore, bucket: string, opts: ProcessOptions): Promise<ProcessResult> {
  const { limits } = opts;
  const rejected = (reason: string, read: boolean): ProcessResult => ({
    kind: 'checked',
    // Reasons can quote the file or a decoder's message: keep them storable and one line.
    state: { ...obj, status: 'rejected', reason: clip(printable(reason), MAX_REASON_CHARS), csv: null, image: null },
    read,
  });
  const what = obj.kind === 'csv' ? 'CSV' : 'image';
  const maxBytes = obj.kind === 'csv' ? limits.maxCsvBytes : limits.maxImageBytes;
  if (obj.size > maxBytes) return rejected(`${what} is ${obj.size} bytes, over the ${maxBytes}-byte limit`, false);
  if (obj.size === 0) return rejected('the file is empty', false);

  let bytes: Buffer;
  try {
    bytes = await readLimited(store, bucket, obj.key, { maxBytes, timeoutMs: limits.objectTimeoutMs, listedSize: obj.size });
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return { kind: 'vanished' };
    if (err instanceof ObjectTooLargeError) return rejected(`${what} is ${err.message}`, true);
    if (err instanceof ObjectUnreadableError) return { kind: 'skipped', reason: `it could not be read: ${err.reason}` };
    // Anything else may be the store failing as a whole. If it still answers, this object alone is at fault.
    await assertStoreAnswers(store, bucket, limits.objectTimeoutMs, err);
    opts.log.warn({ err, key: obj.key }, 'reading one object failed; the store answers, so the object is skipped');
    const reason =
      err instanceof ObjectReadTimeoutError ? `reading it took longer than ${err.timeoutMs} ms` : `it could not be read (${errorCode(err)})`;
    return { kind: 'skipped', reason };
  }

  try {
    if (obj.kind === 'csv') {
      const r = parseUserCsv(bytes);
      return r.ok ? { kind: 'checked', state: { ...obj, status: 'ok', reason: null, csv: r.data, image: null }, read: true } : rejected(r.reason, true);
    }
    const r = await checkImage(bytes, opts.budget, limits.objectTimeoutMs);
    if (r.ok) return { kind: 'checked', state: { ...obj, status: 'ok', reason: null, csv: null, image: r.data }, read: true };
    return r.transient ? { kind: 'skipped', reason: r.reason } : rejected(r.reason, true);
  } catch (err) {
    // A bug of ours that this input triggers must not stop the run; it is logged in full.
    opts.log.error({ err, key: obj.key }, 'checking a file failed unexpectedly');
    return { kind: 'skipped', reason: 'it could not be checked: an internal error (see the service log)' };
  }
}

async function assertStoreAnswers(store: ObjectStore, bucket: string, timeoutMs: number, cause: unknown): Promise<void> {
  const answered = await within(timeoutMs, store.ping(bucket)).then(
    (r) => r !== 'timeout',
    () => false,
  );
  if (!answered) throw new StoreFailure('the object store failed while reading objects', { cause });
}

/** An error's code (EIO, SlowDown, ...), which says what happened without naming hosts or paths. */
function errorCode(err: unknown): string {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(code) ? code : 'unknown error';
}
