import { z } from 'zod';
import type { Erasure } from '../db/erasures.js';
import type { ApiUser } from '../db/users.js';
import type { RunReport } from '../core/model.js';
import type { DryRunAnswer } from '../runs/dryRun.js';

// The shapes of the API's JSON answers, for /openapi.json. The types the code uses are
// checked against them at compile time (below), so the document cannot drift from the code.

const timestamp = z.iso.datetime().meta({ description: 'UTC, ISO 8601 with milliseconds' });

const fileVersion = z
  .object({ key: z.string().meta({ description: 'Key in the source bucket' }), etag: z.string().meta({ description: 'Its version, as the store reports it' }) })
  .meta({ id: 'SourceFile' });

export const userSchema = z
  .object({
    id: z.int().meta({ description: 'Stable row id' }),
    user_id: z.string(),
    first_name: z.string(),
    last_name: z.string(),
    birthdate: timestamp,
    birthts: z.int().meta({ description: 'Birth time in milliseconds since 1970-01-01 UTC' }),
    img_path: z.string().nullable().meta({ description: '<bucket>/<key> of the photo, or null without one' }),
    img_format: z.string().nullable().meta({ description: 'The checked format: png, jpeg, webp, gif, tiff or avif' }),
    img_width: z.int().nullable(),
    img_height: z.int().nullable(),
    created_at: timestamp,
    updated_at: timestamp.meta({ description: 'When the data last changed' }),
    source: z
      .object({
        csv: fileVersion.nullable().meta({ description: 'The CSV the row was joined from; null only for rows stored before lineage was recorded whose file could not be told' }),
        image: fileVersion.nullable().meta({ description: 'The photo, or null without one' }),
        run_id: z.int().nullable().meta({ description: 'The run that last changed the row, its data or its source; null for rows not written since lineage was recorded' }),
        changed_at: timestamp.nullable().meta({ description: 'When that run changed it' }),
      })
      .meta({ id: 'UserSource', description: 'Lineage: the file versions the row holds, and the run that last wrote it' }),
  })
  .meta({ id: 'User' });

export const usersPageSchema = z
  .object({
    data: z.array(userSchema),
    next_cursor: z.string().nullable().meta({ description: 'Pass as cursor for the next page; null on the last one' }),
  })
  .meta({ id: 'UsersPage' });

const issueSchema = z.object({ key: z.string(), reason: z.string() }).meta({ id: 'RunIssue' });
const countSchema = z.int().min(0);

export const runSchema = z
  .object({
    id: z.int(),
    trigger: z.enum(['cli', 'http', 'schedule', 'event']).meta({ description: 'event: files named by bucket notifications or the folder watch; such runs gather the batches of a minute' }),
    full: z.boolean().meta({ description: 'Every object was reprocessed' }),
    status: z.enum(['running', 'succeeded', 'failed', 'aborted']),
    started_at: timestamp,
    finished_at: timestamp.nullable(),
    output_written: z.boolean(),
    progress: z.object({
      phase: z.enum(['starting', 'listing', 'processing', 'exporting', 'done']),
      done: countSchema.meta({ description: 'Users processed so far (exporting: rows written)' }),
      total: countSchema.nullable().meta({ description: 'Known only at the end' }),
    }),
    error: z.string().nullable().meta({ description: 'Why the run failed, in a short stable sentence' }),
    counts: z.object({
      scanned: countSchema,
      read: countSchema,
      new: countSchema,
      updated: countSchema,
      unchanged: countSchema,
      rejected: countSchema,
      ignored: countSchema,
      erased: countSchema.meta({ description: 'Users erased because their last CSV went from the bucket (ON_SOURCE_DELETE=erase)' }),
    }),
    rejected: z.array(issueSchema).meta({ description: 'Files rejected this run, with the reason; empty in lists' }),
    warnings: z.array(issueSchema).meta({ description: 'Files worth a look, with the reason; empty in lists' }),
    workers: z
      .array(z.object({ instance: z.string().meta({ description: 'host name:process id' }), items: countSchema }))
      .meta({ description: 'Which instances committed the work items (batches of users), and how many each; empty in lists' }),
    issues_left_out: countSchema.meta({
      description: 'Rejected files and warnings past RUN_ISSUES_LIMIT: counted in counts.rejected and the metrics, not listed in rejected or warnings',
    }),
    scope: z
      .object({
        user_ids: z.array(z.string()).nullable().meta({ description: 'Only these users\' files, in any folder; null: any user' }),
        prefix: z.string().nullable().meta({ description: 'Only keys starting with this; null: any key' }),
      })
      .nullable()
      .meta({ description: 'A targeted run (POST /data with user_id or prefix): every object inside it reread, nothing outside it read or removed. null: the whole bucket' }),
    url: z.string().meta({ description: 'Where to follow the run' }),
  })
  .meta({ id: 'Run' });

export const startedRunSchema = z
  .object({
    ...runSchema.shape,
    joined_existing_run: z.boolean().meta({ description: 'A run was already in progress, here or on another instance; this is that run' }),
  })
  .meta({ id: 'StartedRun' });

