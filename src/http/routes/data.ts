import { Readable } from 'node:stream';
import type Router from '@koa/router';
import { csvStream } from '../../csv.js';
import type { Database } from '../../db/index.js';
import type { ApiUser, UserFilter } from '../../db/users.js';
import { getRun } from '../../db/runs.js';
import { getUser, queryUsers, streamUsers } from '../../db/users.js';
import type { Runner } from '../../runner.js';
import { badRequest, notFound } from '../errors.js';
import { ageParam, boolParam, cursorParam, encodeCursor, enumParam, intParam, userIdParam } from '../params.js';
import type { CachedPage, PageCache } from '../pageCache.js';
import { runView } from './runs.js';

const MAX_LIMIT = 10_000;
// Unknown parameters are refused: a typo such as "minage" would otherwise silently match everyone.
const GET_PARAMS = new Set(['min_age', 'max_age', 'is_image_exists', 'limit', 'cursor', 'format']);
const POST_PARAMS = new Set(['wait', 'full']);
const CSV_COLUMNS: Array<keyof ApiUser> = [
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

export function dataRoutes(router: Router, db: Database, runner: Runner, cache: PageCache | null): void {
  router.get('/data', async (ctx) => {
    const q = ctx.query;
    rejectUnknown(q, GET_PARAMS);
    const filter: UserFilter = {
      minAge: ageParam(q, 'min_age'),
      maxAge: ageParam(q, 'max_age'),
      hasImage: boolParam(q, 'is_image_exists'),
      afterUserId: cursorParam(q, 'cursor'),
    };
    if (filter.minAge !== undefined && filter.maxAge !== undefined && filter.minAge > filter.maxAge) {
      throw badRequest('min_age', `must not be greater than max_age (${filter.minAge} > ${filter.maxAge})`);
    }
    const limit = intParam(q, 'limit', 1, MAX_LIMIT);
    const format = enumParam(q, 'format', ['json', 'csv'] as const) ?? 'json';

    if (limit !== undefined) {
      // Normalized, so equivalent spellings of a query share one entry.
      const key = JSON.stringify([format, limit, filter.minAge, filter.maxAge, filter.hasImage, filter.afterUserId]);
      let page = cache?.get(key);
      if (!page) {
        const version = cache?.version() ?? 0;
        page = await boundedPage(db, filter, limit, format);
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
    if (format === 'csv') {
      ctx.type = 'text/csv; charset=utf-8';
      ctx.body = usersCsv(pages);
    } else {
      ctx.type = 'application/json; charset=utf-8';
      ctx.body = jsonStream(pages);
    }
  });

  router.get('/data/:user_id', async (ctx) => {
    const userId = userIdParam('user_id', ctx.params.user_id!);
    const user = await getUser(db, userId);
    if (!user) throw notFound(`no user with user_id ${JSON.stringify(userId)}`);
    ctx.body = user;
  });

  router.post('/data', async (ctx) => {
    const q = ctx.query;
    rejectUnknown(q, POST_PARAMS);
    const wait = boolParam(q, 'wait') ?? false;
    const full = boolParam(q, 'full') ?? false;
    const triggered = await runner.trigger({ trigger: 'http', full });
    ctx.set('Location', `/runs/${triggered.runId}`);
    if (wait) {
      ctx.status = 200;
      ctx.body = runView(await triggered.done);
      return;
    }
    ctx.status = 202;
    ctx.body = { ...(await runViewById(db, triggered.runId)), joined_existing_run: !triggered.started };
  });
}

/** One page, serialized. One extra row is fetched to know whether there is a next page. */
async function boundedPage(db: Database, filter: UserFilter, limit: number, format: 'json' | 'csv'): Promise<CachedPage> {
  const rows = await queryUsers(db, filter, limit + 1);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodeCursor(page[page.length - 1]!.user_id) : null;
  if (format === 'json') {
    return { type: 'application/json; charset=utf-8', headers: {}, body: Buffer.from(JSON.stringify({ data: page, next_cursor: next })) };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of usersCsv([page])) chunks.push(Buffer.from(chunk as string | Buffer));
  return { type: 'text/csv; charset=utf-8', headers: next ? { 'X-Next-Cursor': next } : {}, body: Buffer.concat(chunks) };
}

function rejectUnknown(query: object, known: Set<string>): void {
  for (const name of Object.keys(query)) if (!known.has(name)) throw badRequest(name, 'unknown parameter');
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

function usersCsv(pages: AsyncIterable<ApiUser[]> | Iterable<ApiUser[]>): Readable {
  return csvStream(
    CSV_COLUMNS,
    (async function* () {
      for await (const page of pages) for (const u of page) yield CSV_COLUMNS.map((c) => (u[c] === null ? '' : String(u[c])));
    })(),
  );
}
