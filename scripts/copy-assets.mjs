// tsc copies only .ts: the numbered .sql migrations must sit beside the compiled migrate.js,
// and the console's files (served as they are, no build step) beside the compiled http/.
// Usage: node scripts/copy-assets.mjs [outDir], from the repository root; outDir defaults to dist.
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
const out = process.argv[2] ?? 'dist';
fs.cpSync('src/db/migrations', path.join(out, 'db/migrations'), { recursive: true });
fs.rmSync(path.join(out, 'console'), { recursive: true, force: true });
fs.cpSync('src/console', path.join(out, 'console'), { recursive: true });
