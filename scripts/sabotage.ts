// npm run test:sabotage: breaks named core mechanisms one at a time, each with a small edit, and
// runs the tests meant to catch it. It fails when an edit survives (those tests still pass), when
// an edit's text is not found exactly once (the code moved: update the entry), or when an entry's
// tests cannot tell (no test matched its filter, the edited code did not load).
//
// The edits are made in a temporary copy of the repository, never in the working tree: the
// tracked and untracked-but-not-ignored files as they are on disk, or with --ref <commit> that
// commit's tree (git archive). node_modules is linked into the copy.
//
// Usage: npm run test:sabotage -- [name...] [--ref <commit>] [--baseline] [--check] [--list] [--jobs N] [--keep] [--verbose]
//   name...     run only these entries (default: all but the known gaps)
//   --ref C     copy commit C instead of the working tree
//   --baseline  first run each entry's tests unsabotaged, which must pass
//   --check     only check that every edit applies (known gaps included); no test is run
//   --list      print the entries as a Markdown table (docs/testing.md) and exit
//   --jobs N    run N entries at once, each in a copy of its own (default 2, the machine's cores)
//   --keep      keep the temporary copy and the vitest logs
//   --verbose   show vitest's output as it runs
// See docs/testing.md.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import type { EmbeddedServer } from '../src/db/embedded.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { SHARED_POSTGRES_ENV } from '../test/support/globalPostgres.js';

interface Edit {
  /** Exact text, found exactly once in the original file. */
  find: string;
  replace: string;
}

interface Sabotage {
  /** Short kebab-case name, used on the command line. */
  name: string;
  /** What breaking this mechanism would let through. */
  why: string;
  /** The file edited, relative to the repository root. */
  file: string;
  /** Applied together, each matched against the original file. */
  edits: Edit[];
  /** Test files to run: as few as catch it. */
  tests: string[];
  /** vitest -t: a regular expression on the test's full name (describe titles and its own, joined by spaces). */
  filter?: string;
  /** Its tests need the radosgw cluster; the others run without one, which saves its start. */
  radosgw?: boolean;
}

