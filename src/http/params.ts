import { z } from 'zod';
import { firstControlChar } from '../core/text.js';
import { badRequest } from './errors.js';

// The schemas here validate every query and path parameter, and /openapi.json is generated
// from them (their output side: what a value means once read). A value arrives as text; each
// schema checks the text with a message that names what was wrong, then converts it.

const got = (input: unknown) => `got "${String(input)}"`;

/** A query value. Koa gives an array for a repeated name, which is the only way this fails. */
const text = () => z.string({ error: 'give it once' }).trim();

// Above this an age bound is a typo; it also keeps the interval arithmetic in range.
const MAX_AGE_YEARS = 1000;

export const ageParam = (description: string) =>
  text()
    .refine((v) => v !== '', { error: 'must not be empty', abort: true })
    .refine((v) => !v.startsWith('-'), { error: (i) => `must not be negative, ${got(i.input)}`, abort: true })
    .regex(/^\d+(\.\d+)?$/, { error: (i) => `must be a number of years such as 30 or 30.5, ${got(i.input)}` })
    .transform(Number)
    .pipe(z.number().min(0).max(MAX_AGE_YEARS, `must be at most ${MAX_AGE_YEARS}`))
    .meta({ description });

export const boolParam = (description: string) =>
  text()
    .refine((v) => v === 'true' || v === 'false', { error: (i) => `must be true or false, ${got(i.input)}` })
    .transform((v) => v === 'true')
    .pipe(z.boolean())
    .meta({ description });

export const intParam = (min: number, max: number, description: string) => {
  const message = (input: unknown) => `must be an integer from ${min} to ${max}, ${got(input)}`;
  return text()
    .refine((v) => /^\d+$/.test(v) && Number(v) >= min && Number(v) <= max, { error: (i) => message(i.input) })
    .transform(Number)
    .pipe(z.int().min(min).max(max))
    .meta({ description });
};

export const enumParam = <const T extends readonly [string, ...string[]]>(values: T, description: string) =>
  text()
    .pipe(z.enum(values, { error: (i) => `must be one of ${values.join(', ')}, ${got(i.input)}` }))
    .meta({ description });

// No stored user_id is longer (keys are at most 1024 bytes) or holds a control character,
// and PostgreSQL cannot take a NUL at all: refuse such a value rather than fail on it.
const MAX_USER_ID_BYTES = 1024;

/** A user_id, checked before it reaches a query. */
export const userId = () =>
  z
    .string()
    .refine((v) => v !== '', { error: 'must not be empty', abort: true })
    .refine((v) => !firstControlChar(v), { error: 'must not contain control characters', abort: true })
    .refine((v) => Buffer.byteLength(v) <= MAX_USER_ID_BYTES, { error: `must be at most ${MAX_USER_ID_BYTES} bytes` });

export const userIdPath = z.strictObject({
  user_id: userId().meta({ description: 'The user_id: the file name of the user\'s CSV without ".csv". Leading zeros count.' }),
});

/**
 * user_id, given once or repeated (?user_id=a&user_id=b), each checked as userId() is, at most
 * `max` of them. Always a list, repeats included.
 */
export const userIdsParam = (max: number, description: string) =>
  z
    .union([z.string(), z.array(z.string())], { error: 'must be text' })
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .pipe(z.array(userId()).max(max, `may be given at most ${max} times`))
    .meta({ description });

/** A key prefix, exactly as given (keys may start or end with spaces): at most 1,024 bytes, no NUL. */
export const prefixParam = (description: string) =>
  z
    .string({ error: 'give it once' })
    .refine((v) => v !== '', { error: 'must not be empty', abort: true })
    .refine((v) => !v.includes('\0'), { error: 'must not contain NUL', abort: true })
    .refine((v) => Buffer.byteLength(v) <= MAX_USER_ID_BYTES, { error: `must be at most ${MAX_USER_ID_BYTES} bytes, as a key is` })
    .meta({ description });

/** Opaque keyset cursor: the last user_id of the previous page. */
export function encodeCursor(id: string): string {
  return Buffer.from(JSON.stringify({ after: id }), 'utf8').toString('base64url');
}

const NOT_A_CURSOR = 'is not a cursor this API returned';

function decodeCursor(raw: string): string | null {
  if (!/^[A-Za-z0-9_-]+$/.test(raw)) return null;
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { after?: unknown };
    return typeof parsed.after === 'string' && userId().safeParse(parsed.after).success ? parsed.after : null;
  } catch {
    return null;
  }
}

export const cursorParam = () =>
  text()
    .transform((raw, ctx) => {
      const after = decodeCursor(raw);
      if (after === null) ctx.addIssue({ code: 'custom', message: NOT_A_CURSOR });
      return after ?? '';
    })
    .pipe(z.string())
    .meta({ description: 'Where the page starts: next_cursor (or the X-Next-Cursor header) of the previous page, as is.' });

/**
 * Validates raw parameters with a schema from this module. The first problem becomes a 400
 * that names the parameter; an unknown name comes first, as a typo is the likelier mistake.
 */
export function parseParams<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const unknown = issues.find((i) => i.code === 'unrecognized_keys');
  if (unknown) throw badRequest(unknown.keys[0]!, 'unknown parameter');
  const first = issues[0]!;
  throw badRequest(String(first.path[0] ?? 'parameters'), first.message);
}
