import type { Readable } from 'node:stream';
import type { NotifyTarget } from '../config.js';

/** One object as a listing reports it. Enough to tell whether it changed without reading it. */
export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
  /**
   * Set when the object cannot be read under this key, and says why: a file name that is not
   * UTF-8 (the key is then a printable stand-in), a symbolic link or other special file, or a
   * folder that cannot be listed (key ends with "/"). Such entries are reported, never read.
   */
  problem?: string;
}

export interface ReadHint {
  /** The size the listing reported; a store may use it to read the object in one go. */
  size?: number;
}

/**
 * The one storage interface the pipeline sees. The folder and S3 implementations pass the
 * same contract tests (test/objectStore.test.ts).
 */
export interface ObjectStore {
  /** A human-readable name for logs and /health, e.g. "folder:/data/minio". */
  readonly description: string;
  /** Creates the bucket if it is missing. Safe to call concurrently from several instances. */
  ensureBucket(bucket: string): Promise<void>;
  /**
   * Every object in the bucket, nested prefixes included, in UTF-8 byte order of keys (see
   * compareKeys), as S3's ListObjectsV2 returns them. With a prefix, only keys that start with
   * it (a targeted run lists only what it may read).
   */
  list(bucket: string, prefix?: string): AsyncIterable<ObjectInfo>;
  /** Object metadata, or null when the object does not exist. */
  stat(bucket: string, key: string): Promise<ObjectInfo | null>;
  /**
   * One object exactly as list() would report it (the same etag and modification time, so its
   * fingerprint matches, and `problem` set in the same cases), or null when it does not exist.
   * Events name single keys; this looks one up without listing the bucket.
   */
  head(bucket: string, key: string): Promise<ObjectInfo | null>;
  /**
   * Why this store could never hold an object under this key, or null when it could. Only the
   * stores with rules of their own beyond S3's have it (the folder store: file name lengths,
   * "." and ".." parts); event intake refuses such keys before recording them.
   */
  keyProblem?(key: string): string | null;
  /** S3 stores: sends the bucket's notifications of created and removed objects to this target. */
  notifyTo?(bucket: string, target: NotifyTarget): Promise<void>;
  /**
   * Calls onKeys with keys that may have been created, changed or removed in the bucket, until
   * closed. Only stores that can see their own changes have it (the folder store); S3 servers
   * send bucket notifications instead.
   */
  watch?(bucket: string, onKeys: (keys: string[]) => void, onError: (err: Error) => void): Promise<StoreWatch>;
  /**
   * A stream of the object's bytes. Rejects with ObjectNotFoundError when missing, and with
   * ObjectUnreadableError when this one object cannot be read (not a regular file, access
   * denied). Any other error may be the store's as a whole.
   */
  read(bucket: string, key: string, hint?: ReadHint): Promise<Readable>;
  /**
   * Writes an object in one step: readers see the old object or the whole new one, never a
   * partial write.
   */
  write(bucket: string, key: string, body: Readable | Buffer, contentType?: string): Promise<void>;
  /**
   * Throws when the store cannot be reached. Checks the given bucket, so that credentials
   * limited to the two buckets suffice.
   */
  ping(bucket: string): Promise<void>;
}

export interface StoreWatch {
  close(): void;
}

export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError';
  constructor(
    readonly bucket: string,
    readonly key: string,
  ) {
    super(`object ${bucket}/${key} does not exist`);
  }
}

/** This one object cannot be read, for a reason of its own; the store itself is fine. */
export class ObjectUnreadableError extends Error {
  override name = 'ObjectUnreadableError';
  constructor(
    readonly key: string,
    /** Short and safe to show: no paths, hosts or internal names. */
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`object ${key} cannot be read: ${reason}`, options);
  }
}
