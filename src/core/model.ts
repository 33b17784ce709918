/** Domain types shared by the pipeline, the database layer and the HTTP API. */

export type FileKind = 'csv' | 'image';

/** A source object the pipeline cares about: a user CSV or a user image. */
export interface SourceObject {
  key: string;
  userId: string;
  kind: FileKind;
  size: number;
  etag: string;
  /** Milliseconds since the epoch: a number, not a Date, because a listing holds one per object. */
  lastModifiedMs: number;
}

export interface CsvData {
  firstName: string;
  lastName: string;
  birthts: number;
}

export interface ImageData {
  format: string;
  width: number;
  height: number;
}

/** What processing one source object yielded, as kept in source_files. */
export type FileState = SourceObject &
  (
    | { status: 'ok'; csv: CsvData | null; image: ImageData | null; reason: null }
    | { status: 'rejected'; csv: null; image: null; reason: string }
    /** A version of a file of an erased user (erasure_tombstones): recorded without its data, never joined. */
    | { status: 'erased'; csv: null; image: null; reason: null }
  );

/**
 * The fingerprint that tells whether an object changed since it was processed: etag, size and
 * modification time in one string, which keeps a map of 200,000 of them small. The two numbers
 * last make it unambiguous whatever the etag holds; no NUL, since work items carry
 * fingerprints through jsonb, which refuses it.
 */
export const fingerprintOf = (etag: string, size: number, lastModifiedMs: number): string => `${etag}|${size}|${lastModifiedMs}`;

/**
 * A version of a file's content, as an erasure tombstones it: etag and size, leaving out the
 * modification time, so the same bytes uploaded again are the same version.
 */
export const versionOf = (etag: string, size: number): string => `${etag}|${size}`;

/** What erasures left of a user (migration 010 has the rules). */
export interface Tombstone {
  /** Versions an API erasure tombstoned, under any key of the user. */
  versions: Set<string>;
  /** Versions a source delete tombstoned, by key. */
  keys: Map<string, Set<string>>;
  /** When its last API erasure was (-Infinity without one), on the database's clock. */
  erasedAtMs: number;
}

/**
 * Whether a file version an item read stays out. Besides the tombstoned versions: a version
 * modified before the user's last API erasure was in the bucket then (a run may have read it
 * just before); and a version whose read began before that erasure (readStartedAtMs, on the
 * database's clock) existed before it, whatever the store's clock says.
 */
export function isTombstoned(t: Tombstone | undefined, f: { key: string; etag: string; size: number; lastModifiedMs: number }, readStartedAtMs?: number): boolean {
  if (!t) return false;
  const v = versionOf(f.etag, f.size);
  return t.versions.has(v) || t.keys.get(f.key)?.has(v) === true || f.lastModifiedMs <= t.erasedAtMs || (readStartedAtMs !== undefined && readStartedAtMs < t.erasedAtMs);
}

/** One row of the users table as the pipeline writes it. */
export interface UserRow {
  userId: string;
  firstName: string;
  lastName: string;
  birthts: number;
  imgPath: string | null;
  imgFormat: string | null;
  imgWidth: number | null;
  imgHeight: number | null;
  /** Lineage: the versions of the files the row was joined from (GET /data's `source`). */
  source: RowSource;
}

/** The CSV a row was joined from, and its image if any, as key and etag. */
export interface RowSource {
  csvKey: string;
  csvEtag: string;
  imgKey: string | null;
  imgEtag: string | null;
}

export interface RunIssue {
  key: string;
  reason: string;
  /** Set on a warning about a user as a whole: one per user per run, replaced by later items. */
  userId?: string;
}

/** Everything one user's part of a work item writes: committed together, or not at all. */
export interface UserChange {
  userId: string;
  /** States of this user's objects read this run, to record. */
  files: FileState[];
  /** Keys of this user's objects that are gone from the bucket, to forget. */
  gone: string[];
  /** The row to upsert, or null to leave the user as stored. */
  row: UserRow | null;
  rejected: RunIssue[];
  warnings: RunIssue[];
  /** ON_SOURCE_DELETE=erase and its last CSV is gone from the bucket: erase the user, if stored. */
  erase?: boolean;
}

/** An issue as a run's report lists it. */
export type ReportedIssue = Omit<RunIssue, 'userId'>;

/** A work item's users joined from what was read and what is recorded: what its commit writes. */
export interface BatchPlan {
  users: UserChange[];
  /** Reported for the run but recorded nowhere else: refused names, objects skipped this time. */
  issues: RunIssue[];
  /** Objects fetched this run. */
  read: number;
}

/** Reasons are read by people, and one run may report a million of them: they are cut to this. */
export const MAX_REASON_CHARS = 500;

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'aborted';
export type RunTrigger = 'cli' | 'http' | 'schedule' | 'event';

export interface RunCounts {
  /** CSV and image objects listed in the source bucket. */
  scanned: number;
  /** Objects fetched and checked this run (new or changed ones). */
  read: number;
  /** Users inserted. */
  new: number;
  /** Users whose data changed; a change of lineage alone (a new version, the same values) is not counted. */
  updated: number;
  /** Users with a CSV in the bucket whose row did not change. */
  unchanged: number;
  /** Objects rejected this run. */
  rejected: number;
  /** Objects that are neither a CSV nor a supported image. */
  ignored: number;
  /** Users erased because their last CSV went from the bucket (ON_SOURCE_DELETE=erase). */
  erased: number;
}

export interface RunProgress {
  phase: 'starting' | 'listing' | 'processing' | 'exporting' | 'done';
  done: number;
  total: number | null;
}

export interface RunReport {
  id: number;
  trigger: RunTrigger;
  full: boolean;
  status: RunStatus;
  started_at: string;
  finished_at: string | null;
  output_written: boolean;
  progress: RunProgress;
  error: string | null;
  counts: RunCounts;
  /** Files rejected this run, with the reason. */
  rejected: ReportedIssue[];
  /** Not errors, but worth an operator's eye (e.g. one user_id in two folders). */
  warnings: ReportedIssue[];
  /** Which instances committed the run's work items, and how many each. */
  workers: Array<{ instance: string; items: number }>;
  /** Rejected files and warnings past RUN_ISSUES_LIMIT: counted in `counts` and metrics, not listed. */
  issues_left_out: number;
  /** A targeted run's users and key prefix (null parts do not narrow); null: the whole bucket. */
  scope: { user_ids: string[] | null; prefix: string | null } | null;
}

export const emptyCounts = (): RunCounts => ({
  scanned: 0,
  read: 0,
  new: 0,
  updated: 0,
  unchanged: 0,
  rejected: 0,
  ignored: 0,
  erased: 0,
});
