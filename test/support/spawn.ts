import { spawn } from 'node:child_process';
import path from 'node:path';

export interface Spawned {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * Runs one of our entry points as a real process (TypeScript through tsx), with only the
 * environment given plus PATH, as an operator's shell would.
 */
export function runEntry(
  entry: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
  opts: { withoutFileOverride?: boolean } = {},
): Promise<Spawned> {
  const node = [process.execPath, '--import', 'tsx', path.join(ROOT, entry), ...args];
  // Root reads any file whatever its mode. To see "permission denied" as any other user
  // would, drop the two capabilities that let root ignore file modes.
  const command =
    opts.withoutFileOverride && process.getuid?.() === 0
      ? ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search', ...node]
      : node;
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${entry} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
