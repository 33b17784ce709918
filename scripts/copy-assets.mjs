// tsc copies only .ts: the numbered .sql migrations must sit beside the compiled migrate.js,
// and the console's files (served as they are, no build step) beside the compiled http/.
import fs from 'node:fs';
fs.cpSync('src/db/migrations', 'dist/db/migrations', { recursive: true });
fs.rmSync('dist/console', { recursive: true, force: true });
fs.cpSync('src/console', 'dist/console', { recursive: true });
