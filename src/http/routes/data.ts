import { Readable } from 'node:stream';
import { z } from 'zod';
import type { CsvOptions } from '../../csv.js';
import { csvStream } from '../../csv.js';
import type { Database } from '../../db/index.js';
import type { ApiUser, UserFilter } from '../../db/users.js';
import { getRun } from '../../db/runs.js';
import { getUser, queryUsers, streamUsers } from '../../db/users.js';
import type { Runner } from '../../runs/coordinator.js';
import { operation } from '../api.js';
import type { Operation } from '../api.js';
import { notFound } from '../errors.js';
import { MAX_SCOPE_USERS } from '../../core/scope.js';
import { ageParam, boolParam, cursorParam, encodeCursor, enumParam, intParam, prefixParam, userIdPath, userIdsParam } from '../params.js';
import type { CachedPage, PageCache } from '../pageCache.js';
import { dryRunSchema, startedRunSchema, runSchema, userSchema, usersPageSchema } from '../schemas.js';
import { runView } from './runs.js';

const MAX_LIMIT = 10_000;
// Flat columns only: format=csv leaves out the nested `source` (lineage).
const CSV_COLUMNS: Array<Exclude<keyof ApiUser, 'source'>> = [
  'id',
  'user_id',
  'first_name',
  'last_name',
  'birthdate',
  'birthts',
  'img_path',
  'img_format',
  'img_width',
  'img_height',
  'created_at',
  'updated_at',
];

// Unknown parameters are refused: a typo such as "minage" would otherwise silently match everyone.
export const usersQuery = z
  .strictObject({
    min_age: ageParam('Only users at least this old, in years (decimals allowed), as elapsed calendar time').optional(),
    max_age: ageParam('Only users at most this old, in years').optional(),
    is_image_exists: boolParam('true: only users with a photo; false: only users without one').optional(),
    limit: intParam(1, MAX_LIMIT, 'Page size. Without it, every match is streamed in one answer').optional(),
    cursor: cursorParam().optional(),
    format: enumParam(
      ['json', 'csv'],
      "csv answers text/csv with the same columns; a text cell starting with = + - @, a tab or a CR gets a leading ' unless CSV_NEUTRALIZE_FORMULAS=false",
    ).default('json'),
  })
  .refine((q) => q.min_age === undefined || q.max_age === undefined || q.min_age <= q.max_age, {
    path: ['min_age'],
    error: (i) => {
      const q = i.input as { min_age: number; max_age: number };
      return `must not be greater than max_age (${q.min_age} > ${q.max_age})`;
    },
  });

const runQuery = z.strictObject({
  wait: boolParam('Answer when the run has finished, with its report, instead of at once').default(false),
  full: boolParam('Reprocess every object and rewrite output.csv').default(false),
  user_id: userIdsParam(
    MAX_SCOPE_USERS,
    `Reprocess only these users (repeat it for several, at most ${MAX_SCOPE_USERS}): every file of theirs is reread, in any folder; nothing else is read or removed`,
  ).optional(),
  prefix: prefixParam('Reprocess only the objects whose key starts with this (e.g. batch1/): all reread, nothing else read or removed').optional(),
  dry_run: boolParam(
    'Answer what the run would do now, and write nothing (no run is recorded). Combines with full, user_id and prefix; wait does not apply',
  ).default(false),
});

const csvDoc = { 'text/csv': { type: 'string' } };
const nextCursorHeader = {
  'X-Next-Cursor': { description: 'With format=csv and limit: the cursor of the next page, absent on the last one', schema: { type: 'string' } },
};

