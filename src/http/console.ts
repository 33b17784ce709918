import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context } from 'koa';
import type { Routes } from './api.js';
import { routeLabel } from './api.js';

/** The operator console: static files, served from memory. */
export interface ConsoleAssets {
  /** Hash of every file together: part of each asset's URL, so a new build is a new URL. */
  version: string;
  index: Asset;
  files: Map<string, Asset>;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

// Beside the compiled code: src/console in development, dist/console once built.
const CONSOLE_DIR = fileURLToPath(new URL('../console/', import.meta.url));

// Everything the page loads comes from this service: no CDN, no external fonts, no inline
// script. Photos are shown from blob: URLs, which fetch() made with the token.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Reads the console's files once. index.html names its assets under /assets/<version>/; the
 * modules import each other by relative paths, so they need no build step to stay in step.
 */
export async function loadConsoleAssets(dir = CONSOLE_DIR): Promise<ConsoleAssets> {
  const names = (await fs.readdir(dir)).filter((n) => TYPES[path.extname(n)] && n !== 'index.html' && !n.startsWith('.')).sort();
  const raw = new Map<string, Buffer>();
  for (const name of names) raw.set(name, await fs.readFile(path.join(dir, name)));
  const tree = createHash('sha256');
  for (const [name, body] of raw) tree.update(`${name}\u0000${body.length}\u0000`).update(body);
  const version = tree.digest('hex').slice(0, 16);
  const files = new Map([...raw].map(([name, body]) => [name, asset(body, TYPES[path.extname(name)]!)]));
  const html = (await fs.readFile(path.join(dir, 'index.html'), 'utf8')).replaceAll('{{assets}}', `/assets/${version}`);
  return { version, index: asset(Buffer.from(html), TYPES['.html']!), files };
}

function asset(body: Buffer, type: string): Asset {
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/**
 * Serves the console. The page says whether the service wants a token, so the console asks
 * for it before its first call instead of meeting a 401. Its routes are public: they hold no
 * data, and the page must load to ask for the token.
 */
export function consoleRoutes(routes: Routes, assets: ConsoleAssets, auth: 'bearer' | 'none'): void {
  const index = asset(Buffer.from(assets.index.body.toString('utf8').replaceAll('{{auth}}', auth)), assets.index.type);
  routes.add({ method: 'get', name: 'console', path: '/', access: 'public' }, (ctx) => {
    routeLabel(ctx, '/');
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('Referrer-Policy', 'no-referrer');
    // The page is small and names versioned assets: revalidate it every time.
    send(ctx, index, 'no-cache');
  });
  routes.add({ method: 'get', name: 'consoleAsset', path: '/assets/:version/:file', access: 'public' }, (ctx) => {
    routeLabel(ctx, '/assets/:version/:file');
    const file = assets.files.get(ctx.params.file!);
    if (ctx.params.version !== assets.version || !file) return;
    // The URL changes with the content, so a browser may keep it for good.
    send(ctx, file, 'public, max-age=31536000, immutable');
  });
}

function send(ctx: Context, file: Asset, cacheControl: string): void {
  ctx.set('Cache-Control', cacheControl);
  ctx.set('ETag', file.etag);
  ctx.status = 200;
  if (ctx.fresh) {
    ctx.status = 304;
    return;
  }
  ctx.type = file.type;
  ctx.body = file.body;
}