// The list. Each edit must be caught by its tests: a test failing, not the code failing to load.
// Filters name the folder backend where a suite runs once per backend and the store plays no part.
const SABOTAGES: Sabotage[] = [
  {
    name: 'user-lock',
    why: 'two work items could commit the same user at once: a lost update, or an older file winning',
    file: 'src/db/users.ts',
    edits: [{ find: 'if (userIds.length === 0) return;', replace: 'return;' }],
    tests: ['test/userLock.test.ts'],
  },
  {
    name: 'item-claim',
    why: 'an item retried after its lease ran out would commit a second time: counts doubled, and its older read written again',
    file: 'src/db/runItems.ts',
    edits: [{ find: 'return rowCount === 1;', replace: 'return true;' }],
    tests: ['test/commitItem.test.ts'],
    filter: 'commits once',
  },
  {
    name: 'ended-run',
    why: 'an item still in hand when its run was aborted would write users after the run ended',
    file: 'src/db/runItems.ts',
    edits: [{ find: 'return rows.length === 1;', replace: 'return true;' }],
    tests: ['test/commitItem.test.ts'],
    filter: 'commits nothing for a run that has ended',
  },
  {
    name: 'page-cache-version',
    why: 'a GET /data page queried before a change and stored after it would be served stale',
    file: 'src/http/pageCache.ts',
    edits: [{ find: 'if (this.enabled && version === this.generation) this.pages.set', replace: 'if (this.enabled) this.pages.set' }],
    tests: ['test/pageCache.test.ts'],
    filter: 'does not keep a page queried before a change',
  },
  {
    name: 'erasure-tombstone',
    why: 'a full run would import again the very file versions an erasure tombstoned, bringing the user back',
    file: 'src/pipeline/planBatch.ts',
    edits: [{ find: 'fresh.set(key, isTombstoned(tombstones?.get(userId), r.state, opts.readStartedAtMs?.get(key)) ? erased(r.state) : r.state);', replace: 'fresh.set(key, r.state);' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*tombstone holds',
  },
  {
    name: 'erasure-older-versions',
    why: 'a version of a file written before an erasure, not recorded yet, would bring the user back at the next run',
    file: 'src/core/model.ts',
    edits: [{ find: ' || f.lastModifiedMs <= t.erasedAtMs', replace: '' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*written before the erasure',
  },
  {
    name: 'erasure-read-started',
    why: "a run that read a user's file before its erasure would bring the user back when it commits, if the store's clock runs ahead",
    file: 'src/core/model.ts',
    edits: [{ find: ' || (readStartedAtMs !== undefined && readStartedAtMs < t.erasedAtMs)', replace: '' }],
    tests: ['test/erasure.test.ts'],
    filter: "folder backend.*store's clock runs ahead",
  },
  {
    name: 'erasure-dated-at-lock',
    why: 'an erasure that waited for the user lock would be dated before it, so a version a run read meanwhile would bring the user back',
    file: 'src/db/erasures.ts',
    edits: [{ find: '$3, clock_timestamp()', replace: '$3, now()' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*waits for the user lock',
  },
  {
    name: 'source-delete-by-key',
    why: 'with ON_SOURCE_DELETE=erase, a CSV moved to another folder whose delete was seen first would erase the user for good',
    file: 'src/db/erasures.ts',
    edits: [{ find: "CASE WHEN $2 = 'source_delete' THEN", replace: 'CASE WHEN false THEN' }],
    tests: ['test/erasure.test.ts'],
    filter: 's3rver backend.*moved to another folder',
  },
  {
    name: 'source-delete-only-gone',
    why: 'a source delete would tombstone the photo still in the bucket too, so the user, back with a new CSV, would have no photo for good',
    file: 'src/db/erasures.ts',
    edits: [{ find: ' AND ($4::text[] IS NULL OR key = ANY($4::text[]))', replace: '' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*moved to another folder',
  },
  {
    name: 'scope-scrub-at-finish',
    why: 'a targeted run that named a user erased while it ran would keep the user_id in its scope, readable in GET /runs',
    file: 'src/db/runs.ts',
    edits: [{ find: "WHERE NOT ${erasedSince(\"x #>> '{}'\", 'started_at')}", replace: 'WHERE true' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*drops the user_id from its scope',
  },
  {
    name: 'erasure-scrub',
    why: "an erased user's names and birth date would stay in its source_files records",
    file: 'src/db/erasures.ts',
    edits: [{ find: '  if (api) await scrubFileStates(tx, erased);\n', replace: '' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*DELETE /data/:user_id erases',
  },
  {
    name: 'source-delete-erase',
    why: 'ON_SOURCE_DELETE=erase would keep a user whose last CSV went from the bucket',
    file: 'src/pipeline/planBatch.ts',
    edits: [{ find: "erase: onSourceDelete === 'erase' && lastCsvGone,", replace: 'erase: false,' }],
    tests: ['test/erasure.test.ts'],
    filter: 'folder backend.*ON_SOURCE_DELETE erase: a removal event',
  },
  {
    name: 'source-delete-tombstones-gone-csv',
    why: 'a source-delete erasure would not tombstone the CSV that went, so a stale sync putting the same file back would bring the user back',
    file: 'src/db/commitItem.ts',
    edits: [
      { find: '  await deleteFileStates(tx, users.flatMap((u) => u.gone));\n', replace: '' },
      { find: '  const toErase = users.filter((u) => u.erase);', replace: '  await deleteFileStates(tx, users.flatMap((u) => u.gone));\n  const toErase = users.filter((u) => u.erase);' },
    ],
    tests: ['test/erasure.test.ts'],
    filter: 's3rver backend.*found by a listing',
  },
  {
    name: 'lineage-moves',
    why: "a new version of a file with the same values would leave GET /data's source naming the old etag and run",
    file: 'src/db/users.ts',
    edits: [{ find: "WHERE ${DATA_CHANGED} OR ${tuple('u', LINEAGE_COLUMNS)}", replace: "WHERE ${DATA_CHANGED} AND ${tuple('u', LINEAGE_COLUMNS)}" }],
    tests: ['test/lineage.test.ts'],
    filter: 'folder backend',
  },
  {
    name: 'lineage-not-counted',
    why: 'a new version of a file with the same values would count as an updated user: run counts would report data changes that are not',
    file: 'src/db/users.ts',
    edits: [{ find: 'r.data_changed === false ? result.relinked : ', replace: '' }],
    tests: ['test/lineage.test.ts'],
    filter: 'folder backend.*same values',
  },
  {
    name: 'diff-fingerprint',
    why: 'an incremental run would never read a changed CSV or image again, only new ones',
    file: 'src/pipeline/diffSource.ts',
    edits: [
      {
        find: 'opts.full || previous?.fingerprint !== fingerprintOf(object.etag, object.size, object.lastModifiedMs)',
        replace: 'opts.full || previous === undefined',
      },
    ],
    tests: ['test/diffSource.test.ts'],
  },
  {
    name: 'newest-wins',
    why: 'an item that read an object before another commit recorded a newer state of it would overwrite the newer user',
    file: 'src/db/commitItem.ts',
    edits: [{ find: '    if (moved.length > 0) throw new Moved(moved);\n', replace: '' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*reads again',
  },
  {
    name: 'savepoint-fallback',
    why: 'one user PostgreSQL refuses for its data would fail its whole item, and so the run, instead of being rejected alone',
    file: 'src/db/commitItem.ts',
    // The first of two such lines: the one in commitItem's outer try, before the warning.
    edits: [{ find: 'if (!isDataError(err)) throw err;\n      log.warn({ err, runId: item.runId }', replace: 'throw err;\n      log.warn({ err, runId: item.runId }' }],
    tests: ['test/commitItem.test.ts'],
    filter: 'refuses',
  },
  {
    name: 'atomic-replace',
    why: 'a write of output.csv that fails half-way would leave a truncated file in place of the last good one',
    file: 'src/storage/folderStore.ts',
    edits: [
      { find: "createWriteStream(tmp, { flags: 'wx' })", replace: 'createWriteStream(target)' },
      { find: '      await fs.rename(tmp, target);\n', replace: '' },
    ],
    tests: ['test/objectStore.test.ts'],
    filter: '^ObjectStore contract: folder leaves the old object in place',
  },
  {
    name: 'forget-after-commit',
    why: 'an event batch that fails (store down) would lose its keys: those changes would wait for the next full run',
    file: 'src/runs/eventBatch.ts',
    edits: [
      { find: 'const pending = await takePendingEvents(db, opts.maxKeys);', replace: 'const pending = await takePendingEvents(db, opts.maxKeys);\n    await forgetEvents(db, pending);' },
      { find: '      await forgetEvents(db, pending);\n', replace: '' },
    ],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*fails keeps its events pending',
  },
  {
    name: 'host-check',
    why: 'DNS rebinding: a web page the user visits could read and drive a token-less service on localhost',
    file: 'src/http/localOnly.ts',
    edits: [{ find: 'if (opts.checkHost && !isLoopbackHostHeader(host)) {', replace: 'if (false) {' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: 'refuses a foreign Host',
  },
  {
    name: 'token-check',
    why: 'anyone reaching the port could read every user and start runs without API_TOKEN',
    file: 'src/http/auth.ts',
    edits: [{ find: 'const ok = given !== null && expected.map((e) => timingSafeEqual(given, e)).includes(true);', replace: 'const ok = true;' }],
    tests: ['test/http.test.ts'],
    filter: 'requires the bearer token',
  },
  {
    name: 'export-snapshot',
    why: 'output.csv written while items commit would mix rows from before and after a commit: a table that never was',
    file: 'src/db/pool.ts',
    edits: [{ find: 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY', replace: 'SET TRANSACTION READ ONLY' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*export runs while items commit',
  },
  {
    name: 'run-lock',
    why: 'two runs could go on at once, across instances: twice the work, and two writers of output.csv',
    file: 'src/db/locks.ts',
    edits: [{ find: 'if (!rows[0]?.ok) {', replace: 'if (false) {' }],
    tests: ['test/pipeline.test.ts'],
    filter: '^pipeline on the folder backend does not run while another process holds the run lock',
  },
  {
    name: 'export-version',
    why: 'an export that overlapped a commit would mark output.csv up to date although it lacks that commit',
    file: 'src/db/outputState.ts',
    edits: [{ find: 'output_stale = output_version > $1', replace: 'output_stale = false' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*export runs while items commit',
  },
  {
    name: 'reread-moved',
    why: 'an item whose objects another commit recorded anew would drop them instead of reading them again: a later change that no event announced would be lost',
    file: 'src/runs/worker.ts',
    edits: [{ find: '    if (tries >= MAX_REREADS) {', replace: '    if (tries >= 1) {' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*changes again after the event batch',
  },
  {
    name: 'verify-late-record',
    why: 'a listed state older than what an event recorded after the listing saw it would be recorded over the newer one (an empty file refusing a valid CSV)',
    file: 'src/runs/worker.ts',
    edits: [{ find: 'const guesses = [...given.removed.map((r) => r.key), ...(given.verify ?? [])]', replace: 'const guesses = [...given.removed.map((r) => r.key)]' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*listed state older',
  },
  {
    name: 'late-record-flag',
    why: 'the diff would not tell a record made after the listing saw the key, so the item would never look it up again',
    file: 'src/pipeline/diffSource.ts',
    edits: [{ find: 'previous.recordedAtMs >= opts.listedFromMs', replace: 'previous.recordedAtMs < 0' }],
    tests: ['test/diffSource.test.ts'],
    filter: 'younger than the listing',
  },
  {
    name: 'removal-lookup',
    why: "a listing's removal of a key an event recorded after the listing passed it would delete a file that exists",
    file: 'src/runs/worker.ts',
    edits: [{ find: 'const guesses = [...given.removed.map((r) => r.key), ...(given.verify ?? [])]', replace: 'const guesses = [...(given.verify ?? [])]' }],
    tests: ['test/interleavings.test.ts'],
    filter: "^interleavings \\(folder\\) .*listing's removal",
  },
  {
    name: 'run-ended-elsewhere',
    why: 'a run another instance ended (this one lost its lock) would be recorded as succeeded over that outcome, and its event batch would forget events it never committed',
    file: 'src/db/runs.ts',
    edits: [{ find: "     WHERE id = $1 AND status = 'running'`,\n    [id, end.progress", replace: '     WHERE id = $1`,\n    [id, end.progress' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*lost its lock',
  },
  {
    name: 'item-of-ended-run',
    why: 'an item of a run ended elsewhere would pass as done, so an event batch would forget events whose users it never committed',
    file: 'src/runs/worker.ts',
    edits: [{ find: "    if (out.kind === 'run-ended') throw new RunEndedError(item.runId);", replace: "    if (out.kind === 'run-ended') return null;" }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*lost its lock',
  },
  {
    name: 'removal-tombstone',
    why: 'a file recorded and removed while an item read it would be brought back by the item: "not recorded" before and after hides the removal',
    file: 'src/db/sourceFiles.ts',
    edits: [{ find: 'const removedSince = current === null && s.fingerprint === null && r?.removed != null && r.removed >= (s.atMs ?? 0);', replace: 'const removedSince = false;' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*recorded and removed',
  },
  {
    name: 'events-owe-only-changes',
    why: "an event batch that changed no user would make events owe a run's lag, and output.csv would be rewritten every EXPORT_INTERVAL during a run",
    file: 'src/runs/eventBatch.ts',
    edits: [{ find: '      if (run.st.counts.new + run.st.counts.updated > before.new + before.updated) await markEventsOweExport(db);', replace: '      await markEventsOweExport(db);' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*changed no user',
  },
  {
    name: 'export-busy-backoff',
    why: 'while another export holds its lock, every event loop would open an event run every 50 ms only to find the lock taken',
    file: 'src/runs/eventBatch.ts',
    edits: [{ find: "    if (await isLockHeld(db, 'export')) return", replace: '    if (false) return' }],
    tests: ['test/interleavings.test.ts'],
    filter: '^interleavings \\(folder\\) .*backs off',
  },
  {
    name: 'store-retry',
    why: 'one 503 SlowDown or answer cut short by an S3 server would skip an object, or fail the run when it hit a listing page or the upload of output.csv',
    file: 'src/storage/retry.ts',
    edits: [{ find: '          this.retried(op, reason);\n          return true;', replace: '          return false;' }],
    tests: ['test/storeRetry.test.ts'],
    filter: 'one run through',
  },
  {
    name: 'read-resume-offset',
    why: 'a read cut mid-body would go on from the first byte again, after the bytes already passed on: a CSV or photo whose start comes twice',
    file: 'src/storage/retry.ts',
    edits: [{ find: '() => reopen(offset)', replace: '() => reopen(0)' }],
    tests: ['test/storeRetry.test.ts'],
    filter: 'read cut mid-body',
  },
  {
    name: 'join-ending-run',
    why: 'a run asked for right as the last one recorded its outcome would join that finished run: POST /data?full=true answered with a report that is not full, and nothing reprocessed',
    file: 'src/runs/coordinator.ts',
    edits: [{ find: 'if (this.current && this.currentSlot.ending) {', replace: 'if (this.current === undefined) {' }],
    tests: ['test/service.test.ts'],
    filter: 'records its outcome starts anew',
  },
  {
    name: 'object-refusal',
    why: 'an object the server refuses to send (AccessDenied) would be reported as the store failing while reading it, not as refused with the server\'s reason',
    file: 'src/storage/s3Store.ts',
    edits: [{ find: "'AccessDenied', ", replace: '' }],
    tests: ['test/radosgw.test.ts'],
    filter: 'bucket policy denies',
    radosgw: true,
  },
  {
    name: 'event-key-encoding',
    why: 'radosgw\'s raw event keys would be URL-decoded as AWS\'s and MinIO\'s are: "100%+.csv" unparsable, "x%41+y.csv" read as "xA y.csv", and the users they name never processed',
    file: 'src/http/routes/events.ts',
    edits: [{ find: "  if (RAW_KEY_SOURCES.has(r.data.eventSource ?? '')) return { key };\n", replace: '' }],
    tests: ['test/events.test.ts'],
    filter: '^events \\(folder\\) .*decodes keys as each encodes them',
  },
  {
    name: 'api-bearer-only',
    why: 'the API would take Basic credentials, which a browser sends on its own once cached: another web page could read every user',
    file: 'src/http/auth.ts',
    edits: [{ find: 'api: opts.apiToken ? tokenAuth([opts.apiToken], { failures }) : local', replace: 'api: opts.apiToken ? tokenAuth([opts.apiToken], { failures, basic: true }) : local' }],
    tests: ['test/events.test.ts'],
    filter: '^events \\(folder\\) .*password of Basic',
  },
  {
    name: 'metrics-token-only-metrics',
    why: 'METRICS_TOKEN, which Prometheus holds, would open the whole API: whoever reads the scraper\'s secret could read every user and erase them',
    file: 'src/http/auth.ts',
    edits: [{ find: 'api: opts.apiToken ? tokenAuth([opts.apiToken], { failures }) : local', replace: 'api: opts.apiToken ? tokenAuth(metricsTokens, { failures }) : local' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: '^HTTP security METRICS_TOKEN opens GET /metrics',
  },
  {
    name: 'sec-fetch-site',
    why: 'without a token, an <img> or fetch on another page (another port of 127.0.0.1 included) could tell which users have photos, and have the service resize them',
    file: 'src/http/localOnly.ts',
    edits: [{ find: "if (FOREIGN_SITE.has(ctx.get('sec-fetch-site'))) {", replace: 'if (false) {' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: 'refuses cross-site and same-site requests',
  },
  {
    name: 'auth-failure-limit',
    why: 'anyone reaching the port could guess tokens as fast as the service answers',
    file: 'src/http/auth.ts',
    edits: [{ find: 'if (token !== null) failures?.failed(ctx.ip);', replace: '' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: 'answers 429 with Retry-After',
  },
  {
    name: 'trust-proxy',
    why: 'behind a reverse proxy every client shares its address, so one client\'s wrong tokens would lock out all of them even with TRUST_PROXY=true',
    file: 'src/http/app.ts',
    edits: [{ find: 'new Koa({ proxy: deps.trustProxy, maxIpsCount: 1 })', replace: 'new Koa({ proxy: false, maxIpsCount: 1 })' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: 'with TRUST_PROXY=true',
  },
  {
    name: 'proxy-last-entry',
    why: 'with TRUST_PROXY=true a client could forge the first X-Forwarded-For entry and escape the failed-auth limit (or lock out someone else\'s address)',
    file: 'src/http/app.ts',
    edits: [{ find: 'new Koa({ proxy: deps.trustProxy, maxIpsCount: 1 })', replace: 'new Koa({ proxy: deps.trustProxy })' }],
    tests: ['test/httpSecurity.test.ts'],
    filter: 'with TRUST_PROXY=true',
  },
  {
    name: 'csv-formulas',
    why: 'a name or file name such as =HYPERLINK(...) would run as a formula in the spreadsheet of whoever opens output.csv or the console\'s CSV',
    file: 'src/csv.ts',
    edits: [{ find: 'escape_formulas: opts.neutralizeFormulas,', replace: 'escape_formulas: false,' }],
    tests: ['test/csvFormulas.test.ts'],
    filter: '^formula cells on the folder backend',
  },
  {
    name: 'item-object-cap',
    why: 'one user with thousands of objects would land in one work item (one pg-boss job held 20,212 objects): an item that outlives its lease fails on every try, and every later run with it',
    file: 'src/pipeline/diffSource.ts',
    edits: [{ find: 'const capped = (size: number) => objects() > 0 && (objects() + 1 > caps.objects || bytes + size > caps.bytes);', replace: 'const capped = (size: number) => size < 0;' }],
    tests: ['test/diffSource.test.ts', 'test/hostileInput.test.ts'],
    filter: '^(batchByUser cuts a user with many objects|hostile input on the folder backend one user in 20,000 folders)',
  },
  {
    name: 'run-issues-cap',
    why: 'a hostile bucket would write run_issues without end (387,977 rows in one run): past RUN_ISSUES_LIMIT nothing would be left out',
    file: 'src/db/runs.ts',
    edits: [{ find: 'const kept = fresh.slice(0, Math.max(0, limit - rows[0]!.recorded));', replace: 'const kept = fresh;' }],
    tests: ['test/hostileInput.test.ts'],
    filter: '^hostile input on the folder backend a run records at most RUN_ISSUES_LIMIT',
  },
  {
    name: 'left-out-once-per-user',
    why: 'a user\'s one warning of a run, carried by every later item past RUN_ISSUES_LIMIT, would be counted in issues_left_out once per item',
    file: 'src/db/runs.ts',
    edits: [{ find: 'newlyDroppedUsers = rowCount ?? 0;', replace: 'newlyDroppedUsers = droppedUsers.length;' }],
    tests: ['test/commitItem.test.ts'],
    filter: 'left out once per run',
  },
  {
    name: 'one-warning-per-user',
    why: 'a user in many folders would get a "several CSVs" warning from every work item of the run, instead of one that later items replace',
    file: 'src/pipeline/resolveUser.ts',
    edits: [{ find: 'this one is ignored${rest}`, userId }];', replace: 'this one is ignored${rest}` }];' }],
    tests: ['test/hostileInput.test.ts'],
    filter: '^hostile input on the folder backend one user in 20,000 folders',
  },
  {
    name: 'pixel-budget-deadline',
    why: 'an image check would wait for room in the pixel budget forever while other decodes hold it, and its run with it',
    file: 'src/images/budget.ts',
    edits: [{ find: 'if (!this.waiting.includes(waiter) || !Number.isFinite(timeoutMs)) return;', replace: 'return;' }],
    tests: ['test/checkImage.test.ts'],
    filter: '^PixelBudget: a wait for room has a deadline',
  },
  {
    name: 'look-alike-ids',
    why: 'a file named 1000 followed by a zero-width character or a direction mark would be a second user that looks exactly like 1000, in the console and in output.csv',
    file: 'src/core/text.ts',
    edits: [{ find: 'const INVISIBLE = /[\\p{Default_Ignorable_Code_Point}\\u00ad\\u061c\\u200b-\\u200f\\u2060\\ufeff]/u;', replace: 'const INVISIBLE = /(?!)/u;' }],
    tests: ['test/hostileInput.test.ts'],
    filter: '^hostile input on the folder backend .*(zero-width|NFC)',
  },
  {
    name: 'event-backlog-limit',
    why: 'a flood of forged events would grow pending_events (and the WAL) without end: POST /events/s3 would never answer 503 past EVENT_BACKLOG_LIMIT',
    file: 'src/triggers/eventIntake.ts',
    edits: [{ find: 'return n >= limit;', replace: 'return false;' }],
    tests: ['test/eventFlood.test.ts'],
    filter: '^event flood \\(folder\\) past EVENT_BACKLOG_LIMIT',
  },
  {
    name: 'event-fairness',
    why: 'a file dropped after a flood of forged events would wait behind the whole backlog: batches would take only the oldest keys',
    file: 'src/db/events.ts',
    edits: [{ find: 'const newest = Math.floor(limit / 2);', replace: 'const newest = 0;' }],
    tests: ['test/eventFlood.test.ts'],
    filter: '^event flood \\(folder\\) takes a key recorded after a flood',
  },
  {
    name: 'event-first-seq',
    why: 'a key named again and again under a flood would move back into the middle of the backlog each time, where neither end of a batch takes it',
    file: 'src/db/events.ts',
    edits: [{ find: 'DO UPDATE SET seq = EXCLUDED.seq, received_at = now()', replace: 'DO UPDATE SET seq = EXCLUDED.seq, first_seq = EXCLUDED.seq, received_at = now()' }],
    tests: ['test/eventFlood.test.ts'],
    filter: 'a key named again keeps its place',
  },
  {
    name: 'webhook-concurrency',
    why: 'parallel webhook bodies would take every pooled connection and their bodies all the memory: GET /data would starve during a burst',
    file: 'src/http/routes/events.ts',
    edits: [{ find: 'if (inFlight >= limits.concurrency) {', replace: 'if (inFlight < 0) {' }],
    tests: ['test/eventFlood.test.ts'],
    filter: '^event flood \\(folder\\) reads at most EVENT_WEBHOOK_CONCURRENCY',
  },
  {
    name: 'forged-key-not-found',
    why: 'an event naming a key with a path part over 255 bytes would be reported as a rejected file (ENAMETOOLONG), with a key the sender chose',
    file: 'src/storage/folderStore.ts',
    edits: [{ find: 'if (this.keyProblem(key) !== null) return null;', replace: 'if (key === \'\') return null;' }],
    tests: ['test/eventFlood.test.ts'],
    filter: '^event flood \\(folder\\) refuses forged keys',
  },
  {
    name: 'scope-listing',
    why: 'POST /data?user_id= would pass every listed object on as inside its scope: counted as scanned, and each looked up again (only newest wins then keeps it from being reread)',
    file: 'src/pipeline/listSource.ts',
    edits: [{ find: '    if (!inScope(info.key, cls?.userId ?? null)) continue;\n', replace: '' }],
    tests: ['test/scope.test.ts'],
    filter: '^targeted runs and dry runs on the folder backend user_id rereads every file',
  },
  {
    name: 'scope-removals',
    why: 'a targeted run would take every recorded file outside its scope for removed: other users would lose their photos',
    file: 'src/db/sourceFiles.ts',
    edits: [
      { find: 'AND ($3::text IS NULL OR key >= $3) AND ($4::text IS NULL OR key < $4)\n               AND ($5::text[] IS NULL OR user_id = ANY($5))', replace: 'AND $3::text IS NOT DISTINCT FROM $3 AND $4::text IS NOT DISTINCT FROM $4 AND $5::text[] IS NOT DISTINCT FROM $5' },
    ],
    tests: ['test/scope.test.ts'],
    filter: '^targeted runs and dry runs on the folder backend .*(never treats files outside|removes only recorded keys)',
  },
  {
    name: 'scope-cover',
    why: 'a full or targeted reprocess asked for during a run that does not reread those files would join it, and silently not happen',
    file: 'src/core/scope.ts',
    edits: [{ find: '  if (!run.scope) return run.full || (!trigger.full && !trigger.scope);', replace: '  if (run) return true;' }],
    tests: ['test/scope.test.ts'],
    filter: '^targeted runs and dry runs on the folder backend a trigger during a run',
  },
  {
    name: 'dry-run-writes-nothing',
    why: 'POST /data?dry_run=true would carry the run out: users, source_files and output.csv written by a preview',
    file: 'src/http/routes/data.ts',
    edits: [{ find: '        if (query.dry_run) {', replace: '        if (query.dry_run && false) {' }],
    tests: ['test/scope.test.ts'],
    filter: '^targeted runs and dry runs on the folder backend dry run writes nothing',
  },
];

// Sabotages no test catches yet: left out of a full run, which must pass, but shown by it and
// run when named (npm run test:sabotage -- <name>), so they can be moved into the list above
// once a test catches them.
const KNOWN_GAPS: Array<Sabotage & { gap: string }> = [];

// ---------------------------------------------------------------------------------------------

const ROOT = path.resolve(import.meta.dirname, '..');
const ALL: Sabotage[] = [...SABOTAGES, ...KNOWN_GAPS];
// A sabotaged test that hangs is cut after this: testTimeout is 60 s, hookTimeout 120 s.
const RUN_TIMEOUT_MS = 5 * 60_000;

interface Options {
  names: string[];
  ref: string | null;
  baseline: boolean;
  check: boolean;
  list: boolean;
  keep: boolean;
  verbose: boolean;
  /** Entries run at once, each in its own copy. */
  jobs: number;
}

const USAGE = 'usage: npm run test:sabotage -- [name...] [--ref <commit>] [--baseline] [--check] [--list] [--jobs N] [--keep] [--verbose]';

function usage(message: string): never {
  console.error(`sabotage: ${message}`);
  console.error(USAGE);
  console.error(`names: ${SABOTAGES.map((s) => s.name).join(', ')}; known gaps, run only when named: ${KNOWN_GAPS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { names: [], ref: null, baseline: false, check: false, list: false, keep: false, verbose: false, jobs: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--ref') {
      const ref = argv[++i];
      if (!ref) usage('--ref needs a commit');
      o.ref = ref;
    } else if (a.startsWith('--ref=')) o.ref = a.slice('--ref='.length);
    else if (a === '--baseline') o.baseline = true;
    else if (a === '--check') o.check = true;
    else if (a === '--list') o.list = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--jobs' || a.startsWith('--jobs=')) {
      const n = Number(a === '--jobs' ? argv[++i] : a.slice('--jobs='.length));
      if (!Number.isInteger(n) || n < 1) usage('--jobs needs a whole number of at least 1');
      o.jobs = n;
    }
    else if (a === '-h' || a === '--help') {
      console.log(`${USAGE}\nnames: ${SABOTAGES.map((s) => s.name).join(', ')}\nknown gaps, run only when named: ${KNOWN_GAPS.map((s) => s.name).join(', ')}\nsee docs/testing.md`);
      process.exit(0);
    }
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else o.names.push(a);
  }
  const unknown = o.names.filter((n) => !ALL.some((s) => s.name === n));
  if (unknown.length > 0) usage(`unknown sabotage ${unknown.join(', ')}`);
  return o;
}

function git(args: string[]): string {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** Fills dir with the repository's files and links node_modules; says what it copied. */
function makeCopy(dir: string, ref: string | null, scratch: string): string {
  let what: string;
  if (ref !== null) {
    const commit = git(['rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`]).trim();
    const tar = path.join(scratch, 'tree.tar');
    git(['archive', '--format=tar', `--output=${tar}`, commit]);
    const r = spawnSync('tar', ['-xf', tar, '-C', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tar: ${r.stderr.trim()}`);
    fs.rmSync(tar);
    what = `commit ${commit.slice(0, 12)}`;
  } else {
    const files = git(['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--deduplicate']).split('\0').filter(Boolean);
    let n = 0;
    for (const f of files) {
      const from = path.join(ROOT, f);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(from);
      } catch {
        continue; // tracked, but deleted in the working tree
      }
      const to = path.join(dir, f);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(from), to);
      else if (st.isFile()) fs.copyFileSync(from, to);
      else continue;
      n++;
    }
    what = `working tree (${n} files)`;
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return what;
}

/** The file's text with the entry's edits made, or why they cannot be made. */
function sabotaged(original: string, edits: Edit[]): { text: string } | { problem: string } {
  const at: Array<{ index: number; edit: Edit }> = [];
  for (const edit of edits) {
    const first = original.indexOf(edit.find);
    let count = 0;
    for (let i = first; i !== -1; i = original.indexOf(edit.find, i + 1)) count++;
    if (count !== 1) return { problem: `${show(edit.find)} is found ${count === 0 ? 'nowhere' : `${count} times`}, not once` };
    at.push({ index: first, edit });
  }
  // From the end, so earlier positions stay valid; each matched against the original.
  at.sort((a, b) => b.index - a.index);
  let text = original;
  for (const { index, edit } of at) text = text.slice(0, index) + edit.replace + text.slice(index + edit.find.length);
  return { text };
}

const show = (s: string) => `\`${s.trim().replace(/\s*\n\s*/g, ' ⏎ ') || '(nothing)'}\``;
const describeEdits = (s: Sabotage) => s.edits.map((e) => `${show(e.find)} → ${show(e.replace)}`).join('; ');
const describeTests = (s: Sabotage) => `${s.tests.join(' ')}${s.filter !== undefined ? ` -t "${s.filter}"` : ''}`;

interface TestRun {
  name: string;
  file: string;
  status: string;
  /** A failed test's first line of failure: shows whether it failed for the edit's reason. */
  why?: string;
}

interface VitestResult {
  seconds: number;
  code: number | null;
  timedOut: boolean;
  /** Tests that ran, passed or failed. */
  ran: TestRun[];
  /** Test files that failed with no test to show for it: they did not load. */
  loadErrors: string[];
  /** Whether the JSON report was written at all. */
  reported: boolean;
  log: string;
}

interface VitestJson {
  testResults?: Array<{
    name: string;
    status: string;
    message?: string;
    assertionResults?: Array<{ fullName: string; status: string; failureMessages?: string[] }>;
  }>;
}

const withoutKey = (env: NodeJS.ProcessEnv, key: string) => Object.fromEntries(Object.entries(env).filter(([k]) => k !== key));

/** The vitest processes running, one per job. */
const children = new Set<ReturnType<typeof spawn>>();
/** Set on SIGINT or SIGTERM: no further vitest is started. */
let stopping = false;

/**
 * Stops the running vitest and everything it started (workers, PostgreSQL), which share its own
 * process group: SIGINT, as Ctrl-C in a terminal (PostgreSQL then shuts down at once), and SIGKILL
 * if it is not gone 15 s later. What they leave on disk is under the scratch folder's tmp/.
 */
async function stopChild(c: ReturnType<typeof spawn>): Promise<void> {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  const pid = c.pid;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
  signal('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 15_000)));
  if ((await Promise.race([closed, late])) === 'late') signal('SIGKILL');
  clearTimeout(timer);
  // PostgreSQL's postmaster, in the group, may outlive vitest by a moment while it shuts down.
  for (let i = 0; i < 100 && groupAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function runVitest(copy: string, scratch: string, label: string, s: Sabotage, verbose: boolean): Promise<VitestResult> {
  const report = path.join(scratch, `${label}.json`);
  fs.rmSync(report, { force: true });
  const args = [
    path.join(copy, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    ...s.tests,
    ...(s.filter !== undefined ? ['-t', s.filter] : []),
    // Leaves the results cache in the linked node_modules to the real runs.
    '--no-cache',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
  ];
  if (stopping) throw new Error('stopped');
  const started = performance.now();
  const log: Buffer[] = [];
  let timedOut = false;
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: copy,
      // As `npm test` runs it; plain text for the log (FORCE_COLOR turns colour on whatever its value).
      env: {
        ...withoutKey(process.env, 'FORCE_COLOR'),
        NODE_OPTIONS: '--openssl-legacy-provider',
        NO_COLOR: '1',
        TMPDIR: path.join(scratch, 'tmp'),
        ...(s.radosgw ? {} : { USERJOIN_TEST_RADOSGW: 'off' }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const take = (b: Buffer) => {
      log.push(b);
      if (verbose) process.stdout.write(b);
    };
    children.add(child);
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const timer = setTimeout(() => {
      timedOut = true;
      void stopChild(child);
    }, RUN_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (c) => {
      clearTimeout(timer);
      children.delete(child);
      resolve(c);
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const text = Buffer.concat(log).toString('utf8');
  fs.writeFileSync(path.join(scratch, `${label}.log`), text);
  const result: VitestResult = { seconds, code, timedOut, ran: [], loadErrors: [], reported: false, log: text };
  if (!fs.existsSync(report)) return result;
  const json = JSON.parse(fs.readFileSync(report, 'utf8')) as VitestJson;
  result.reported = true;
  for (const file of json.testResults ?? []) {
    const rel = path.relative(copy, file.name);
    const ran = (file.assertionResults ?? []).filter((t) => t.status === 'passed' || t.status === 'failed');
    for (const t of ran) {
      const why = t.failureMessages?.[0]?.split('\n')[0]?.trim();
      result.ran.push({ name: t.fullName, file: rel, status: t.status, ...(why ? { why: why.length > 200 ? `${why.slice(0, 199)}…` : why } : {}) });
    }
    if (file.status === 'failed' && ran.length === 0) result.loadErrors.push(`${rel}: ${(file.message ?? '').split('\n')[0]}`);
  }
  return result;
}

type Verdict = { kind: 'caught' | 'survived' | 'passed' } | { kind: 'error'; problem: string };

/**
 * Sabotaged: caught when a test failed, survived when they all ran and passed. Unsabotaged
 * (baseline): they must all run and pass. Anything else is an error, never a catch: a filter
 * that matches no test (vitest then exits 0, every test skipped), code that does not load.
 */
const DATABASE_TROUBLE = /too many clients|ECONNREFUSED|ECONNRESET|terminating connection|the database system is (starting up|shutting down)|Connection terminated unexpectedly/i;

function judge(r: VitestResult, tests: string[], sabotage: boolean): Verdict {
  if (r.timedOut) return { kind: 'error', problem: `vitest did not finish within ${RUN_TIMEOUT_MS / 1000} s` };
  if (!r.reported) return { kind: 'error', problem: `vitest wrote no report (exit ${r.code})` };
  if (r.loadErrors.length > 0) return { kind: 'error', problem: `a test file did not load: ${r.loadErrors.join('; ')}` };
  const failed = r.ran.filter((t) => t.status === 'failed');
  // The shared PostgreSQL failing is no catch: a test failing on it says nothing of the edit.
  const database = failed.find((t) => DATABASE_TROUBLE.test(t.why ?? ''));
  if (database) return { kind: 'error', problem: `the tests' PostgreSQL failed, not the sabotaged code: ${database.why ?? ''}` };
  if (failed.length > 0) return sabotage ? { kind: 'caught' } : { kind: 'error', problem: `tests fail without the sabotage: ${failed.map((t) => t.name).join('; ')}` };
  const idle = tests.filter((f) => !r.ran.some((t) => t.file === f));
  if (idle.length > 0) return { kind: 'error', problem: `no test ran in ${idle.join(', ')}: the filter matches none (renamed?)` };
  if (r.code !== 0) return { kind: 'error', problem: `vitest exited ${r.code} with every test passing (an unhandled error?)` };
  return { kind: sabotage ? 'survived' : 'passed' };
}

function logTail(r: VitestResult, lines = 25): string {
  return r.log.trimEnd().split('\n').slice(-lines).map((l) => `        | ${l}`).join('\n');
}

/** The list as a Markdown table, as in docs/testing.md. */
function printList(): void {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  console.log('| name | file | edit | caught by | what it would let through |');
  console.log('|---|---|---|---|---|');
  for (const s of ALL) {
    const by = KNOWN_GAPS.includes(s as Sabotage & { gap: string })
      ? '**nothing yet** (known gap)'
      : s.tests.map((t) => `\`${t}\``).join(', ') + (s.filter !== undefined ? ` -t \`${s.filter}\`` : '');
    console.log(`| ${s.name} | \`${s.file}\` | ${cell(describeEdits(s))} | ${cell(by)} | ${cell(s.why)} |`);
  }
}

let postgres: EmbeddedServer | null = null;

/** Stops the shared PostgreSQL; one that died already never says it stopped, so the wait is bounded. */
async function stopPostgres(): Promise<void> {
  const server = postgres;
  postgres = null;
  if (!server) return;
  let timer: NodeJS.Timeout | undefined;
  const bounded = new Promise<void>((resolve) => (timer = setTimeout(resolve, 10_000)));
  await Promise.race([server.stop().catch((err: unknown) => console.error(`sabotage: could not stop PostgreSQL: ${String(err)}`)), bounded]);
  clearTimeout(timer);
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.list) {
    printList();
    return 0;
  }
  const chosen = opts.names.length > 0 ? ALL.filter((s) => opts.names.includes(s.name)) : opts.check ? ALL : SABOTAGES;
  const t0 = performance.now();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'userjoin-sabotage-'));
  const copy = path.join(scratch, 'repo');
  fs.mkdirSync(copy);
  // The tests' temporary files (PostgreSQL's data, stores) go here too, so that they go with the
  // rest even when vitest is stopped before its teardown. Like /tmp: the embedded PostgreSQL runs
  // as its own user when we are root.
  fs.chmodSync(scratch, 0o755);
  fs.mkdirSync(path.join(scratch, 'tmp'));
  fs.chmodSync(path.join(scratch, 'tmp'), 0o1777);
  const cleanUp = () => {
    if (opts.keep) return;
    try {
      fs.rmSync(scratch, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (err) {
      console.error(`sabotage: could not remove ${scratch}: ${String(err)}`);
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    // Kept while stopping: a second signal (tsx relays the first one again) must not kill us half-way.
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      console.log(`\nsabotage: ${sig}, stopping vitest`);
      void Promise.all([...[...children].map(stopChild), stopPostgres()]).finally(() => {
        cleanUp();
        process.exit(130);
      });
    });
  }
  try {
    const what = makeCopy(copy, opts.ref, scratch);
    console.log(`sabotage: ${chosen.length} ${chosen.length === 1 ? 'entry' : 'entries'}, in a copy of the ${what} at ${copy}`);
    if (opts.names.length === 0 && !opts.check) {
      for (const g of KNOWN_GAPS) console.log(`  not run: ${g.name} (${g.file}), a known gap: ${g.gap}`);
    }

    // Every edit is checked before any test runs, so a stale entry shows at once.
    const results = new Map<string, { verdict: Verdict; seconds: number; failed: number; ran: number }>();
    const texts = new Map<string, { original: string; sabotaged: string }>();
    for (const s of chosen) {
      const file = path.join(copy, s.file);
      const original = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
      const made = original === null ? { problem: 'the file does not exist' } : sabotaged(original, s.edits);
      if ('problem' in made) {
        results.set(s.name, { verdict: { kind: 'error', problem: `cannot edit ${s.file}: ${made.problem}` }, seconds: 0, failed: 0, ran: 0 });
        console.log(`  ✗ ${s.name}: cannot edit ${s.file}: ${made.problem}`);
      } else texts.set(s.name, { original: original!, sabotaged: made.text });
    }
    if (opts.check) {
      console.log(`${texts.size} of ${chosen.length} entries' edits apply (each text found exactly once); no test run`);
      return texts.size === chosen.length ? 0 : 1;
    }

    // One PostgreSQL for every run of vitest (each test makes databases of its own in it):
    // starting one per entry cost about 2 s each.
    const pgDir = fs.mkdtempSync(path.join(scratch, 'tmp', 'pg-'));
    fs.chmodSync(pgDir, 0o755);
    // Two entries at once, each with test files side by side, each with pools of its own.
    postgres = await startEmbeddedPostgres({ dataDir: pgDir, port: 0, maxConnections: 400 });
    process.env[SHARED_POSTGRES_ENV] = postgres.url;

    if (opts.baseline) {
      const seen = new Map<string, Verdict>();
      for (const s of chosen.filter((x) => texts.has(x.name))) {
        const key = JSON.stringify([s.tests, s.filter]);
        let verdict = seen.get(key);
        if (!verdict) {
          const r = await runVitest(copy, scratch, `baseline-${s.name}`, s, opts.verbose);
          if (stopping) return 130;
          verdict = judge(r, s.tests, false);
          seen.set(key, verdict);
          console.log(`baseline ${describeTests(s)}: ${verdict.kind === 'error' ? verdict.problem : `${r.ran.length} passed`} (${r.seconds.toFixed(1)} s)`);
          if (verdict.kind === 'error') console.log(logTail(r));
        }
        if (verdict.kind === 'error') {
          texts.delete(s.name);
          results.set(s.name, { verdict: { kind: 'error', problem: `baseline, without the sabotage: ${verdict.problem}` }, seconds: 0, failed: 0, ran: 0 });
        }
      }
    }

    // Entries run opts.jobs at a time, each job in a copy of its own; an entry's lines are
    // printed together once it is over.
    const queue = chosen.map((s, k) => ({ s, n: k + 1 })).filter(({ s }) => texts.has(s.name));
    const copies = [copy];
    for (let k = 1; k < Math.min(opts.jobs, queue.length); k++) {
      const dir = path.join(scratch, `repo${k}`);
      fs.mkdirSync(dir);
      makeCopy(dir, opts.ref, scratch);
      copies.push(dir);
    }
    const runOne = async (jobCopy: string, s: Sabotage, n: number) => {
      const t = texts.get(s.name)!;
      const file = path.join(jobCopy, s.file);
      const lines = [`\n[${n}/${chosen.length}] ${s.name}  ${s.file}`, `      edit: ${describeEdits(s)}`, `      runs: ${describeTests(s)}`];
      fs.writeFileSync(file, t.sabotaged);
      let r: VitestResult;
      try {
        r = await runVitest(jobCopy, scratch, s.name, s, opts.verbose);
      } finally {
        fs.writeFileSync(file, t.original);
      }
      if (stopping) return;
      const verdict = judge(r, s.tests, true);
      results.set(s.name, { verdict, seconds: r.seconds, failed: r.ran.filter((x) => x.status === 'failed').length, ran: r.ran.length });
      for (const test of r.ran) {
        lines.push(`      ${test.status === 'failed' ? '✗ failed' : '✓ passed'}  ${test.name}`);
        if (test.why) lines.push(`                ${test.why}`);
      }
      const label =
        verdict.kind === 'caught' ? 'caught' : verdict.kind === 'error' ? `ERROR: ${verdict.problem}` : 'SURVIVED: every test above passed with the edit made';
      lines.push(`      ${label}  (${r.seconds.toFixed(1)} s)`);
      if (verdict.kind === 'error') lines.push(logTail(r));
      console.log(lines.join('\n'));
    };
    await Promise.all(
      copies.map(async (jobCopy) => {
        for (let next = queue.shift(); next && !stopping; next = queue.shift()) await runOne(jobCopy, next.s, next.n);
      }),
    );
    if (stopping) return 130;

    const width = Math.max(...chosen.map((s) => s.name.length));
    console.log(`\n${'sabotage'.padEnd(width)}  result    seconds  tests failed  file`);
    for (const s of chosen) {
      const { verdict, seconds, failed, ran } = results.get(s.name)!;
      const result = verdict.kind === 'caught' ? 'caught' : verdict.kind === 'survived' ? 'SURVIVED' : 'ERROR';
      console.log(`${s.name.padEnd(width)}  ${result.padEnd(8)}  ${seconds.toFixed(1).padStart(7)}  ${`${failed} of ${ran}`.padEnd(12)}  ${s.file}`);
    }
    const of = (kind: Verdict['kind']) => chosen.filter((s) => results.get(s.name)!.verdict.kind === kind);
    const [caught, survived, errors] = [of('caught'), of('survived'), of('error')];
    console.log(`\n${caught.length} caught, ${survived.length} survived, ${errors.length} errors; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
    for (const s of survived) console.log(`SURVIVED ${s.name}: ${describeTests(s)} passed with ${describeEdits(s)} in ${s.file}, so ${s.why}`);
    for (const s of errors) {
      const v = results.get(s.name)!.verdict;
      if (v.kind === 'error') console.log(`ERROR ${s.name}: ${v.problem}`);
    }
    if (opts.keep) console.log(`kept: ${scratch} (the copy in repo/, vitest logs and JSON reports beside it)`);
    return caught.length === chosen.length ? 0 : 1;
  } finally {
    await stopPostgres();
    cleanUp();
  }
}

process.exitCode = await main();
