// The alert rules of config/prometheus/ against the real service: every metric they name is
// in its /metrics, and the gauges added for them say what the rules assume. promtool runs the
// rules' own unit tests where it is installed (always in CI).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { recordEvents } from '../src/db/events.js';
import { readClusterStats } from '../src/db/stats.js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend, tempDir } from './support/stores.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const DIR = path.join(ROOT, 'config/prometheus');
const TOKEN = 'alert-rules-test-token-0123';
const PROMTOOL_HINT = 'apt-get install -y --no-install-recommends prometheus (Debian; it includes promtool)';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (parseYaml(readFileSync(path.join(DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);

/** The userjoin_ metric names an expression reads (recording rules' own names have a colon). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\buserjoin_[a-z0-9_]+/g)].map((m) => m[0]);
}

/** Every name a scrape can be queried by: samples, and each declared metric (a labelled one may have none yet) with its histogram series. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      const [, name, kind] = type;
      names.add(name!);
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name! + s);
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(name! + s);
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(/^[a-zA-Z_:][\w:]*/.exec(line)![0]);
    }
  }
  return names;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    ),
  );
}

function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('config/prometheus/alerts.yml', () => {
  it('gives every alert a severity and a runbook section in docs/operations.md', () => {
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    const runbook = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    const headings = anchors(runbook);
    for (const rule of alerts) {
      expect(rule.labels?.severity, rule.alert).toBeOneOf(['critical', 'warning']);
      expect(rule.annotations?.runbook_url, rule.alert).toBe(`docs/operations.md#${rule.alert!.toLowerCase()}`);
      expect(headings, rule.alert).toContain(rule.alert!.toLowerCase());
    }
    // One section per alert, and nothing else under the Alerts heading.
    expect([...runbook.matchAll(/^### (.+)$/gm)].map((m) => m[1])).toEqual(alerts.map((r) => r.alert));
  });
});

describe('the metrics the alert rules read', () => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  const scrape = async () => {
    const res = await svc.get('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    return res.text();
  };

  beforeAll(async () => {
    backend = await startFolderBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, { API_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  it("all exist in a fresh service's /metrics, before any run", async () => {
    const exposed = exposedNames(await scrape());
    const named = [...new Set(rules.flatMap((r) => metricNames(r.expr)))];
    expect(named.length).toBeGreaterThanOrEqual(7);
    expect(named.filter((n) => !exposed.has(n))).toEqual([]);
    // A process's first failed run must be seen by increase(): its series exists, at 0, from the start.
    expect(sample(await scrape(), 'userjoin_runs_total', '{status="failed",trigger="schedule"}')).toBe(0);
  });

  it('userjoin_dependency_up says which dependency does not answer, as /health does', async () => {
    const up = (text: string, dependency: string) => sample(text, 'userjoin_dependency_up', `{dependency="${dependency}"}`);
    let text = await scrape();
    expect([up(text, 'database'), up(text, 'store')]).toEqual([1, 1]);
    // The folder store's bucket gone: the store does not answer.
    const bucket = path.join((backend.config as { dir: string }).dir, svc.srcBucket);
    await fs.rename(bucket, `${bucket}.away`);
    try {
      text = await scrape();
      expect([up(text, 'database'), up(text, 'store')]).toEqual([1, 0]);
      expect(await (await svc.get('/health')).json()).toMatchObject({ checks: { database: 'ok', store: 'unavailable' } });
    } finally {
      await fs.rename(`${bucket}.away`, bucket);
    }
    expect(up(await scrape(), 'store')).toBe(1);
  });

  it('userjoin_events_oldest_pending_age_seconds is how long the longest-waiting key has waited since its last event', async () => {
    // A database no service works on, so no event loop takes the keys meanwhile.
    const quiet = await createTestDatabase();
    try {
      const metrics = new Metrics((timeoutMs) => readClusterStats(quiet.pool, timeoutMs), silentLogger());
      const age = async () => sample(await metrics.text(), 'userjoin_events_oldest_pending_age_seconds');
      expect(await age()).toBe(0);
      await recordEvents(quiet.pool, ['old.csv', 'new.csv']);
      await quiet.pool.query(`UPDATE pending_events SET received_at = now() - interval '90 seconds' WHERE key = 'old.csv'`);
      // A new Metrics reads the figures at once (each caches them for 10 s).
      const fresh = new Metrics((timeoutMs) => readClusterStats(quiet.pool, timeoutMs), silentLogger());
      const seconds = sample(await fresh.text(), 'userjoin_events_oldest_pending_age_seconds')!;
      expect(seconds).toBeGreaterThanOrEqual(90);
      expect(seconds).toBeLessThan(150);
      expect(sample(await fresh.text(), 'userjoin_events_pending')).toBe(2);
    } finally {
      await quiet.drop();
    }
  });
});

const promtool = (process.env.PATH ?? '').split(path.delimiter).some((d) => existsSync(path.join(d, 'promtool')));
const skipPromtool = !promtool && process.env.CI !== 'true';
if (skipPromtool) console.warn(`\n⚠ skipping the promtool cases: promtool is not installed; install it with: ${PROMTOOL_HINT}\n`);

describe.skipIf(skipPromtool)('promtool', () => {
  const run = promisify(execFile);
  const promtoolRun = (...args: string[]) => {
    if (!promtool) throw new Error(`promtool is not installed, and CI must run these cases; install it with: ${PROMTOOL_HINT}`);
    return run('promtool', args, { cwd: ROOT });
  };

  it('passes the rules and their unit tests (alerts.test.yml)', async () => {
    await promtoolRun('check', 'rules', 'config/prometheus/alerts.yml');
    const { stdout } = await promtoolRun('test', 'rules', 'config/prometheus/alerts.test.yml');
    expect(stdout).toContain('SUCCESS');
  });

  it("checks prometheus.yml, with a token file in place of compose's secret", async () => {
    const dir = await tempDir('userjoin-prometheus-');
    try {
      const config = readFileSync(path.join(DIR, 'prometheus.yml'), 'utf8');
      expect(config).toContain('credentials_file: /run/secrets/metrics_token');
      await fs.writeFile(path.join(dir, 'metrics_token'), TOKEN);
      await fs.writeFile(path.join(dir, 'prometheus.yml'), config.replace('/run/secrets/metrics_token', path.join(dir, 'metrics_token')));
      await fs.copyFile(path.join(DIR, 'alerts.yml'), path.join(dir, 'alerts.yml'));
      await promtoolRun('check', 'config', path.join(dir, 'prometheus.yml'));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
