import type { Readable } from 'node:stream';

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
   * compareKeys), as S3's ListObjectsV2 returns them.
   */
  list(bucket: string): AsyncIterable<ObjectInfo>;
  /** Object metadata, or null when the object does not exist. */
  stat(bucket: string, key: string): Promise<ObjectInfo | null>;
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
