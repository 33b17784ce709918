// tsc copies only .ts; the numbered .sql migrations must sit beside the compiled migrate.js.
import fs from 'node:fs';
fs.cpSync('src/db/migrations', 'dist/db/migrations', { recursive: true });
