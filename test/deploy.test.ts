// Static checks of the Docker files. No Docker engine runs here, so this is what can be
// verified: the compose file's shape and the Dockerfile's agreement with package.json.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { configDefaults } from '../src/config.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const read = (name: string) => readFileSync(path.join(ROOT, name), 'utf8');

// The last official MinIO community image; there is no `latest` tag to float on.
const MINIO_IMAGE = 'minio/minio:RELEASE.2025-09-07T16-13-09Z';
// A dated release, never `latest`.
const MC_IMAGE = /^minio\/mc:RELEASE\.2025-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$/;

interface Service {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] | string };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
  secrets?: Array<string | { source: string; target?: string }>;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { environment?: string; file?: string }>;
}

describe('docker-compose.yml', () => {
  const text = read('docker-compose.yml');
  const compose = parseYaml(text) as Compose;
  const { minio, postgres, userjoin } = compose.services;
  const minioInit = compose.services['minio-init'];

  it('has the minio, postgres and userjoin services, each with a healthcheck, and the one-shot minio-init', () => {
    const always = Object.entries(compose.services).filter(([, s]) => !s.profiles);
    expect(always.map(([name]) => name).sort()).toEqual(['minio', 'minio-init', 'postgres', 'userjoin']);
    for (const name of ['minio', 'postgres', 'userjoin']) {
      expect(compose.services[name]!.healthcheck?.test, `${name} healthcheck`).toBeTruthy();
    }
  });

  it('pins official images, never a floating tag', () => {
    expect(minio!.image).toBe(MINIO_IMAGE);
    expect(minioInit!.image).toMatch(MC_IMAGE);
    expect(postgres!.image).toMatch(/^postgres:\d+(\.\d+)?(-[a-z0-9]+)?$/);
    expect(minio!.ports).toEqual(expect.arrayContaining([expect.stringMatching(/:9000:9000$/), expect.stringMatching(/:9001:9001$/)]));
    expect(minio!.command).toEqual(expect.arrayContaining(['--console-address', ':9001']));
  });

  it('builds the app from the Dockerfile and starts it once both dependencies are healthy', () => {
    const context = typeof userjoin!.build === 'string' ? userjoin!.build : userjoin!.build!.context;
    expect(existsSync(path.join(ROOT, context, 'Dockerfile'))).toBe(true);
    expect(userjoin!.depends_on).toEqual({
      minio: { condition: 'service_healthy' },
      'minio-init': { condition: 'service_completed_successfully' },
      postgres: { condition: 'service_healthy' },
    });
    expect(userjoin!.ports!.some((p) => p.endsWith(':3000'))).toBe(true);
    expect(JSON.stringify(userjoin!.healthcheck!.test)).toContain('/health');
  });

  it('points the app at the minio and postgres services by their compose names', () => {
    const env = userjoin!.environment!;
    expect(new URL(env.MINIO_ENDPOINT!).host).toBe('minio:9000');
    // The password is interpolated, so parse around it.
    expect(env.DATABASE_URL).toMatch(/^postgres:\/\/[^:]+:\$\{POSTGRES_PASSWORD\}@postgres:5432\/\w+$/);
    // Every variable handed to the app is one it reads: a typo here would silently do nothing.
    const known = Object.keys(configDefaults());
    expect(Object.keys(env).filter((k) => !known.includes(k))).toEqual([]);
  });

  it('keeps data in named volumes that survive `docker compose down`', () => {
    const declared = Object.keys(compose.volumes ?? {});
    const mounts = (s: Service) => (s.volumes ?? []).map((v) => v.split(':'));
    expect(mounts(minio!)).toContainEqual([expect.toBeOneOf(declared), '/data']);
    // postgres:17 keeps PGDATA here (18 moved it to /var/lib/postgresql).
    expect(postgres!.image).toMatch(/^postgres:17/);
    expect(mounts(postgres!)).toContainEqual([expect.toBeOneOf(declared), '/var/lib/postgresql/data']);
  });

  it('takes every secret from .env, and config/.env.example lists each one it requires, secrets left empty', () => {
    const example = read('config/.env.example');
    const required = [...text.matchAll(/\$\{([A-Z_]+):\?[^}]*\}/g)].map((m) => m[1]!);
    expect(required.length).toBeGreaterThan(0);
    for (const name of required) {
      const line = new RegExp(`^${name}=(.*)$`, 'm').exec(example);
      expect(line, name).not.toBeNull();
      // Secrets ship empty, so compose refuses to start until they are set: no known secret runs.
      if (/PASSWORD|SECRET|TOKEN/.test(name)) expect(line![1], name).toBe('');
    }
    for (const service of Object.values(compose.services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (/PASSWORD|SECRET|ACCESS_KEY|TOKEN|ROOT_USER/.test(key)) expect(value, key).toMatch(/^\$\{[A-Z_]+/);
      }
    }
  });
});

