import type Router from '@koa/router';
import type { Database } from '../../db/index.js';
import { getRun, listRuns } from '../../db/runs.js';
import type { RunReport } from '../../model.js';
import { badRequest, notFound } from '../errors.js';
import { intParam } from '../params.js';

/** The API's view of a run: the report, plus where to poll it. */
export function runView(run: RunReport) {
  return { ...run, url: `/runs/${run.id}` };
}

export function runRoutes(router: Router, db: Database): void {

  router.get('/runs', async (ctx) => {
    const limit = intParam(ctx.query, 'limit', 1, 1000) ?? 50;
    const before = intParam(ctx.query, 'before', 1, Number.MAX_SAFE_INTEGER);
    const runs = await listRuns(db, { limit, beforeId: before });
    const last = runs[runs.length - 1];
    ctx.body = { data: runs.map(runView), next_before: runs.length === limit && last ? last.id : null };
  });

  router.get('/runs/:id', async (ctx) => {
    const raw = ctx.params.id!;
    if (!/^\d{1,15}$/.test(raw)) throw badRequest('id', `must be a run id, got "${raw}"`);
    const run = await getRun(db, Number(raw));
    if (!run) throw notFound(`no run with id ${raw}`);
    ctx.body = runView(run);
  });

}
