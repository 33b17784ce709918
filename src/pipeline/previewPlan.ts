import type { BatchPlan, RunIssue, UserRow } from '../core/model.js';
import type { CurrentUser } from '../db/preview.js';

// What a dry run says of each user of a work item: the plan a commit would write (planBatch),
// classified against the rows stored now. Pure, so the dry run's answer is the run's own plan.

/** A users row's fields as the API names them. */
export interface UserFields {
  first_name: string;
  last_name: string;
  birthts: number;
  img_path: string | null;
  img_format: string | null;
  img_width: number | null;
  img_height: number | null;
}
export type UserField = keyof UserFields;

// The data a dry run compares; lineage (source) is not a change of the user.
type DataKey = Exclude<keyof UserRow, 'source' | 'userId'>;
const FIELDS: Array<[UserField, DataKey]> = [
  ['first_name', 'firstName'],
  ['last_name', 'lastName'],
  ['birthts', 'birthts'],
  ['img_path', 'imgPath'],
  ['img_format', 'imgFormat'],
  ['img_width', 'imgWidth'],
  ['img_height', 'imgHeight'],
];

export type FieldValue = string | number | null;
export type FieldChanges = Partial<Record<UserField, { old: FieldValue; new: FieldValue }>>;

export interface ItemPreview {
  new: Array<{ user_id: string; fields: UserFields }>;
  updated: Array<{ user_id: string; changes: FieldChanges }>;
  /** Users of the item whose row would stay as it is (a count only). */
  unchanged: number;
  /** Files that would be rejected, refused names and objects skipped this time, as a run counts them. */
  rejected: RunIssue[];
  erased: Array<{ user_id: string }>;
  /** Users counted among the bucket's users after the run, minus before (see countUsersWithValidCsv). */
  validCsvDelta: number;
}

const fieldsOf = (row: UserRow): UserFields => ({
  first_name: row.firstName,
  last_name: row.lastName,
  birthts: row.birthts,
  img_path: row.imgPath,
  img_format: row.imgFormat,
  img_width: row.imgWidth,
  img_height: row.imgHeight,
});

/**
 * Classifies a work item's plan against the stored rows: new (no row yet), updated (with each
 * changed field, old and new, as the upsert compares them), unchanged, rejected (the files and
 * reasons a run would report), erased.
 */
export function previewPlan(plan: BatchPlan, current: Map<string, CurrentUser>): ItemPreview {
  const out: ItemPreview = { new: [], updated: [], unchanged: 0, rejected: [...plan.users.flatMap((u) => u.rejected), ...plan.issues], erased: [], validCsvDelta: 0 };
  for (const u of plan.users) {
    const now = current.get(u.userId) ?? { row: null, validCsv: false };
    out.validCsvDelta += Number(u.row !== null) - Number(now.validCsv);
    if (u.erase && now.row) {
      // ON_SOURCE_DELETE=erase, and its last CSV went: the commit would erase it.
      out.erased.push({ user_id: u.userId });
      continue;
    }
    if (u.row === null) {
      // No valid CSV: the stored user, if any, is left as it is.
      if (now.row) out.unchanged++;
      continue;
    }
    if (!now.row) {
      out.new.push({ user_id: u.userId, fields: fieldsOf(u.row) });
      continue;
    }
    const changes: FieldChanges = {};
    for (const [name, k] of FIELDS) if (now.row[k] !== u.row[k]) changes[name] = { old: now.row[k], new: u.row[k] };
    if (Object.keys(changes).length > 0) out.updated.push({ user_id: u.userId, changes });
    else out.unchanged++;
  }
  return out;
}
