import { z } from 'zod';
import type { Database } from '../../db/index.js';
import { getRun, listRuns } from '../../db/runs.js';
import type { RunReport } from '../../core/model.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { notFound } from '../errors.js';
import { intParam } from '../params.js';
import { runSchema, runsPageSchema } from '../schemas.js';

/** The API's view of a run: the report, plus where to poll it. */
export function runView(run: RunReport) {
  return { ...run, url: `/runs/${run.id}` };
}

const MAX_RUN_ID = Number.MAX_SAFE_INTEGER;

const runsQuery = z.strictObject({
  limit: intParam(1, 1000, 'Page size').default(50),
  before: intParam(1, MAX_RUN_ID, 'Only runs with a smaller id: next_before of the previous page').optional(),
});

// The console polls a running run every second, for its counts; the lists can be 10,000 rows each.
const MAX_ISSUES = 10_000;
const runQuery = z.strictObject({
  issues: intParam(0, MAX_ISSUES, 'The most rejected files, and the most warnings, to include (each list, first by key); 0 for the counts only').default(MAX_ISSUES),
});

const runPath = z.strictObject({
  id: z
    .string()
    .regex(/^\d{1,15}$/, { error: (i) => `must be a run id, got "${String(i.input)}"` })
    .transform(Number)
    .pipe(z.int().min(0).max(MAX_RUN_ID))
    .meta({ description: 'The run id' }),
});

export function runOperations(db: Database): Operation[] {
  return [
    operation({
      method: 'get',
      path: '/runs',
      operationId: 'listRuns',
      tag: 'runs',
      access: 'api',
      summary: 'Runs, newest first, without their file lists',
      query: runsQuery,
      responses: { 200: { description: 'A page of runs', json: runsPageSchema } },
      handler: async (ctx, { query }) => {
        const runs = await listRuns(db, { limit: query.limit, beforeId: query.before });
        const last = runs[runs.length - 1];
        ctx.body = { data: runs.map(runView), next_before: runs.length === query.limit && last ? last.id : null };
      },
    }),

    operation({
      method: 'get',
      path: '/runs/:id',
      operationId: 'getRun',
      tag: 'runs',
      access: 'api',
      summary: 'One run: status, live progress, counts, and the files it rejected or warned about, with reasons',
      params: runPath,
      query: runQuery,
      responses: { 200: { description: 'The run', json: runSchema } },
      handler: async (ctx, { params, query }) => {
        const run = await getRun(db, params.id, query.issues);
        if (!run) throw notFound(`no run with id ${params.id}`);
        ctx.body = runView(run);
      },
    }),
  ];
}