const fieldValue = z.union([z.string(), z.number(), z.null()]);
const userFields = z
  .object({
    first_name: z.string(),
    last_name: z.string(),
    birthts: z.int().meta({ description: 'Birth time in milliseconds since 1970-01-01 UTC' }),
    img_path: z.string().nullable(),
    img_format: z.string().nullable(),
    img_width: z.int().nullable(),
    img_height: z.int().nullable(),
  })
  .meta({ id: 'UserFields' });
const fieldChange = z.object({ old: fieldValue, new: fieldValue });

export const dryRunSchema = z
  .object({
    dry_run: z.literal(true),
    full: z.boolean(),
    scope: runSchema.shape.scope,
    counts: z
      .object({ ...runSchema.shape.counts.shape, erased: countSchema.meta({ description: 'Users that ON_SOURCE_DELETE=erase would erase' }) })
      .meta({ description: 'As the run would count them; every entry counted, listed or not' }),
    new: z.array(z.object({ user_id: z.string(), fields: userFields })).meta({ description: 'Users the run would insert, with their row' }),
    updated: z
      .array(
        z.object({
          user_id: z.string(),
          changes: z
            .object({
              first_name: fieldChange.optional(),
              last_name: fieldChange.optional(),
              birthts: fieldChange.optional(),
              img_path: fieldChange.optional(),
              img_format: fieldChange.optional(),
              img_width: fieldChange.optional(),
              img_height: fieldChange.optional(),
            })
            .meta({ description: 'Only the fields that would change, each with its stored and its new value' }),
        }),
      )
      .meta({ description: 'Users whose row would change' }),
    rejected: z.array(issueSchema).meta({ description: 'Files the run would reject, refuse or skip, with the reason' }),
    erased: z.array(z.object({ user_id: z.string() })).meta({ description: 'Users the run would erase (ON_SOURCE_DELETE=erase)' }),
    list_limit: countSchema.meta({ description: 'Each list holds at most this many entries; counts has them all' }),
    output_would_be_written: z.boolean().meta({ description: 'Whether the run would rewrite output.csv' }),
  })
  .meta({ id: 'DryRun' });

export const runsPageSchema = z
  .object({
    data: z.array(runSchema),
    next_before: z.int().nullable().meta({ description: 'Pass as before for the next page; null on the last one' }),
  })
  .meta({ id: 'RunsPage' });

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ description: 'Stable, for programs: invalid_parameter, unauthorized, not_found, ...' }),
      message: z.string().meta({ description: 'For people; names the parameter on a 400' }),
    }),
  })
  .meta({ id: 'Error' });

export const healthSchema = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    checks: z.object({ database: z.enum(['ok', 'unavailable']), store: z.enum(['ok', 'unavailable']) }),
  })
  .meta({ id: 'Health' });

export const erasureSchema = z
  .object({
    id: z.int(),
    erased_at: timestamp,
    user_ref: z.string().meta({
      description: "The first 16 hex digits of the user_id's salted SHA-256: tells entries apart without naming the user. Ask for one user with ?user_id=",
    }),
    reason: z.enum(['api', 'source_delete']).meta({ description: 'api: DELETE /data/:user_id; source_delete: its CSV went from the bucket (ON_SOURCE_DELETE=erase)' }),
    files: countSchema.meta({ description: 'Versions of its files tombstoned: no run imports them again; a new version imports' }),
    run_id: z.int().nullable().meta({ description: 'For a source delete, the run that found the CSV gone' }),
  })
  .meta({ id: 'Erasure' });

export const erasedSchema = z
  .object({
    erasure: erasureSchema,
    already_erased: z.boolean().meta({ description: 'The user was erased before and not imported since: this is that earlier entry, and nothing changed' }),
  })
  .meta({ id: 'Erased' });

export const erasuresPageSchema = z
  .object({
    data: z.array(erasureSchema),
    next_after: z.int().nullable().meta({ description: 'Pass as after for the next page; null on the last one' }),
  })
  .meta({ id: 'ErasuresPage' });

export const overviewSchema = z
  .object({
    users: countSchema,
    users_with_photo: countSchema,
    pending_events: countSchema.meta({ description: 'Keys named by events (webhook, folder watch) and not processed yet: the event backlog' }),
    last_success_at: timestamp.nullable().meta({ description: 'When the last successful run, of any instance, finished' }),
    schedule: z.string().nullable().meta({ description: 'SCHEDULE, the cron expression of the scheduled runs; null when off' }),
    next_run_at: timestamp.nullable().meta({ description: "When this instance's schedule next triggers a run; null when SCHEDULE=off (or in the moment before the scheduler starts)" }),
  })
  .meta({ id: 'Overview' });

// Compile-time checks: each schema describes exactly the type the code answers with.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(_proof?: T) => undefined;
same<Same<z.output<typeof userSchema>, ApiUser>>();
same<Same<z.output<typeof erasureSchema>, Erasure>>();
same<Same<Omit<z.output<typeof runSchema>, 'url'>, RunReport>>();
same<Same<z.output<typeof dryRunSchema>, DryRunAnswer>>();
