import type { Context } from 'koa';
import getRawBody from 'raw-body';
import type { z } from 'zod';
import { HttpError } from './errors.js';

/**
 * A request's JSON body: read up to maxBytes (413 beyond), parsed (400 if it is not JSON),
 * and checked against the schema (400 naming the first problem).
 */
export async function readJsonBody(ctx: Context, schema: z.ZodType, maxBytes: number): Promise<unknown> {
  let raw: string;
  try {
    raw = await getRawBody(ctx.req, { limit: maxBytes, length: ctx.get('content-length') || undefined, encoding: 'utf8' });
  } catch (err) {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') throw new HttpError(413, 'body_too_large', `the body is over the ${maxBytes}-byte limit`);
    throw new HttpError(400, 'invalid_body', 'the body could not be read');
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'invalid_body', 'the body is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : 'body';
    throw new HttpError(400, 'invalid_body', `${where}: ${issue.message}`);
  }
  return parsed.data;
}
