// npm run screenshot: the console's picture in the README (docs/console.png), taken in
// Chromium against a real service on generated users. Needs Debian's chromium.
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
declare const document: { querySelectorAll(selector: string): ArrayLike<{ complete: boolean; naturalWidth: number }> };

const OUT = process.argv[2] ?? 'docs/console.png';
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-screenshot-'));
// The embedded PostgreSQL runs as its own user when we are root; let it into the folder.
await fs.chmod(dir, 0o755);
const config = loadConfig({ STORE_DIR: path.join(dir, 'minio'), PGDATA_DIR: path.join(dir, 'pg'), PORT: '0', SCHEDULE: 'off' });
const service = await startService(config, silentLogger(), { waitMs: 0 });
try {
  const store = service.resources.store;
  for (const [key, body] of [...objectsOf(await people(60)), ...troubleObjects()]) {
    await store.write(config.srcBucket, key, Buffer.isBuffer(body) ? body : Buffer.from(body));
  }
  const run = await fetch(`${service.url}/data?wait=true`, { method: 'POST' });
  if (!run.ok) throw new Error(`run answered ${run.status}`);

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
    await page.goto(`${service.url}/#/users?min_age=25&max_age=70&limit=25`);
    await page.waitForFunction(() => {
      const imgs = Array.from(document.querySelectorAll('img.thumb'));
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    });
    await page.screenshot({ path: OUT });
    console.log(`wrote ${OUT}`);
  } finally {
    await browser.close();
  }
} finally {
  await service.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
