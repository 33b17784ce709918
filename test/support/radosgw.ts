import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A throwaway Ceph cluster serving S3 through radosgw: one monitor, one memstore OSD, and the
 * gateway on loopback, with no manager and no auth. It starts in a few seconds and holds
 * everything in memory. Debian 12 packages it: see INSTALL_HINT.
 */
export interface RadosgwCluster {
  /** The gateway's plain HTTP port on 127.0.0.1. */
  port: number;
  /** Its HTTPS port (self-signed certificate, certPath), for what radosgw only does over TLS. */
  tlsPort: number;
  certPath: string;
  /** ceph.conf, for radosgw-admin. */
  conf: string;
  stop(): Promise<void>;
}

export const REQUIRED_BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph', 'openssl'];
export const INSTALL_HINT = 'apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw openssl';

/** The binaries that are missing from PATH; none means a cluster can start. */
export function missingBinaries(): string[] {
  const dirs = (process.env.PATH ?? '').split(path.delimiter);
  return REQUIRED_BINARIES.filter((b) => !dirs.some((d) => existsSync(path.join(d, b))));
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function within<T>(what: string, ms: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await attempt();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`radosgw cluster: ${what} did not happen within ${ms} ms${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startRadosgwCluster(): Promise<RadosgwCluster> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-ceph-'));
  const [monPort, port, tlsPort] = [await freePort(), await freePort(), await freePort()];
  const fsid = randomUUID();
  const conf = path.join(dir, 'ceph.conf');
  const certPath = path.join(dir, 'gateway.pem');
  for (const sub of ['run', 'log', 'mon', 'osd/ceph-0']) await fs.mkdir(path.join(dir, sub), { recursive: true });
  await fs.writeFile(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      // monmaptool gives a non-default port a msgr2 address.
      `mon_host = v2:127.0.0.1:${monPort}`,
      'public_addr = 127.0.0.1',
      'cluster_addr = 127.0.0.1',
      'auth_cluster_required = none',
      'auth_service_required = none',
      'auth_client_required = none',
      // Without it radosgw insists on an encrypted link to the monitor, which auth none cannot set up.
      'ms_mon_client_mode = crc',
      'osd_pool_default_size = 1',
      'osd_pool_default_min_size = 1',
      'mon_allow_pool_size_one = true',
      'mon_warn_on_pool_no_redundancy = false',
      'osd_pool_default_pg_num = 8',
      'osd_pool_default_pgp_num = 8',
      'osd_pool_default_pg_autoscale_mode = off',
      'mon_max_pg_per_osd = 1000',
      'osd_crush_chooseleaf_type = 0',
      // Cuts radosgw's start from about 9 s to 1–2 s.
      'paxos_propose_interval = 0.05',
      'osd_objectstore = memstore',
      'memstore_device_bytes = 1073741824',
      `run_dir = ${dir}/run`,
      `admin_socket = ${dir}/run/$name.asok`,
      `log_file = ${dir}/log/$name.log`,
      `mon_data = ${dir}/mon/$cluster-$id`,
      `osd_data = ${dir}/osd/$cluster-$id`,
      'rgw_enable_usage_log = false',
      ...(process.env.CEPH_DEBUG ? ['debug_rgw = 20'] : []),
      '',
    ].join('\n'),
  );

  const children: ChildProcess[] = [];
  const daemon = (cmd: string, args: string[]) => {
    const child = spawn(cmd, ['-c', conf, '-f', ...args], { stdio: 'ignore' });
    children.push(child);
    return child;
  };
  const stop = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    if (!process.env.KEEP_CEPH) await fs.rm(dir, { recursive: true, force: true });
  };

  try {
    // radosgw wants the key and certificate in one PEM file.
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-keyout', certPath, '-out', `${certPath}.crt`]);
    await fs.appendFile(certPath, await fs.readFile(`${certPath}.crt`));

    await run('monmaptool', ['--create', '--add', 'a', `127.0.0.1:${monPort}`, '--fsid', fsid, path.join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')]);
    daemon('ceph-mon', ['-i', 'a']);
    const ceph = (...args: string[]) => run('ceph', ['-c', conf, '--connect-timeout', '10', ...args], { timeout: 20_000 });
    const { stdout: osdId } = await within('the monitor answering', 20_000, () => ceph('osd', 'create'));
    await run('ceph-osd', ['-c', conf, '-i', osdId.trim(), '--mkfs']);
    daemon('ceph-osd', ['-i', osdId.trim()]);
    // S3 through civetweb: beast 16.2 aborts on a multi-object delete in a bucket with
    // notifications. TLS through beast, since Debian's civetweb cannot load OpenSSL 3.
    const frontends = `civetweb port=127.0.0.1:${port}, beast ssl_endpoint=127.0.0.1:${tlsPort} ssl_certificate=${certPath}`;
    daemon('radosgw', ['-n', 'client.rgw.a', '--rgw_frontends', frontends]);
    await within('the gateway answering', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      await res.arrayBuffer();
      return res.ok ? true : undefined;
    });
  } catch (err) {
    const logs = await fs.readdir(path.join(dir, 'log')).catch(() => []);
    await stop();
    throw new Error(`${(err as Error).message} (daemon logs were: ${logs.join(', ')})`, { cause: err });
  }
  return { port, tlsPort, certPath, conf, stop };
}

/** A new S3 user in a tenant of its own, so its bucket names never meet another test's. */
export async function createRadosgwUser(cluster: Pick<RadosgwCluster, 'conf'>): Promise<{ tenant: string; accessKey: string; secretKey: string }> {
  const tenant = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const accessKey = `AK${randomUUID().replace(/-/g, '').slice(0, 18).toUpperCase()}`;
  const secretKey = randomUUID().replace(/-/g, '');
  await run('radosgw-admin', ['-c', cluster.conf, 'user', 'create', '--tenant', tenant, '--uid', 'tester', '--display-name', 'tester', '--access-key', accessKey, '--secret-key', secretKey]);
  return { tenant, accessKey, secretKey };
}

/**
 * An SNS topic that pushes to an HTTP endpoint, created over the gateway's HTTPS port: radosgw
 * accepts credentials in the endpoint (https://user:password@host/...) only over TLS. Returns
 * the topic's ARN, for PutBucketNotificationConfiguration.
 */
export async function createTopic(
  cluster: Pick<RadosgwCluster, 'tlsPort'>,
  credentials: { accessKey: string; secretKey: string },
  name: string,
  attributes: Record<string, string>,
): Promise<string> {
  const { Client } = await import('minio');
  const client = new Client({
    endPoint: '127.0.0.1',
    port: cluster.tlsPort,
    useSSL: true,
    ...credentials,
    region: 'us-east-1',
    pathStyle: true,
    // The gateway's certificate is self-signed.
    transportAgent: new https.Agent({ rejectUnauthorized: false }),
  });
  // radosgw checks the signature of a form body against its hash; over HTTPS the client would
  // sign it as UNSIGNED-PAYLOAD.
  (client as unknown as { enableSHA256: boolean }).enableSHA256 = true;
  const form = new URLSearchParams({ Action: 'CreateTopic', Name: name });
  Object.entries(attributes).forEach(([k, v], i) => {
    form.set(`Attributes.entry.${i + 1}.key`, k);
    form.set(`Attributes.entry.${i + 1}.value`, v);
  });
  const res = await client.makeRequestAsync(
    { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } },
    form.toString(),
    [200],
    'us-east-1',
  );
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const xml = Buffer.concat(chunks).toString('utf8');
  const arn = /<TopicArn>([^<]+)<\/TopicArn>/.exec(xml)?.[1];
  if (!arn) throw new Error(`CreateTopic answered without a TopicArn: ${xml}`);
  return arn;
}
