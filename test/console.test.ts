import fs from 'node:fs/promises';
import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tryAcquireLock } from '../src/db/locks.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import { put, userCsv, waitFor } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import { chromiumInstalled, CHROMIUM_PATH, collectPageErrors, launchChromium } from './support/browser.js';
import type { Person } from './support/people.js';
import { objectsOf, people, troubleObjects } from './support/people.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { startFolderBackend, startS3Backend } from './support/stores.js';

// Real Chromium (Debian's package) against the real service. Without Chromium these tests
// are skipped with a notice, except in CI (CI=true), where .ci/run installs it and a missing
// browser fails them.
const runBrowserTests = chromiumInstalled() || process.env.CI === 'true';
if (!runBrowserTests) console.warn(`console.test.ts: skipped, no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium)`);

// The browser's globals, as far as the code passed to page.evaluate and waitForFunction uses
// them: that code runs in the page, while this file is compiled for Node, without the DOM.
interface PageElement {
  id: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
  hasAttribute(name: string): boolean;
  matches(selector: string): boolean;
  closest(selector: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
  complete?: boolean;
  naturalWidth?: number;
  src?: string;
}
declare const document: PageElement & { activeElement: PageElement | null };
declare const location: { hash: string };
declare const window: { addEventListener(type: string, listener: () => void, opts: { once: boolean }): void };
declare function getComputedStyle(el: PageElement): { getPropertyValue(name: string): string };
declare const sessionStorage: { getItem(key: string): string | null };

const TOKEN = 'console-test-token-6b1f0e';
// Playwright's waits poll until this deadline; nothing here sleeps.
const WAIT_MS = 20_000;

interface Run {
  id: number;
  status: string;
  full: boolean;
  started_at: string;
  finished_at: string | null;
  counts: { new: number; updated: number; rejected: number };
}

// The token variant runs on a schedule that never comes due during the tests (1 January, 00:00).
const YEARLY = '0 0 1 1 *';

describe.runIf(runBrowserTests).each([
  ['without a token (loopback)', null, startFolderBackend],
  ['with a token', TOKEN, startS3Backend],
] as const)('operator console %s', (_label, token, startBackend) => {
  let browser: Browser;
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let store: ObservedStore;
  let persons: Person[];
  let context: BrowserContext | null = null;
  let errors: string[] = [];
  /** Every URL the page asked for. */
  let requested: string[] = [];

  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(svc.url + path, { ...init, headers: { ...auth } });
    expect(res.status, path).toBeLessThan(300);
    return (await res.json()) as T;
  };
  /** At least one run has processed the bucket (a run with nothing new is quick). */
  const ensureRun = () => api<Run>('/data?wait=true', { method: 'POST' });

  /** A fresh tab (so a fresh sessionStorage) on the console, signed in when a token is needed. */
  async function openConsole(hash = '', colorScheme: 'light' | 'dark' = 'light', prepare?: (page: Page) => Promise<void>): Promise<Page> {
    context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true, colorScheme });
    const page = await context.newPage();
    await prepare?.(page);
    errors = collectPageErrors(page);
    requested = [];
    page.on('request', (r) => requested.push(r.url()));
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(`${svc.url}/${hash}`);
    if (token) {
      await page.waitForSelector('#token-dialog[open]');
      await page.fill('#token-input', token);
      await page.press('#token-input', 'Enter');
      await page.waitForSelector('#token-dialog:not([open])', { state: 'attached' });
    }
    return page;
  }

  beforeAll(async () => {
    browser = await launchChromium();
    backend = await startBackend();
    db = await createTestDatabase();
    svc = await startTestService(backend, db, token ? { API_TOKEN: token, SCHEDULE: YEARLY } : {}, { wrapStore: (s) => (store = new ObservedStore(s)) });
    persons = await people(36, { seed: 7 });
    for (const [key, body] of [...objectsOf(persons), ...troubleObjects()]) await put(backend, svc.srcBucket, key, body);
  });
  afterEach(async () => {
    await context?.close();
    context = null;
    expect(errors, 'errors in the page').toEqual([]);
    // The token goes in a header, never in a URL.
    if (token) expect(requested.filter((u) => u.includes(token))).toEqual([]);
  });
  afterAll(async () => {
    await browser?.close();
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  it('loads the console, self-contained, asking for the token only when one is needed', async () => {
    const page = await openConsole();
    // It opens on the Overview.
    await page.waitForSelector('#glance-title');
    expect(await page.title()).toBe('Overview · userjoin');
    expect(await page.getAttribute('#nav-overview', 'aria-current')).toBe('page');
    // Everything came from the service itself.
    expect(requested.every((u) => u.startsWith(`${svc.url}/`) || u.startsWith('blob:'))).toBe(true);
    expect(await page.isVisible('#sign-out')).toBe(token !== null);
    if (token) {
      // Kept for the tab: a reload does not ask again.
      await page.reload();
      await page.waitForSelector('#glance-title');
      expect(await page.locator('#token-dialog[open]').count()).toBe(0);
      expect(await page.evaluate(() => sessionStorage.getItem('userjoin.token'))).toBe(token);
      // Masked, but no password field, so Chrome does not offer to save it past the tab.
      expect(await page.getAttribute('#token-input', 'type')).toBe('text');
      expect(await page.getAttribute('#token-input', 'autocomplete')).toBe('off');
      expect(await page.evaluate(() => getComputedStyle(document.querySelector('#token-input')!).getPropertyValue('-webkit-text-security'))).toBe('disc');
    } else {
      expect(await page.locator('#token-dialog[open]').count()).toBe(0);
    }
  });

  it('starts a run and shows its progress until it finishes', async () => {
    const before = await api<{ data: Run[] }>('/runs?limit=1');
    // Reads wait for the test, so the run is seen in progress whatever the machine's speed.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    store.beforeRead = () => gate;
    try {
      await put(backend, svc.srcBucket, `${persons[0]!.userId}.csv`, `first_name,last_name,birthts\n${persons[0]!.firstName},${persons[0]!.lastName}-Smith,${persons[0]!.birthts}\n`);
      const page = await openConsole('#/runs');
      await page.click('#run-now');
      await page.waitForSelector('#live-state .badge.running');
      expect(await page.locator('.live progress').count()).toBe(1);
      const runningId = Number((await page.textContent('#live-state strong'))!.replace(/\D/g, ''));
      expect(runningId).toBeGreaterThan(before.data[0]?.id ?? 0);
      // The history lists it while it runs.
      await page.waitForSelector(`#runs-table tr[data-run="${runningId}"] .badge.running`);
      release();
      await page.waitForSelector(`#runs-table tr[data-run="${runningId}"] .badge.succeeded`);
      await page.waitForFunction((id) => document.querySelector('#live-state')?.textContent?.includes(`run #${id} succeeded`), runningId);
      // The live view polls for the counts only, without the lists of rejected files and warnings.
      const polls = requested.filter((u) => u.includes(`/runs/${runningId}`));
      expect(polls.length).toBeGreaterThan(0);
      expect(polls.filter((u) => !u.endsWith(`/runs/${runningId}?issues=0`))).toEqual([]);
    } finally {
      release();
      store.beforeRead = null;
    }
  });

  it('asks before reprocessing everything, and does nothing when told no', async () => {
    await ensureRun();
    const page = await openConsole('#/runs');
    await page.waitForSelector('#runs-table');
    const newest = async () => (await api<{ data: Run[] }>('/runs?limit=1')).data[0]!;
    const before = (await newest()).id;

    await page.click('#reprocess');
    await page.waitForSelector('#confirm-dialog[open]');
    // Cancel has the focus: Enter does the safe thing.
    await page.keyboard.press('Enter');
    await page.waitForSelector('#confirm-dialog:not([open])', { state: 'attached' });
    expect((await newest()).id).toBe(before);

    await page.click('#reprocess');
    await page.click('#confirm-reprocess');
    await expect.poll(async () => (await newest()).id, { timeout: WAIT_MS }).toBeGreaterThan(before);
    const run = await newest();
    expect(run.full).toBe(true);
    await page.waitForSelector(`#runs-table tr[data-run="${run.id}"] .tag`);
    await page.waitForSelector(`#runs-table tr[data-run="${run.id}"] .badge.succeeded`);
  });

  it("opens a run's rejected files and warnings, with their reasons", async () => {
    await ensureRun();
    const runs = await api<{ data: Run[] }>('/runs?limit=1000');
    const withRejections = runs.data.find((r) => r.counts.rejected > 0)!;
    expect(withRejections).toBeDefined();
    const page = await openConsole('#/runs');
    await page.click(`#runs-table tr[data-run="${withRejections.id}"] button`);
    await page.waitForSelector('#detail-dialog[open] #rejected-table');
    // The lists come with the details: as many as are shown, and one to tell whether there are more.
    expect(requested.filter((u) => u.includes(`/runs/${withRejections.id}`))).toEqual([`${svc.url}/runs/${withRejections.id}?issues=1001`]);
    const rows = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#rejected-table tbody tr'), (tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent).slice(0, 2)),
    );
    expect(rows).toContainEqual(['incoming/2001.csv', 'birthts must be an integer number of milliseconds, got "next tuesday"']);
    expect(rows).toContainEqual(['2002.csv', 'last_name is empty']);
    expect(rows).toContainEqual(['2004.png', 'image declares 30000x30000 = 900000000 pixels, over the limit of 50000000']);
    const warnings = await page.evaluate(() => Array.from(document.querySelectorAll('#warnings-table tbody tr td:first-child'), (td) => td.textContent ?? ''));
    // One user_id in two folders: one CSV wins, the other is a warning.
    expect(warnings.filter((k) => k === '2003.csv' || k === 'archive/2003.csv')).toHaveLength(1);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail-dialog:not([open])', { state: 'attached' });
  });

  it("previews a rejected file's user, and reprocesses it: a run of that user alone", async () => {
    await ensureRun();
    const runs = await api<{ data: Run[] }>('/runs?limit=1000');
    const withRejections = runs.data.find((r) => r.counts.rejected > 0)!;
    const page = await openConsole('#/runs');
    await page.click(`#runs-table tr[data-run="${withRejections.id}"] button`);
    await page.click('#detail-dialog[open] button[aria-label="Preview user 2002"]');
    await page.waitForSelector('#detail-dialog[open] #preview-counts');
    expect(await page.textContent('#preview-rejected-list')).toContain('2002.csv: last_name is empty');
    await page.keyboard.press('Escape');
    await page.click(`#runs-table tr[data-run="${withRejections.id}"] button`);
    const before = (await api<{ data: Run[] }>('/runs?limit=1')).data[0]!.id;
    await page.click('#detail-dialog[open] button[aria-label="Reprocess user 2002"]');
    const run = await waitFor('the targeted run', async () => {
      const r = (await api<{ data: Array<Run & { scope: unknown }> }>('/runs?limit=1')).data[0]!;
      return r.id > before && r;
    });
    expect(run.scope).toEqual({ user_ids: ['2002'], prefix: null });
  });

  it('filters users by age and by photo, and pages through them', async () => {
    await ensureRun();
    const page = await openConsole('#/users');
    await page.waitForSelector('#users-table');
    await page.fill('#f-min_age', '30');
    await page.fill('#f-max_age', '60');
    await page.selectOption('#f-photo', 'true');
    await page.selectOption('#f-limit', '25');
    await page.click('#user-filters button[type=submit]');
    await page.waitForFunction(() => location.hash.includes('min_age=30') && document.querySelector('#users-status')?.textContent?.startsWith('Users 1'));
    expect(page.url()).toContain('#/users?min_age=30&max_age=60&is_image_exists=true&limit=25');

    const shown = () => page.evaluate(() => Array.from(document.querySelectorAll('#users-table tbody tr'), (tr) => tr.getAttribute('data-user')));
    const expected = (await api<{ data: Array<{ user_id: string }> }>('/data?min_age=30&max_age=60&is_image_exists=true')).data.map((u) => u.user_id);
    expect(expected.length).toBeGreaterThan(0);
    expect(await shown()).toEqual(expected.slice(0, 25));

    // Without a photo: initials instead of thumbnails.
    await page.selectOption('#f-photo', 'false');
    await page.click('#user-filters button[type=submit]');
    await page.waitForFunction(() => location.hash.includes('is_image_exists=false'));
    const without = (await api<{ data: Array<{ user_id: string }> }>('/data?min_age=30&max_age=60&is_image_exists=false')).data.map((u) => u.user_id);
    await page.waitForFunction((n) => document.querySelectorAll('#users-table tbody tr').length === n || (n === 0 && document.querySelector('#users-status')?.textContent?.startsWith('No user')), without.length);
    expect(await shown()).toEqual(without.slice(0, 25));
    expect(await page.locator('#users-table img.thumb').count()).toBe(0);

    // Paging: everyone, 25 at a time.
    await page.click('#reset-filters');
    await page.selectOption('#f-limit', '25');
    await page.click('#user-filters button[type=submit]');
    const all = (await api<{ data: Array<{ user_id: string }> }>('/data')).data.map((u) => u.user_id);
    expect(all.length).toBeGreaterThan(25);
    await page.waitForFunction((first) => document.querySelector('#users-table tbody tr')?.getAttribute('data-user') === first, all[0]);
    await page.click('#next-page');
    await page.waitForFunction((first) => document.querySelector('#users-table tbody tr')?.getAttribute('data-user') === first, all[25]);
    expect(await shown()).toEqual(all.slice(25, 50));
    await page.click('#prev-page');
    await page.waitForFunction((first) => document.querySelector('#users-table tbody tr')?.getAttribute('data-user') === first, all[0]);
    // Apply on page 2 with the same filters starts again from page 1, pager and all.
    await page.click('#next-page');
    await page.waitForFunction((first) => document.querySelector('#users-table tbody tr')?.getAttribute('data-user') === first, all[25]);
    await page.click('#user-filters button[type=submit]');
    await page.waitForFunction((first) => document.querySelector('#users-table tbody tr')?.getAttribute('data-user') === first, all[0]);
    expect(await page.textContent('#users-status')).toBe('Users 1–25, ordered by user_id.');
    expect(await page.isDisabled('#prev-page')).toBe(true);
  });

  it('skips to the content without leaving the view', async () => {
    const page = await openConsole('#/users?limit=25');
    await page.waitForSelector('#users-table');
    await page.focus('#skip');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.id === 'main');
    expect(await page.evaluate(() => location.hash)).toBe('#/users?limit=25');
    // An anchor that is no route (#main, as the link's href says) keeps the view too.
    await page.evaluate(
      () =>
        new Promise<void>((resolve) => {
          window.addEventListener('hashchange', () => resolve(), { once: true });
          location.hash = '#main';
        }),
    );
    expect(await page.locator('#users-table').count()).toBe(1);
    expect(await page.locator('#history-title').count()).toBe(0);
  });

  it('shows the thumbnails, fetched as blobs, and a detail view with the photo', async () => {
    await ensureRun();
    const page = await openConsole('#/users?is_image_exists=true');
    await page.waitForSelector('#users-table img.thumb');
    await page.waitForFunction(() => {
      const imgs = Array.from(document.querySelectorAll('#users-table img.thumb'));
      return imgs.length > 0 && imgs.every((i) => i.complete && (i.naturalWidth ?? 0) > 0);
    });
    const sources = await page.evaluate(() => Array.from(document.querySelectorAll('#users-table img.thumb'), (i) => i.src ?? ''));
    expect(sources.every((s) => s.startsWith('blob:'))).toBe(true);
    expect(requested.some((u) => /\/data\/\d+\/image\?width=96$/.test(u))).toBe(true);

    // Keyboard only: focus the first user's button, open it with Enter, close it with Escape.
    const first = (await api<{ data: Array<{ user_id: string; first_name: string; last_name: string; img_path: string }> }>('/data?is_image_exists=true&limit=1')).data[0]!;
    await page.focus(`#users-table tr[data-user="${first.user_id}"] button`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#detail-dialog[open] #detail-photo');
    await page.waitForFunction(() => (document.querySelector('#detail-photo')?.naturalWidth ?? 0) > 0);
    expect(await page.textContent('#detail-title')).toBe(`${first.first_name} ${first.last_name}`);
    expect(await page.textContent('#user-fields')).toContain(first.img_path);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail-dialog:not([open])', { state: 'attached' });
  });

  it("shows a user's source in the detail view, and opens the run that changed it", async () => {
    await ensureRun();
    type Source = { csv: { key: string; etag: string }; image: { key: string; etag: string }; run_id: number };
    const first = (await api<{ data: Array<{ user_id: string; source: Source }> }>('/data?is_image_exists=true&limit=1')).data[0]!;
    const page = await openConsole('#/users?is_image_exists=true');
    await page.click(`#users-table tr[data-user="${first.user_id}"] button`);
    await page.waitForSelector('#detail-dialog[open] #user-source');
    const shown = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#user-source div'), (d) => [d.querySelector('dt')?.textContent, d.querySelector('dd')?.textContent]),
    );
    expect(shown.slice(0, 3)).toEqual([
      ['CSV', `${first.source.csv.key} etag ${first.source.csv.etag}`],
      ['Photo', `${first.source.image.key} etag ${first.source.image.etag}`],
      ['Changed by run', `#${first.source.run_id}`],
    ]);
    await page.click('#source-run');
    await page.waitForFunction((title) => document.querySelector('#detail-title')?.textContent === title, `Run #${first.source.run_id}`);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail-dialog:not([open])', { state: 'attached' });
  });

  it('erases a user from its detail view, after asking (Cancel first), and the user is gone', async () => {
    await put(backend, svc.srcBucket, 'zz-erase-me.csv', userCsv('Erin', 'Ease', 1));
    await ensureRun();
    const page = await openConsole('#/users?limit=100');
    const row = '#users-table tr[data-user="zz-erase-me"] button';
    await page.click(row);
    await page.waitForSelector('#detail-dialog[open] #erase-user');
    // Asked first; Enter on the focused Cancel changes nothing.
    await page.click('#erase-user');
    await page.waitForSelector('#erase-dialog[open]');
    expect(await page.textContent('#erase-title')).toBe('Erase Erin Ease (zz-erase-me)?');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#erase-dialog:not([open])', { state: 'attached' });
    expect((await fetch(`${svc.url}/data/zz-erase-me`, { headers: auth })).status).toBe(200);
    await page.click('#erase-user');
    await page.click('#confirm-erase');
    await page.waitForSelector('#detail-dialog:not([open])', { state: 'attached' });
    await page.waitForSelector(row, { state: 'detached' });
    expect((await fetch(`${svc.url}/data/zz-erase-me`, { headers: auth })).status).toBe(404);
  });

  it('downloads the CSV of the current filter', async () => {
    await ensureRun();
    const page = await openConsole('#/users?min_age=40&is_image_exists=true');
    await page.waitForSelector('#users-table');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')]);
    expect(download.suggestedFilename()).toBe('users-min40-with-photo.csv');
    const text = await fs.readFile(await download.path(), 'utf8');
    const res = await fetch(`${svc.url}/data?min_age=40&is_image_exists=true&format=csv`, { headers: auth });
    const expected = await res.text();
    // updated_at may differ if a run touched a row between the two; compare the users.
    const ids = (csv: string) => csv.trimEnd().split('\r\n').map((l) => l.split(',').slice(0, 3).join(','));
    expect(ids(text)).toEqual(ids(expected));
    expect(ids(text).length).toBeGreaterThan(1);
  });

  /** The finished runs the Overview charts, newest first, as the API lists them. */
  const chartedRuns = async () => (await api<{ data: Run[] }>('/runs?limit=25')).data.filter((r) => r.finished_at !== null);
  const marksOf = (page: Page, chart: string) =>
    page.evaluate((sel) => Array.from(document.querySelectorAll(`${sel} svg .mark`), (g) => Number(g.getAttribute('data-run'))), `#${chart}`);
  const text = async (page: Page, selector: string) => (await page.textContent(selector))?.trim();
  // dom.js's fmtDuration, for the runs of these tests (under 10 s).
  const seconds = (r: Run) => `${((Date.parse(r.finished_at!) - Date.parse(r.started_at)) / 1000).toFixed(1)} s`;

  it("opens on the Overview, whose figures are the database's and whose charts have one mark per run and a summary of their numbers", async () => {
    // At least two runs, whatever ran before: the first one rejects files, the next finds nothing new.
    await ensureRun();
    await ensureRun();
    // Holding the events lock keeps the event loop from taking keys: the backlog stays as the test makes it.
    const held = (await tryAcquireLock(db.pool, 'events'))!;
    expect(held).not.toBeNull();
    const backlogKeys = persons.slice(1, 4).map((p) => `${p.userId}.csv`);
    try {
      const records = backlogKeys.map((key) => ({ eventName: 's3:ObjectCreated:Put', s3: { bucket: { name: svc.srcBucket }, object: { key } } }));
      const res = await fetch(`${svc.url}/events/s3`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ Records: records }) });
      expect(res.status).toBe(202);
      const { rows } = await db.pool.query<{ users: number; photos: number; pending: number }>(
        'SELECT (SELECT count(*)::int FROM users) AS users, (SELECT count(img_path)::int FROM users) AS photos, (SELECT count(*)::int FROM pending_events) AS pending',
      );
      const figures = rows[0]!;
      expect(figures.pending).toBe(backlogKeys.length);
      expect(figures.photos).toBeGreaterThan(0);
      expect(figures.photos).toBeLessThan(figures.users);

      const page = await openConsole();
      await page.waitForSelector('#ov-users');
      expect(await text(page, '#ov-users .tile-value')).toBe(String(figures.users));
      expect(await text(page, '#ov-photos')).toBe(String(figures.photos));
      expect(await text(page, '#ov-pending')).toBe(String(backlogKeys.length));

      const runs = await chartedRuns();
      const newest = runs[0]!;
      await page.waitForFunction((id) => document.querySelector('#ov-last-run .tile-value')?.textContent?.includes(`#${id}`), newest.id);
      expect(await text(page, '#ov-last-run .tile-value .badge')).toBe(newest.status);
      const overview = await api<{ schedule: string | null; next_run_at: string | null }>('/overview');
      if (token) {
        // node-cron, in the service's time zone (this process's).
        const due = new Date(new Date().getFullYear() + 1, 0, 1);
        expect(overview).toEqual(expect.objectContaining({ schedule: YEARLY, next_run_at: due.toISOString() }));
        expect(await text(page, '#ov-next-run .tile-value')).toMatch(/^(in |tomorrow)/);
        expect(await page.getAttribute('#ov-next-run .tile-value span', 'title')).toContain(String(due.getFullYear()));
        expect(await text(page, '#ov-next-run code')).toBe(YEARLY);
      } else {
        expect(overview).toEqual(expect.objectContaining({ schedule: null, next_run_at: null }));
        expect(await text(page, '#ov-next-run .tile-value')).toBe('Not scheduled');
      }

      // One mark per run, oldest on the left, in every chart.
      const ids = runs.map((r) => r.id).reverse();
      expect(ids.length).toBeGreaterThan(1);
      await page.waitForFunction((n) => document.querySelectorAll('#chart-rejected svg .mark').length === n, ids.length);
      for (const chart of ['chart-duration', 'chart-users', 'chart-rejected']) expect(await marksOf(page, chart), chart).toEqual(ids);
      // A run with rejects has a bar, drawn in the chart's colour.
      const rejecting = runs.find((r) => r.counts.rejected > 0)!;
      expect(await page.locator(`#chart-rejected .mark[data-run="${rejecting.id}"] rect.chart-bar`).getAttribute('height')).not.toBe('0');

      // The captions state the numbers.
      const sum = (pick: (r: Run) => number) => runs.reduce((n, r) => n + pick(r), 0);
      const most = (pick: (r: Run) => number) => runs.reduce((a, b) => (pick(b) > pick(a) ? b : a));
      const span = `${runs.length} runs, #${runs[runs.length - 1]!.id} to #${newest.id}.`;
      const rejected = (r: Run) => r.counts.rejected;
      expect(await text(page, '#chart-rejected figcaption')).toBe(
        `Files rejected. ${span} Rejected: newest ${rejected(newest)} (run #${newest.id}), highest ${rejected(most(rejected))} (run #${most(rejected).id}), ${sum(rejected)} in all.`,
      );
      const users = await text(page, '#chart-users figcaption');
      expect(users).toContain(`New: newest ${newest.counts.new} (run #${newest.id})`);
      expect(users).toContain(`${sum((r) => r.counts.new)} in all. Updated:`);
      expect(users).toContain(`${sum((r) => r.counts.updated)} in all.`);
      expect(await text(page, '#chart-duration figcaption')).toContain(`Duration: newest ${seconds(newest)} (run #${newest.id})`);
      // Each figure is named by its caption; the drawing is hidden from screen readers.
      expect(await page.locator('#chart-duration figure').getAttribute('aria-labelledby')).toBe('chart-duration-caption');
      expect(await page.locator('#chart-duration svg').getAttribute('aria-hidden')).toBe('true');
      // And the table lists every run's numbers, newest first.
      const table = await page.evaluate(() =>
        Array.from(document.querySelectorAll('#chart-users-numbers tbody tr'), (tr) => Array.from(tr.querySelectorAll('th, td'), (c) => c.textContent)),
      );
      expect(table).toEqual(runs.map((r) => [`#${r.id}`, String(r.counts.new), String(r.counts.updated)]));
    } finally {
      await held.release();
    }
    // The backlog is taken once the lock is free; the Overview follows it.
    const page = await openConsole('#/overview');
    await page.waitForFunction(() => document.querySelector('#ov-pending')?.textContent === '0');
    // Nothing of it is left running for the tests after this one.
    await expect.poll(async () => (await api<{ data: Run[] }>('/runs?limit=5')).data.some((r) => r.status === 'running'), { timeout: WAIT_MS }).toBe(false);
  });

  it('follows the dark setting', async () => {
    await ensureRun();
    const colours = async (scheme: 'light' | 'dark') => {
      const page = await openConsole('#/overview', scheme);
      await page.waitForSelector('#chart-rejected rect.chart-bar');
      const found = await page.evaluate(() => ({
        page: getComputedStyle(document.querySelector('body')!).getPropertyValue('background-color'),
        card: getComputedStyle(document.querySelector('.card')!).getPropertyValue('background-color'),
        rejected: getComputedStyle(document.querySelector('#chart-rejected rect.chart-bar')!).getPropertyValue('fill'),
        axis: getComputedStyle(document.querySelector('#chart-rejected .axis')!).getPropertyValue('stroke'),
      }));
      expect(errors, 'errors in the page').toEqual([]);
      await context?.close();
      context = null;
      return found;
    };
    // style.css's colours for each setting.
    expect(await colours('light')).toEqual({ page: 'rgb(244, 246, 250)', card: 'rgb(255, 255, 255)', rejected: 'rgb(180, 35, 24)', axis: 'rgb(92, 102, 120)' });
    expect(await colours('dark')).toEqual({ page: 'rgb(18, 22, 30)', card: 'rgb(26, 32, 43)', rejected: 'rgb(255, 138, 128)', axis: 'rgb(154, 164, 181)' });
  });

  it('asks nothing more of GET /overview once the Overview is left, even after overlapping loads', async () => {
    await ensureRun();
    const { rows } = await db.pool.query<{ users: number }>('SELECT count(*)::int AS users FROM users');
    // GET /overview answers are held until the test lets them go; the page's clock moves only when the test moves it.
    const held: Route[] = [];
    let asked = 0;
    let mode: 'hold' | 'fail' | 'pass' = 'hold';
    const page = await openConsole('#/overview', 'light', async (p) => {
      await p.clock.install();
      await p.route('**/overview', (route) => {
        asked++;
        if (mode === 'hold') held.push(route);
        // Once the view is left, a refresh it still made fails, as when the service is down.
        else if (mode === 'fail') void route.fulfill({ status: 503, json: { error: { code: 'database_unavailable', message: 'a refresh after the Overview was left' } } });
        else void route.continue();
      });
    });
    // The view loads at once, and again when the run watcher first answers with the newest run
    // (a run that started or ended): two loads in flight at once.
    await waitFor('two overlapping loads', () => held.length >= 2);
    const [first, ...later] = held.splice(0) as [Route, ...Route[]];
    // The oldest answers first, with figures of its own, then the newer ones as the service does.
    const answer = await first.fetch();
    await first.fulfill({ response: answer, json: { ...((await answer.json()) as object), users: 424242 } });
    for (const route of later) await route.continue();
    await waitFor('the newest figures', async () => (await text(page, '#ov-users .tile-value')) === String(rows[0]!.users));
    mode = 'fail';

    await page.click('#nav-runs');
    await page.waitForSelector('#runs-table');
    const before = asked;
    await page.clock.runFor(30_000);
    // A request the page makes after whatever the refresh timers made, seen here after theirs.
    await page.evaluate(() => fetch('/health'));
    expect(asked - before, 'GET /overview after the view was left').toBe(0);
    expect(await page.locator('#alert').isHidden()).toBe(true);
    // The charts' bars are theirs alone, never the header's (.bar).
    mode = 'pass';
    await page.click('#nav-overview');
    await page.waitForSelector('#chart-duration rect.chart-bar');
    expect(await page.locator('.bar').count()).toBe(1);
  });

  it("reaches the Overview and its charts' numbers with the keyboard, and keeps them open and focused as runs come", async () => {
    await ensureRun();
    const page = await openConsole('#/runs');
    await page.waitForSelector('#runs-table');
    const focused = (selector: string) => page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector);
    /** Tab until the selector has the focus, at most 40 times. */
    const tabTo = async (selector: string) => {
      for (let i = 0; i < 40 && !(await focused(selector)); i++) await page.keyboard.press('Tab');
      expect(await focused(selector), selector).toBe(true);
    };
    await tabTo('#nav-overview');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#chart-duration svg .mark');
    expect(await page.evaluate(() => location.hash)).toBe('#/overview');
    await tabTo('#chart-duration-numbers > summary');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#chart-duration-numbers[open] tbody tr');
    await tabTo('#chart-users-numbers > summary');
    await page.keyboard.press('Space');
    await page.waitForSelector('#chart-users-numbers[open] tbody tr');

    // A new run redraws the charts: one more mark, the tables still open, the focus where it was.
    const run = await ensureRun();
    await page.waitForSelector(`#chart-duration svg .mark[data-run="${run.id}"]`);
    await page.waitForSelector(`#chart-users-numbers tbody tr[data-run="${run.id}"]`);
    expect(await page.locator('#chart-duration-numbers[open]').count()).toBe(1);
    expect(await focused('#chart-users-numbers > summary')).toBe(true);
  });
});