describe('docker-compose.yml: userjoin\'s own MinIO user', () => {
  const compose = parseYaml(read('docker-compose.yml')) as Compose;
  const { userjoin } = compose.services;
  const minioInit = compose.services['minio-init']!;
  const script = minioInit.command!.join('\n');

  it('never hands userjoin the MinIO root credentials', () => {
    for (const [key, value] of Object.entries(userjoin!.environment!)) expect(`${key}=${value}`, key).not.toMatch(/MINIO_ROOT_/);
    expect(userjoin!.environment!.MINIO_ACCESS_KEY).toMatch(/^\$\{USERJOIN_S3_ACCESS_KEY:\?/);
    expect(userjoin!.environment!.MINIO_SECRET_KEY).toMatch(/^\$\{USERJOIN_S3_SECRET_KEY:\?/);
  });

  it('requires API_TOKEN, since the image listens on 0.0.0.0', () => {
    expect(userjoin!.environment!.API_TOKEN).toMatch(/^\$\{API_TOKEN:\?[^}]+\}$/);
  });

  it("sends MinIO's bucket events to the service's webhook, with a token, a queue that survives restarts, and the ARN the service sets on src", () => {
    const minio = compose.services.minio!;
    const env = minio.environment!;
    const id = 'USERJOIN';
    expect(env[`MINIO_NOTIFY_WEBHOOK_ENABLE_${id}`]).toBe('on');
    const endpoint = new URL(env[`MINIO_NOTIFY_WEBHOOK_ENDPOINT_${id}`]!);
    expect(endpoint.host).toBe('userjoin:3000');
    expect(endpoint.pathname).toBe('/events/s3');
    // The same token on both sides, required.
    expect(env[`MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_${id}`]).toMatch(/^\$\{EVENTS_TOKEN:\?[^}]+\}$/);
    expect(userjoin!.environment!.EVENTS_TOKEN).toBe(env[`MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_${id}`]);
    // Events wait in a volume while the service is down, and are delivered when it is back.
    const queueDir = env[`MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_${id}`]!;
    expect((minio.volumes ?? []).map((v) => v.split(':')[1])).toContain(queueDir);
    expect(userjoin!.environment!.S3_NOTIFY_ARN).toBe(`arn:minio:sqs::${id}:webhook`);
  });

  it('minio-init waits for MinIO, creates the buckets, the policy from the repository, and the user with it attached', () => {
    expect(minioInit.depends_on).toEqual({ minio: { condition: 'service_healthy' } });
    const mount = minioInit.volumes!.map((v) => v.split(':')).find(([source]) => source!.endsWith('userjoin-policy.json'))!;
    expect(existsSync(path.join(ROOT, mount[0]!)), mount[0]).toBe(true);
    expect(mount[2]).toBe('ro');
    expect(script).toContain('mc ready local');
    expect(script).toMatch(/mc mb --ignore-existing "local\/\$\$SRC_BUCKET" "local\/\$\$RES_BUCKET"/);
    expect(script).toContain(`mc admin policy create local userjoin ${mount[1]}`);
    expect(script).toMatch(/mc admin user add local "\$\$USERJOIN_S3_ACCESS_KEY" "\$\$USERJOIN_S3_SECRET_KEY"/);
    expect(script).toMatch(/mc admin policy attach local userjoin --user "\$\$USERJOIN_S3_ACCESS_KEY"/);
    // The buckets it creates are the ones userjoin uses.
    expect(minioInit.environment!.SRC_BUCKET).toBe(userjoin!.environment!.SRC_BUCKET);
    expect(minioInit.environment!.RES_BUCKET).toBe(userjoin!.environment!.RES_BUCKET);
  });

  it('the policy names only the two buckets, and only the actions userjoin needs', () => {
    interface Statement {
      Effect: string;
      Action: string | string[];
      Resource: string | string[];
    }
    const policy = JSON.parse(read('config/minio/userjoin-policy.json')) as { Version: string; Statement: Statement[] };
    expect(policy.Version).toBe('2012-10-17');
    const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);
    const granted = new Set<string>();
    for (const st of policy.Statement) {
      expect(st.Effect).toBe('Allow');
      for (const action of list(st.Action)) for (const resource of list(st.Resource)) granted.add(`${action} ${resource}`);
    }
    const expected = [
      ...['s3:ListBucket', 's3:GetBucketLocation'].flatMap((a) => [`${a} arn:aws:s3:::src`, `${a} arn:aws:s3:::res`]),
      's3:ListBucketMultipartUploads arn:aws:s3:::res',
      // The service points src's notifications at its webhook at start (S3_NOTIFY_ARN).
      's3:GetBucketNotification arn:aws:s3:::src',
      's3:PutBucketNotification arn:aws:s3:::src',
      's3:GetObject arn:aws:s3:::src/*',
      ...['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'].map((a) => `${a} arn:aws:s3:::res/*`),
    ];
    expect([...granted].sort()).toEqual(expected.sort());
    // The compose defaults for the bucket names match the policy.
    expect(compose.services.userjoin!.environment!.SRC_BUCKET).toBe('${SRC_BUCKET:-src}');
    expect(compose.services.userjoin!.environment!.RES_BUCKET).toBe('${RES_BUCKET:-res}');
  });
});

