// npm run screenshot: the console's picture in the README (docs/console.png), its Overview,
// taken in Chromium against a real service after a few runs on generated users. Needs
// Debian's chromium.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startService } from '../src/service.js';
import { launchChromium } from '../test/support/browser.js';
import { objectsOf, people, troubleObjects } from '../test/support/people.js';

// What the function passed to waitForFunction uses of the page: it runs there, while this
// file is compiled for Node, without the DOM's types.
declare const document: { querySelectorAll(selector: string): ArrayLike<unknown> };

const OUT = process.argv[2] ?? 'docs/console.png';
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-screenshot-'));
// The embedded PostgreSQL runs as its own user when we are root; let it into the folder.
await fs.chmod(dir, 0o755);
// A daily schedule, so the Overview shows when the next run is due.
const config = loadConfig({ STORE_DIR: path.join(dir, 'minio'), PGDATA_DIR: path.join(dir, 'pg'), PORT: '0', SCHEDULE: '0 3 * * *' });
const service = await startService(config, silentLogger(), { waitMs: 0 });
try {
  const store = service.resources.store;
  const write = async (objects: Array<[string, string | Buffer]>) => {
    for (const [key, body] of objects) await store.write(config.srcBucket, key, Buffer.isBuffer(body) ? body : Buffer.from(body));
  };
  const run = async (query = '') => {
    const res = await fetch(`${service.url}/data?wait=true${query}`, { method: 'POST' });
    if (!res.ok) throw new Error(`run answered ${res.status}`);
  };
  // A history for the charts: users arriving in batches, some updated, files rejected.
  const persons = await people(60);
  const renamed = (from: number, to: number) => objectsOf(persons.slice(from, to).map((p) => ({ ...p, lastName: `${p.lastName}-Reyes`, photo: undefined })));
  await write([...objectsOf(persons.slice(0, 24)), ...troubleObjects()]);
  await run();
  await write(objectsOf(persons.slice(24, 36)));
  await run();
  await write(renamed(0, 6));
  await run();
  await run();
  await write([...objectsOf(persons.slice(36, 50)), ['5001.csv', 'first_name,last_name\nNo,Birthday\n']]);
  await run();
  await write(renamed(10, 20));
  await run();
  await write(objectsOf(persons.slice(50)));
  await run();
  await run('&full=true');

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
    await page.goto(`${service.url}/#/overview`);
    await page.waitForFunction(
      () => document.querySelectorAll('#chart-duration .mark').length > 0 && document.querySelectorAll('#ov-users').length > 0 && document.querySelectorAll('#health .dot').length > 0,
    );
    await page.screenshot({ path: OUT });
    console.log(`wrote ${OUT}`);
  } finally {
    await browser.close();
  }
} finally {
  await service.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
