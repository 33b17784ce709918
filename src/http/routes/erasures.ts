import { z } from 'zod';
import type { Database } from '../../db/index.js';
import { eraseUser, listErasures } from '../../db/erasures.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { notFound } from '../errors.js';
import { intParam, userId, userIdPath } from '../params.js';
import { erasedSchema, erasuresPageSchema } from '../schemas.js';

const erasuresQuery = z.strictObject({
  user_id: userId().optional().meta({ description: 'Only the entries of this user_id (hashed to compare, never stored)' }),
  after: intParam(0, Number.MAX_SAFE_INTEGER, 'Only entries with a greater id: next_after of the previous page').optional(),
  limit: intParam(1, 1000, 'Page size').default(100),
});

/**
 * Erasure: DELETE /data/:user_id and the log of erasures. afterErasure is told once an erasure
 * is committed: output.csv is then owed, and the event loop rewrites it.
 */
export function erasureOperations(db: Database, afterErasure: () => void): Operation[] {
  return [
    operation({
      method: 'delete',
      path: '/data/:user_id',
      operationId: 'eraseUser',
      tag: 'users',
      access: 'api',
      summary: 'Erase a user',
      description:
        'Deletes the row, logs the erasure without the personal data (GET /erasures), and tombstones the versions of its files: no run, not even full=true, imports them again; a new version of a file for that user_id imports as usual. output.csv is rewritten soon, coalesced with event exports. Holds across replicas and runs in progress. Again on a user erased before and not imported since: 200 with that entry, nothing changed. A user_id never stored: 404.',
      params: userIdPath,
      responses: { 200: { description: 'Erased now, or before (already_erased)', json: erasedSchema } },
      handler: async (ctx, { params }) => {
        const out = await eraseUser(db, params.user_id);
        if (out.kind === 'not-found') throw notFound(`no user with user_id ${JSON.stringify(params.user_id)}`);
        if (out.kind === 'erased') afterErasure();
        ctx.body = { erasure: out.erasure, already_erased: out.kind === 'erased-before' };
      },
    }),

    operation({
      method: 'get',
      path: '/erasures',
      operationId: 'listErasures',
      tag: 'users',
      access: 'api',
      summary: 'The erasure log, oldest first',
      description: 'When, whom (a hash: the log keeps no user_id, name, birth date or photo) and why.',
      query: erasuresQuery,
      responses: { 200: { description: 'A page of erasures', json: erasuresPageSchema } },
      handler: async (ctx, { query }) => {
        const rows = await listErasures(db, { userId: query.user_id, afterId: query.after, limit: query.limit });
        const last = rows[rows.length - 1];
        ctx.body = { data: rows, next_after: rows.length === query.limit && last ? last.id : null };
      },
    }),
  ];
}
