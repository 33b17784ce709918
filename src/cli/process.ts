import { parseArgs } from 'node:util';
import type { z } from 'zod';
import cliProgress from 'cli-progress';
import { openResources } from '../resources.js';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import type { RunCounts, RunProgress, RunReport } from '../core/model.js';
import { RunFailedError, runPipeline } from '../runs/fullRun.js';
import { dryRun } from '../runs/dryRun.js';
import type { RunScope } from '../core/scope.js';
import { MAX_SCOPE_USERS } from '../core/scope.js';
import { prefixParam, userIdsParam } from '../http/params.js';

const USAGE = `usage: npm run process -- [--full] [--user-id ID]... [--prefix P] [--dry-run] [--json]

Processes the source bucket once: joins user CSVs and images into PostgreSQL and
<res bucket>/output.csv. Configuration comes from the environment (see docs/configuration.md).

  --full        reprocess every object, not only new or changed ones, and rewrite output.csv
  --user-id ID  reprocess only this user's files, in any folder (repeat it, at most ${MAX_SCOPE_USERS})
  --prefix P    reprocess only the objects whose key starts with P
  --dry-run     print what the run would do (JSON), and write nothing
  --json        print the run report as JSON on stdout
  --help        show this help

Exit codes: 0 run completed (even with rejected files), 1 storage or database failure,
2 bad configuration or arguments, 75 another run is in progress.`;

const EXIT = { ok: 0, failed: 1, usage: 2, busy: 75 } as const;

export async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        full: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
        'user-id': { type: 'string', multiple: true },
        prefix: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  let scope: RunScope | null;
  try {
    scope = scopeOf(args['user-id'], args.prefix);
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return EXIT.ok;
  }

  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return EXIT.usage;
    }
    throw err;
  }
  // A person at a terminal wants the summary, not every info line; LOG_LEVEL still wins.
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', { cli: 'process' });

  const bar = process.stderr.isTTY && !args.json ? new ProgressBar() : null;
  let app;
  try {
    app = await openResources(config, log, { waitMs: 0 });
  } catch (err) {
    console.error(`cannot start: ${(err as Error).message}`);
    return EXIT.failed;
  }
  try {
    const deps = { db: app.database.pool, store: app.store, config, log, budget: app.pixelBudget };
    if (args['dry-run']) {
      process.stdout.write(JSON.stringify(await dryRun(deps, { full: args.full, scope }), null, 2) + '\n');
      return EXIT.ok;
    }
    const outcome = await runPipeline(deps, { trigger: 'cli', full: args.full, scope, onProgress: bar ? (p, c) => bar.update(p, c) : undefined });
    bar?.stop();
    if (outcome.kind === 'busy') {
      console.error(`another run is in progress${outcome.runId ? ` (run #${outcome.runId})` : ''}; try again when it ends`);
      return EXIT.busy;
    }
    process.stdout.write(args.json ? JSON.stringify(outcome.report, null, 2) + '\n' : summarize(outcome.report, config.resBucket));
    return EXIT.ok;
  } catch (err) {
    bar?.stop();
    if (err instanceof RunFailedError) console.error(`run #${err.runId} failed: ${err.message}`);
    else console.error(`run failed: ${(err as Error).message}`);
    return EXIT.failed;
  } finally {
    await app.close();
  }
}

/** --user-id and --prefix, checked as POST /data checks user_id and prefix. */
function scopeOf(userIds: string[] | undefined, prefix: string | undefined): RunScope | null {
  const check = <S extends z.ZodType>(name: string, schema: S, v: unknown): z.output<S> => {
    const r = schema.safeParse(v);
    if (!r.success) throw new Error(`--${name}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    return r.data;
  };
  const ids = userIds === undefined ? null : [...new Set(check('user-id', userIdsParam(MAX_SCOPE_USERS, ''), userIds))];
  const p = prefix === undefined ? null : check('prefix', prefixParam(''), prefix);
  return ids || p ? { userIds: ids, prefix: p } : null;
}

/** The human summary printed after a run. */
export function summarize(r: RunReport, resBucket: string): string {
  const c = r.counts;
  const secs = r.finished_at ? ((Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000).toFixed(1) : '?';
  const lines = [
    `run #${r.id} ${r.status} in ${secs}s${r.full ? ' (full)' : ''}${r.scope ? ` (only ${scopeText(r.scope)})` : ''}`,
    `  objects: ${c.scanned} scanned, ${c.read} read, ${c.rejected} rejected, ${c.ignored} ignored`,
    `  users:   ${c.new} new, ${c.updated} updated, ${c.unchanged} unchanged`,
    `  output:  ${resBucket}/output.csv ${r.output_written ? 'written' : 'already up to date'}`,
  ];
  if (r.rejected.length > 0) {
    lines.push('  rejected files:');
    for (const i of r.rejected) lines.push(`    ${i.key}: ${i.reason}`);
  }
  if (r.warnings.length > 0) {
    lines.push('  warnings:');
    for (const i of r.warnings) lines.push(`    ${i.key}: ${i.reason}`);
  }
  if (r.issues_left_out > 0) lines.push(`  ${r.issues_left_out} more rejected files and warnings not listed (over RUN_ISSUES_LIMIT); counted above`);
  return lines.join('\n') + '\n';
}

class ProgressBar {
  // No bar to fill: the listing streams alongside processing, so the total is known only at
  // the end. A live counter line instead.
  private readonly bar = new cliProgress.SingleBar(
    { format: '{phase}: {value} users done | {scanned} files listed | {rejected} rejected', hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  private started = false;

  update(p: RunProgress, c: RunCounts): void {
    if (p.phase !== 'processing') return;
    // Only worth drawing for long runs; a small bucket finishes before a counter means anything.
    if (!this.started) {
      if (p.done < 500) return;
      this.bar.start(0, 0, { phase: p.phase, scanned: 0, rejected: 0 });
      this.started = true;
    }
    this.bar.update(p.done, { phase: p.phase, scanned: c.scanned, rejected: c.rejected });
  }

  stop(): void {
    if (this.started) this.bar.stop();
  }
}

const scopeText = (s: NonNullable<RunReport['scope']>) =>
  [s.user_ids && `user_id ${s.user_ids.join(', ')}`, s.prefix !== null && `keys under ${JSON.stringify(s.prefix)}`].filter(Boolean).join(' and ');