describe('docker-compose.yml: the monitoring profile', () => {
  const compose = parseYaml(read('docker-compose.yml')) as Compose;
  const { prometheus, userjoin } = compose.services;
  const config = parseYaml(read('config/prometheus/prometheus.yml')) as {
    rule_files: string[];
    scrape_configs: Array<{
      job_name: string;
      metrics_path?: string;
      dns_sd_configs?: Array<{ names: string[]; type: string; port: number }>;
      authorization?: { type?: string; credentials?: string; credentials_file?: string };
      bearer_token?: string;
    }>;
  };
  // Host path -> container path, for the bind mounts.
  const mounts = new Map((prometheus?.volumes ?? []).filter((v) => v.startsWith('./')).map((v) => [v.split(':')[0]!, v.split(':')[1]!]));

  it('adds Prometheus only with --profile monitoring, on a pinned image, with a healthcheck', () => {
    expect(prometheus!.profiles).toEqual(['monitoring']);
    expect(prometheus!.image).toMatch(/^prom\/prometheus:v3\.\d+\.\d+$/);
    expect(JSON.stringify(prometheus!.healthcheck!.test)).toContain('/-/ready');
    expect(prometheus!.ports).toEqual(['127.0.0.1:9090:9090']);
    // Its data survives `docker compose down`.
    const data = prometheus!.volumes!.map((v) => v.split(':')).find(([, target]) => target === '/prometheus')!;
    expect(Object.keys(compose.volumes ?? {})).toContain(data[0]);
  });

  it('loads prometheus.yml and the alert rules from config/prometheus, read-only', () => {
    const configPath = mounts.get('./config/prometheus/prometheus.yml')!;
    expect(prometheus!.command).toContain(`--config.file=${configPath}`);
    for (const file of ['prometheus.yml', 'alerts.yml']) {
      const v = prometheus!.volumes!.find((m) => m.startsWith(`./config/prometheus/${file}:`))!;
      expect(v, file).toMatch(/:ro$/);
      expect(existsSync(path.join(ROOT, 'config/prometheus', file)), file).toBe(true);
    }
    // rule_files are relative to the config file: each lands on a mounted rule file.
    const mounted = [...mounts.values()];
    for (const rules of config.rule_files) expect(mounted).toContain(path.posix.join(path.posix.dirname(configPath), rules));
    expect(config.rule_files.map((f) => path.posix.basename(f))).toContain('alerts.yml');
  });

  it('scrapes every userjoin replica on its container port, as job "userjoin", with METRICS_TOKEN from a secret file', () => {
    const jobs = config.scrape_configs.filter((j) => j.job_name === 'userjoin');
    expect(jobs.length).toBe(1);
    const job = jobs[0]!;
    expect(job.metrics_path ?? '/metrics').toBe('/metrics');
    // The compose service name resolves to every replica's address.
    const containerPort = Number(userjoin!.ports![0]!.split(':').at(-1));
    expect(job.dns_sd_configs).toEqual([expect.objectContaining({ names: ['userjoin'], type: 'A', port: containerPort })]);
    // The token never sits in the file: only a path to one.
    expect(job.authorization?.credentials).toBeUndefined();
    expect(job.bearer_token).toBeUndefined();
    expect(job.authorization?.type ?? 'Bearer').toBe('Bearer');
    const file = job.authorization!.credentials_file!;
    const secret = /^\/run\/secrets\/([\w-]+)$/.exec(file)![1]!;
    expect(prometheus!.secrets).toContain(secret);
    // The secret is the METRICS_TOKEN the service is given, which opens /metrics alone: never API_TOKEN.
    expect(compose.secrets?.[secret]).toEqual({ environment: 'METRICS_TOKEN' });
    expect(userjoin!.environment!.METRICS_TOKEN).toMatch(/^\$\{METRICS_TOKEN:\?/);
    expect(Object.values(compose.secrets ?? {}).filter((s) => s.environment === 'API_TOKEN')).toEqual([]);
  });
});

describe('Dockerfile', () => {
  const dockerfile = DockerfileParser.parse(read('Dockerfile'));
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; engines: { node: string } };
  const froms = dockerfile.getFROMs();
  const instructions = dockerfile.getInstructions();
  const finalStart = instructions.indexOf(froms.at(-1)!);
  const finalStage = instructions.slice(finalStart);
  const byKeyword = (list: Instruction[], keyword: string) => list.filter((i) => i.getKeyword() === keyword);
  const args = (i: Instruction) => i.getArguments().map((a) => a.getValue());

  it('is multi-stage on an official Node 20+ slim image', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) {
      expect(from.getImageName()).toBe('node');
      expect(from.getImageTag()).toMatch(/^\d+-slim$/);
      expect(Number.parseInt(from.getImageTag()!, 10)).toBeGreaterThanOrEqual(20);
    }
  });

  it('installs from the lockfile and runs only npm scripts that exist', () => {
    const runs = byKeyword(instructions, 'RUN').map((i) => args(i).join(' '));
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    for (const r of runs) {
      for (const m of r.matchAll(/npm run (?:-s )?([\w:-]+)/g)) expect(pkg.scripts, `npm run ${m[1]}`).toHaveProperty(m[1]!);
    }
    // Production dependencies only in what ships.
    expect(runs.some((r) => /npm (prune|ci)\b.*--omit=dev/.test(r))).toBe(true);
    expect(byKeyword(finalStage, 'RUN').map((i) => args(i).join(' '))).not.toContainEqual(expect.stringMatching(/npm (ci|install)/));
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.env', 'minio', 'postgres-data', '.git']));
    for (const copy of byKeyword(instructions, 'COPY')) {
      // Flags such as --from are not arguments; a stage copy has no context sources.
      if (/--from=/.test(copy.getTextContent())) continue;
      for (const source of args(copy).slice(0, -1)) {
        expect(existsSync(path.join(ROOT, source)), source).toBe(true);
        expect(ignored, source).not.toContain(source);
      }
    }
  });

  it('starts the same way as `npm start`, as a non-root user listening on all interfaces, with a /health check', () => {
    const cmd = byKeyword(finalStage, 'CMD')[0]!;
    // Exec form, e.g. CMD ["node", "dist/main.js"]: the same words as the start script.
    const execForm = /^CMD\s+(\[.*\])\s*$/s.exec(cmd.getTextContent())![1]!;
    expect(JSON.parse(execForm)).toEqual(pkg.scripts.start!.split(' '));
    const user = byKeyword(finalStage, 'USER').map((i) => args(i).join(' '));
    expect(user.length).toBe(1);
    expect(user[0]).not.toMatch(/^(root|0)(:|$)/);
    const env = byKeyword(finalStage, 'ENV').map((i) => args(i).join(' ')).join(' ');
    expect(env).toMatch(/\bHOST=0\.0\.0\.0\b/);
    expect(byKeyword(finalStage, 'HEALTHCHECK').map((i) => args(i).join(' ')).join(' ')).toContain('/health');
  });
});
