// Run by prestart and preprocess. With the TypeScript compiler installed it builds, so `npm start`
// on a clone always runs the current source, never a stale dist/. After `npm prune --omit=dev`
// there is no compiler: it then runs the dist/ that is there, and stops if there is none.
// Usage: node scripts/ensure-dist.mjs <entry file, e.g. dist/main.js>
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';

const root = path.resolve(import.meta.dirname, '..');
const entry = process.argv[2] ?? 'dist/main.js';

function hasCompiler() {
  try {
    // Resolved as `npm run build` finds tsc: from the package root up.
    createRequire(path.join(root, 'package.json')).resolve('typescript/bin/tsc');
    return true;
  } catch {
    return false;
  }
}

if (hasCompiler()) {
  // Through npm, so the build script in package.json stays the only definition of the build.
  const npm = process.env.npm_execpath;
  const result = npm
    ? spawnSync(process.execPath, [npm, 'run', '-s', 'build'], { cwd: root, stdio: 'inherit' })
    : spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.error) throw result.error;
  process.exit(result.status ?? 1);
}

if (!fs.existsSync(path.join(root, entry))) {
  process.stderr.write(
    `userjoin: ${entry} is missing, and it cannot be built here: the TypeScript compiler is not installed ` +
      '(a production install, `npm ci --omit=dev` or `npm prune --omit=dev`). ' +
      'Build before pruning: `npm ci && npm run build && npm prune --omit=dev`.\n',
  );
  process.exit(1);
}
process.stderr.write(`userjoin: TypeScript is not installed (production install), so dist/ is not rebuilt: running the existing ${entry}.\n`);
