import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { readJsonBody } from './body.js';
import { parseParams } from './params.js';

/** One documented answer of an operation. */
export interface ResponseDoc {
  description: string;
  /** The JSON body's schema. */
  json?: z.ZodType;
  /** Other media types, each with a JSON Schema of its body ({} when it is opaque bytes). */
  media?: Record<string, Record<string, unknown>>;
  headers?: Record<string, { description: string; schema: Record<string, unknown> }>;
}

/**
 * An API route and its description in one place: the router serves it, /openapi.json
 * documents it, and its parameters are validated with the very schemas the document shows.
 */
export interface Operation<Q extends z.ZodType = z.ZodType, P extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: 'get' | 'post';
  /** Koa style: /data/:user_id. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  description?: string;
  /** Query parameters, as a strict object: unknown names are refused. None when absent. */
  query?: Q;
  /** Path parameters, as a strict object. */
  params?: P;
  /** A JSON request body, read up to its byte limit and checked against the schema. */
  body?: { schema: B; maxBytes: number; description: string };
  /**
   * Who may call it: 'api' (API_TOKEN, or loopback without one, the default), 'public', or
   * 'events' (EVENTS_TOKEN or API_TOKEN; loopback rules when neither is set).
   */
  access?: 'api' | 'public' | 'events';
  /** Answers besides errors; every operation may also answer an Error (see openapi.ts). */
  responses: Record<number, ResponseDoc>;
  handler(ctx: Context, input: { query: z.output<Q>; params: z.output<P>; body: z.output<B> }): Promise<void> | void;
}

const NONE = z.strictObject({});

/** Typed in its parameters for the handler, plain for the lists that hold it. */
export function operation<Q extends z.ZodType = typeof NONE, P extends z.ZodType = typeof NONE, B extends z.ZodType = typeof NONE>(
  op: Operation<Q, P, B>,
): Operation {
  return op;
}

export function queryOf(op: Operation): z.ZodType {
  return op.query ?? NONE;
}

export function paramsOf(op: Operation): z.ZodType {
  return op.params ?? NONE;
}

/** Serves each operation; parameters are checked before the handler runs. */
export function mountOperations(router: Router, ops: Operation[]): void {
  for (const op of ops) {
    router[op.method](op.path, async (ctx) => {
      routeLabel(ctx, op.path);
      const params: unknown = parseParams(paramsOf(op), { ...ctx.params });
      const query: unknown = parseParams(queryOf(op), { ...ctx.query });
      const body: unknown = op.body ? await readJsonBody(ctx, op.body.schema, op.body.maxBytes) : undefined;
      await op.handler(ctx, { query, params, body });
    });
  }
}

/** The route a request matched, as a template, for metrics; 'unmatched' when none did. */
export function routeLabel(ctx: Context, route?: string): string {
  const state = ctx.state as { route?: string };
  if (route !== undefined) state.route = route;
  return state.route ?? 'unmatched';
}
