import { firstControlChar } from '../text.js';
import { badRequest } from './errors.js';

type Query = Record<string, string | string[] | undefined>;

function single(query: Query, name: string): string | undefined {
  const v = query[name];
  if (Array.isArray(v)) throw badRequest(name, 'give it once');
  return v === undefined ? undefined : v.trim();
}

// Above this an age bound is a typo; it also keeps the interval arithmetic in range.
const MAX_AGE_YEARS = 1000;
const DECIMAL = /^\d+(\.\d+)?$/;

export function ageParam(query: Query, name: string): number | undefined {
  const raw = single(query, name);
  if (raw === undefined) return undefined;
  if (raw === '') throw badRequest(name, 'must not be empty');
  if (raw.startsWith('-')) throw badRequest(name, `must not be negative, got "${raw}"`);
  if (!DECIMAL.test(raw)) throw badRequest(name, `must be a number of years such as 30 or 30.5, got "${raw}"`);
  const n = Number(raw);
  if (n > MAX_AGE_YEARS) throw badRequest(name, `must be at most ${MAX_AGE_YEARS}`);
  return n;
}

export function boolParam(query: Query, name: string): boolean | undefined {
  const raw = single(query, name);
  if (raw === undefined) return undefined;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw badRequest(name, `must be true or false, got "${raw}"`);
}

export function intParam(query: Query, name: string, min: number, max: number): number | undefined {
  const raw = single(query, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw badRequest(name, `must be an integer from ${min} to ${max}, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw badRequest(name, `must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

export function enumParam<T extends string>(query: Query, name: string, allowed: readonly T[]): T | undefined {
  const raw = single(query, name);
  if (raw === undefined) return undefined;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw badRequest(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
}

// No stored user_id is longer (keys are at most 1024 bytes) or holds a control character,
// and PostgreSQL cannot take a NUL at all: refuse such a value rather than fail on it.
const MAX_USER_ID_BYTES = 1024;

/** A user_id from a request, checked before it reaches a query. */
export function userIdParam(name: string, raw: string): string {
  if (raw === '') throw badRequest(name, 'must not be empty');
  if (firstControlChar(raw)) throw badRequest(name, 'must not contain control characters');
  if (Buffer.byteLength(raw) > MAX_USER_ID_BYTES) throw badRequest(name, `must be at most ${MAX_USER_ID_BYTES} bytes`);
  return raw;
}

/** Opaque keyset cursor: the last user_id of the previous page. */
export function encodeCursor(userId: string): string {
  return Buffer.from(JSON.stringify({ after: userId }), 'utf8').toString('base64url');
}

export function cursorParam(query: Query, name: string): string | undefined {
  const raw = single(query, name);
  if (raw === undefined) return undefined;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw new Error();
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof parsed.after !== 'string') throw new Error();
    return userIdParam(name, parsed.after);
  } catch {
    throw badRequest(name, 'is not a cursor this API returned');
  }
}
