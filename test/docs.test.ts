import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(import.meta.dirname, '..');

/**
 * The layout block of docs/architecture.md as paths: the fenced block after "Every module under
 * `src/`", one entry a line, nested by two spaces, the name being the line's first word (a folder
 * ends in "/"). A name may be a glob of one "*" (migrations/*.sql).
 */
function layoutEntries(markdown: string): Array<{ path: string; line: string }> {
  const start = markdown.indexOf('Every module under `src/`');
  if (start < 0) throw new Error('docs/architecture.md: no "Every module under `src/`" line');
  const block = /```\n([\s\S]*?)```/.exec(markdown.slice(start));
  if (!block) throw new Error('docs/architecture.md: no layout block after it');
  const folders: string[] = [];
  const entries: Array<{ path: string; line: string }> = [];
  for (const line of (block[1] ?? '').split('\n')) {
    const [, indent = '', name = ''] = /^( *)(\S+)/.exec(line) ?? [];
    if (name === '') continue;
    if (indent.length % 2 !== 0) throw new Error(`odd indentation: ${line}`);
    const depth = indent.length / 2;
    if (depth > folders.length) throw new Error(`indented under no folder: ${line}`);
    folders.length = depth;
    if (name.endsWith('/')) folders.push(name.slice(0, -1));
    else entries.push({ path: [...folders, name].join('/'), line });
  }
  return entries;
}

const globRegex = (glob: string) => new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);

describe('docs/architecture.md layout', () => {
  const markdown = readFileSync(path.join(root, 'docs/architecture.md'), 'utf8');
  const entries = layoutEntries(markdown);
  const files = readdirSync(path.join(root, 'src'), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();

  it('names every file under src/, one line each, and nothing that is not there', () => {
    const patterns = entries.map((e) => globRegex(e.path));
    expect(files.filter((f) => !patterns.some((p) => p.test(f))), 'files the layout leaves out').toEqual([]);
    expect(entries.filter((e, i) => !files.some((f) => patterns[i]?.test(f))).map((e) => e.path), 'entries with no file').toEqual([]);
    const paths = entries.map((e) => e.path);
    expect(paths.filter((p, i) => paths.indexOf(p) !== i), 'entries named twice').toEqual([]);
  });

  it('gives the range of migrations there are', () => {
    const migrations = files.filter((f) => f.startsWith('src/db/migrations/')).map((f) => path.basename(f).slice(0, 3));
    const line = entries.find((e) => e.path.startsWith('src/db/migrations/'))?.line ?? '';
    expect(line).toContain(`${migrations[0]} to ${migrations.at(-1)}`);
  });
});

describe('docs/testing.md', () => {
  const markdown = readFileSync(path.join(root, 'docs/testing.md'), 'utf8');
  const list = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/sabotage.ts', '--list'], { cwd: root, encoding: 'utf8' });
  const rows = list.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| name |')).length;

  it('holds the sabotage table as `npm run test:sabotage -- --list` prints it', () => {
    const section = markdown.slice(markdown.indexOf('### The entries'));
    const table = section.split('\n').filter((l) => l.startsWith('|')).join('\n');
    expect(table).toBe(list.trimEnd());
  });

  it('gives the number of entries there are', () => {
    expect(/a full run of its (\d+)\s+entries/.exec(markdown)?.[1]).toBe(String(rows));
  });
});
