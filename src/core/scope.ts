// What a targeted run (POST /data?user_id=...&prefix=...) may touch, and which run in progress
// covers a trigger. Objects outside a run's scope are neither read nor treated as removed.

/** A run's scope: both parts narrow it (AND); null parts do not. Absent scope: the whole bucket. */
export interface RunScope {
  /** Only these users' files, in whatever folder. */
  userIds: string[] | null;
  /** Only keys starting with this. */
  prefix: string | null;
}

/** The most user_ids one scope may name: the set is held in memory and sent as one query parameter. */
export const MAX_SCOPE_USERS = 1000;

/** Whether a key of this user (null: not a user file) is inside the scope. */
export function inScope(scope: RunScope | null, key: string, userId: string | null): boolean {
  if (!scope) return true;
  if (scope.prefix !== null && !key.startsWith(scope.prefix)) return false;
  if (scope.userIds !== null && (userId === null || !scope.userIds.includes(userId))) return false;
  return true;
}

/** A scope with a Set for lookups, for the listing's hot loop. */
export function scopeFilter(scope: RunScope | null): (key: string, userId: string | null) => boolean {
  if (!scope) return () => true;
  const users = scope.userIds === null ? null : new Set(scope.userIds);
  return (key, userId) =>
    (scope.prefix === null || key.startsWith(scope.prefix)) && (users === null || (userId !== null && users.has(userId)));
}

/** What a run or a trigger asks to be (re)read. */
export interface RunAsk {
  full: boolean;
  scope: RunScope | null;
}

/**
 * The join rule: a trigger joins a run in progress only when that run rereads at least what
 * the trigger asks for. A full run covers every trigger; an incremental run covers only
 * incremental triggers (it would not reread unchanged files that a full or scoped trigger
 * wants read); a scoped run covers only scoped triggers within its scope (it reads nothing
 * else). A trigger that is not covered waits for the run to end and then starts its own.
 */
export function covers(run: RunAsk, trigger: RunAsk): boolean {
  if (!run.scope) return run.full || (!trigger.full && !trigger.scope);
  if (!trigger.scope) return false;
  const r = run.scope;
  const t = trigger.scope;
  if (r.prefix !== null && (t.prefix === null || !t.prefix.startsWith(r.prefix))) return false;
  if (r.userIds !== null) {
    if (t.userIds === null) return false;
    const users = new Set(r.userIds);
    if (!t.userIds.every((u) => users.has(u))) return false;
  }
  return true;
}

/**
 * The smallest string above every string that starts with prefix, in code point order (which
 * is UTF-8 byte order, COLLATE "C"): its last code point plus one, skipping surrogates. null
 * when there is none (the prefix is all U+10FFFF). Keys k with prefix <= k < upper are exactly
 * those that start with prefix, so the recorded keys of a prefix are one index range.
 */
export function prefixUpperBound(prefix: string): string | null {
  const points = [...prefix].map((c) => c.codePointAt(0)!);
  while (points.length > 0) {
    let last = points.pop()! + 1;
    if (last === 0xd800) last = 0xe000;
    if (last <= 0x10ffff) return String.fromCodePoint(...points, last);
  }
  return null;
}