export function dataOperations(db: Database, runner: Runner, cache: PageCache | null, csv: CsvOptions): Operation[] {
  return [
    operation({
      method: 'get',
      path: '/data',
      operationId: 'listUsers',
      tag: 'users',
      access: 'api',
      summary: 'Users matching the filters, ordered by user_id',
      description: 'Filters combine with AND. With limit, one page and a cursor to the next; without it, every match, streamed.',
      query: usersQuery,
      responses: { 200: { description: 'The users', json: usersPageSchema, media: csvDoc, headers: nextCursorHeader } },
      handler: async (ctx, { query: q }) => {
        const filter: UserFilter = { minAge: q.min_age, maxAge: q.max_age, hasImage: q.is_image_exists, afterUserId: q.cursor };
        if (q.limit !== undefined) {
          // Normalized, so equivalent spellings of a query share one entry.
          const key = JSON.stringify([q.format, q.limit, filter.minAge, filter.maxAge, filter.hasImage, filter.afterUserId]);
          let page = cache?.get(key);
          if (!page) {
            const version = cache?.version() ?? 0;
            page = await boundedPage(db, filter, q.limit, q.format, csv);
            cache?.set(key, page, version);
          }
          ctx.type = page.type;
          ctx.set(page.headers);
          ctx.body = page.body;
          return;
        }
        // Everything matching: streamed page by page, so memory stays flat for any row count. The
        // first page is fetched before answering, so a database failure still gets a proper status.
        const pages = await prefetched(streamUsers(db, filter));
        if (q.format === 'csv') {
          ctx.type = 'text/csv; charset=utf-8';
          ctx.body = usersCsv(pages, csv);
        } else {
          ctx.type = 'application/json; charset=utf-8';
          ctx.body = jsonStream(pages);
        }
      },
    }),

    operation({
      method: 'get',
      path: '/data/:user_id',
      operationId: 'getUser',
      tag: 'users',
      access: 'api',
      summary: 'One user',
      params: userIdPath,
      responses: { 200: { description: 'The user', json: userSchema } },
      handler: async (ctx, { params }) => {
        const user = await getUser(db, params.user_id);
        if (!user) throw notFound(`no user with user_id ${JSON.stringify(params.user_id)}`);
        ctx.body = user;
      },
    }),

    operation({
      method: 'post',
      path: '/data',
      operationId: 'startRun',
      tag: 'runs',
      access: 'api',
      summary: 'Start a run now',
      description:
        'Runs never overlap: during a run that covers this one, this answers that run, with joined_existing_run. A run covers ' +
        'another when it rereads at least as much: a full run covers all; an incremental run, incremental ones; a run with user_id ' +
        'or prefix, those inside its scope. During a run that does not cover it, the call waits for that run to end and starts its ' +
        'own. The Location header says where to follow it. With dry_run=true, nothing is started: the answer says what a run would do.',
      query: runQuery,
      responses: {
        200: {
          description: 'With wait=true: the finished run, whatever its status. With dry_run=true: what a run would do now (a DryRun)',
          json: z.union([runSchema, dryRunSchema]),
        },
        202: {
          description: 'The run, started or joined',
          json: startedRunSchema,
          headers: { Location: { description: 'The run: /runs/<id>', schema: { type: 'string' } } },
        },
      },
      handler: async (ctx, { query }) => {
        const userIds = query.user_id ? [...new Set(query.user_id)] : null;
        const scope = userIds || query.prefix ? { userIds, prefix: query.prefix ?? null } : null;
        if (query.dry_run) {
          // Stops reading when the client gives up on the answer.
          const gone = new AbortController();
          ctx.req.once('close', () => gone.abort());
          ctx.status = 200;
          ctx.body = await runner.dryRun({ full: query.full, scope, signal: gone.signal });
          return;
        }
        const triggered = await runner.trigger({ trigger: 'http', full: query.full, scope });
        ctx.set('Location', `/runs/${triggered.runId}`);
        if (query.wait) {
          ctx.status = 200;
          ctx.body = runView(await triggered.done);
          return;
        }
        ctx.status = 202;
        ctx.body = { ...(await runViewById(db, triggered.runId)), joined_existing_run: !triggered.started };
      },
    }),
  ];
}

/** One page, serialized. One extra row is fetched to know whether there is a next page. */
async function boundedPage(db: Database, filter: UserFilter, limit: number, format: 'json' | 'csv', csv: CsvOptions): Promise<CachedPage> {
  const rows = await queryUsers(db, filter, limit + 1);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodeCursor(page[page.length - 1]!.user_id) : null;
  if (format === 'json') {
    return { type: 'application/json; charset=utf-8', headers: {}, body: Buffer.from(JSON.stringify({ data: page, next_cursor: next })) };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of usersCsv([page], csv)) chunks.push(Buffer.from(chunk as string | Buffer));
  return { type: 'text/csv; charset=utf-8', headers: next ? { 'X-Next-Cursor': next } : {}, body: Buffer.concat(chunks) };
}

async function runViewById(db: Database, id: number) {
  const run = await getRun(db, id, 100);
  return run ? runView(run) : { id };
}

async function prefetched<T>(gen: AsyncGenerator<T>): Promise<AsyncGenerator<T>> {
  const first = await gen.next();
  return (async function* () {
    if (first.done) return;
    yield first.value;
    yield* gen;
  })();
}

/** `{"data":[...],"next_cursor":null}`, written as pages arrive. */
function jsonStream(pages: AsyncGenerator<ApiUser[]>): Readable {
  return Readable.from(
    (async function* () {
      yield '{"data":[';
      let first = true;
      for await (const page of pages) {
        let chunk = '';
        for (const u of page) {
          chunk += (first ? '' : ',') + JSON.stringify(u);
          first = false;
        }
        yield chunk;
      }
      yield '],"next_cursor":null}';
    })(),
  );
}

function usersCsv(pages: AsyncIterable<ApiUser[]> | Iterable<ApiUser[]>, csv: CsvOptions): Readable {
  return csvStream(
    CSV_COLUMNS,
    (async function* () {
      for await (const page of pages) for (const u of page) yield CSV_COLUMNS.map((c) => u[c]);
    })(),
    csv,
  );
}
