import type { RouterContext, RouterMiddleware } from '@koa/router';
import Router from '@koa/router';
import type Koa from 'koa';
import type { Context, Middleware } from 'koa';
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
  method: 'get' | 'post' | 'delete';
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
   * Called after the access check, before the body is read: throws to refuse the request at
   * once, or returns what to call when the request is done (a slot of a concurrency limit).
   */
  admit?(ctx: Context): Promise<() => void>;
  /** Who may call it; the router checks it before the handler runs. */
  access: Access;
  /** Answers besides errors; every operation may also answer an Error (see openapi.ts). */
  responses: Record<number, ResponseDoc>;
  handler(ctx: Context, input: { query: z.output<Q>; params: z.output<P>; body: z.output<B> }): Promise<void> | void;
}

/**
 * Who may call a route. 'api': API_TOKEN holders (Bearer). 'public': anyone. 'events':
 * EVENTS_TOKEN or API_TOKEN holders (Bearer, or Basic with the token as the password).
 * 'metrics': METRICS_TOKEN or API_TOKEN holders (Bearer). Where the service has no such token,
 * the loopback rules (localOnly.ts) guard the route instead; without API_TOKEN, that is every
 * route but the 'events' ones when EVENTS_TOKEN is set, and the 'metrics' ones when METRICS_TOKEN is.
 */
export type Access = 'api' | 'public' | 'events' | 'metrics';

/** The middleware that enforces an access (auth.ts). */
export type AccessCheck = (access: Access) => Middleware;

// A wrong method is checked as strictly as the strictest route on its path.
const STRICTEST_FIRST: Access[] = ['api', 'metrics', 'events', 'public'];

/**
 * The app's routes, each registered with the access it needs: the check is the route's first
 * middleware, so it applies to exactly the requests the router gives that route.
 */
export class Routes {
  private readonly router = new Router();
  private readonly accessByName = new Map<string, Access>();

  constructor(private readonly check: AccessCheck) {}

  add(route: { method: 'get' | 'post' | 'delete'; name: string; path: string; access: Access }, handler: RouterMiddleware): void {
    if (this.accessByName.has(route.name)) throw new Error(`two routes are named ${route.name}`);
    this.accessByName.set(route.name, route.access);
    this.router[route.method](route.name, route.path, this.check(route.access), handler);
  }

  /** Serves the routes; then checks the requests no route took, and answers 405 and 501. */
  mount(app: Koa): void {
    app.use(this.router.routes());
    app.use(this.unmatched());
    app.use(this.router.allowedMethods({ throw: true }));
  }

  /**
   * A request no route took is checked before it is told 404 or 405, so that without the token
   * it learns nothing of which paths exist: as the strictest route its path matched (a wrong
   * method), or as an 'api' route when it matched none.
   */
  private unmatched(): Middleware {
    return async (ctx, next) => {
      const routed = ctx as RouterContext;
      if (routed.routeMatched) {
        await next();
        return;
      }
      const onPath = new Set((routed.matched ?? []).map((layer) => this.accessByName.get(layer.name ?? '') ?? 'api'));
      await this.check(STRICTEST_FIRST.find((a) => onPath.has(a)) ?? 'api')(ctx, next);
    };
  }
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

/** Serves each operation; access, then parameters, are checked before the handler runs. */
export function mountOperations(routes: Routes, ops: Operation[]): void {
  for (const op of ops) {
    routes.add({ method: op.method, name: op.operationId, path: op.path, access: op.access }, async (ctx) => {
      routeLabel(ctx, op.path);
      const params: unknown = parseParams(paramsOf(op), { ...ctx.params });
      const query: unknown = parseParams(queryOf(op), { ...ctx.query });
      const done = op.admit ? await op.admit(ctx) : null;
      try {
        const body: unknown = op.body ? await readJsonBody(ctx, op.body.schema, op.body.maxBytes) : undefined;
        await op.handler(ctx, { query, params, body });
      } finally {
        done?.();
      }
    });
  }
}

/** The route a request matched, as a template, for metrics; 'unmatched' when none did. */
export function routeLabel(ctx: Context, route?: string): string {
  const state = ctx.state as { route?: string };
  if (route !== undefined) state.route = route;
  return state.route ?? 'unmatched';
}
