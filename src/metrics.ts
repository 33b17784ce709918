import client from 'prom-client';
import { within } from './deadline.js';
import type { ClusterStats } from './db/stats.js';
import type { Logger } from './log.js';
import type { RunCounts, RunReport, RunStatus, RunTrigger } from './core/model.js';
import type { StoreObserver } from './storage/index.js';

/** What became of one event (a webhook record or a folder-watch key). */
export type EventOutcome = 'accepted' | 'other_bucket' | 'not_user_file' | 'refused_key' | 'other_event' | 'unparsable' | 'backlog_full';

// Reading the users' figures counts rows: at most this often, and cancelled past the timeout.
const STATS_MAX_AGE_MS = 10_000;
const STATS_TIMEOUT_MS = 2_000;
// The statement timeout starts once connected, and a connection to a hanging database takes up
// to the pool's 10 s: a scrape waits this long at most, then reports the last values.
const STATS_DEADLINE_MS = 2_500;

/** Whether each dependency answers, as GET /health checks them. */
export type DependencyChecks = Record<'database' | 'store', { ok: boolean }>;

/**
 * The Prometheus metrics of one process. Run counters count the runs this process carried
 * out (sum them over instances); the users' figures and the last success come from the
 * shared database, so every instance reports the same values (take max over instances).
 */
export class Metrics {
  readonly registry = new client.Registry();
  private readonly runs: client.Counter<'status' | 'trigger'>;
  private readonly runDuration: client.Histogram<'status'>;
  private readonly objectsRead: client.Counter;
  private readonly objectsRejected: client.Counter;
  private readonly erasures: client.Counter;
  private readonly http: client.Histogram<'method' | 'route' | 'status'>;
  private readonly events: client.Counter<'source' | 'outcome'>;
  private readonly storeRequests: client.Counter<'op' | 'outcome'>;
  private readonly storeRetries: client.Counter<'op' | 'reason'>;
  private readonly eventBodies: client.Gauge;
  /** Counts the object store's requests and retries; given to the store when it is made. */
  readonly store: StoreObserver = {
    request: (op, outcome) => this.storeRequests.inc({ op, outcome }),
    retry: (op, reason) => this.storeRetries.inc({ op, reason }),
  };
  private stats: { at: number; value: Promise<ClusterStats | null> } | null = null;
  private lastKnown: ClusterStats | null = null;
  private reading: Promise<ClusterStats> | null = null;

  constructor(
    private readonly readStats: (timeoutMs: number) => Promise<ClusterStats>,
    private readonly log: Logger,
    probeDependencies?: () => Promise<DependencyChecks>,
  ) {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: 'userjoin_' });
    this.runs = new client.Counter({
      name: 'userjoin_runs_total',
      help: 'Runs this process carried out (schedule, http, cli; never event batches), by final status and trigger',
      labelNames: ['status', 'trigger'],
      registers,
    });
    // Every status and trigger from the start: increase() misses a series' first sample, so
    // the first failed run of a process would otherwise go unseen by the alert rules. Event
    // batches never reach runFinished (the coordinator carries out runs only), so no event series.
    const triggers = { cli: 0, http: 0, schedule: 0 } satisfies Record<Exclude<RunTrigger, 'event'>, 0>;
    for (const status of ['succeeded', 'failed', 'aborted'] satisfies RunStatus[]) for (const trigger of Object.keys(triggers)) this.runs.inc({ status, trigger }, 0);
    this.runDuration = new client.Histogram({
      name: 'userjoin_run_duration_seconds',
      help: 'How long the runs this process carried out took, by final status',
      labelNames: ['status'],
      buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    // With WORK_QUEUE=pgboss every replica reads a run's items, but only the run's owner counts
    // them, from the run's counts when it ends (runFinished).
    const byWhom =
      'counted when the run ends by the process that carried it out, including items other replicas read (they do not count them), or by the process that took the event batch';
    this.objectsRead = new client.Counter({ name: 'userjoin_objects_read_total', help: `Source objects read and checked, ${byWhom}`, registers });
    this.objectsRejected = new client.Counter({
      name: 'userjoin_objects_rejected_total',
      help: `Source objects rejected (bad content, unusable names, unreadable), ${byWhom}`,
      registers,
    });
    this.erasures = new client.Counter({
      name: 'userjoin_erasures_total',
      help: `Users erased, by reason: api (DELETE /data/:user_id, counted by the process that answered it) or source_delete (ON_SOURCE_DELETE=erase, ${byWhom})`,
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['api', 'source_delete']) this.erasures.inc({ reason }, 0);
    this.http = new client.Histogram({
      name: 'userjoin_http_request_duration_seconds',
      help: 'HTTP requests, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.events = new client.Counter({
      name: 'userjoin_events_total',
      help: 'Events this process received, by source (s3, folder) and outcome (accepted, or why it was ignored; backlog_full: a folder event dropped past EVENT_BACKLOG_LIMIT)',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.storeRequests = new client.Counter({
      name: 'userjoin_store_requests_total',
      help: 'Object store requests (S3), by operation (list, stat, read, write, bucket, notify) and outcome (ok, not_found, refused, gave_up, error), each counted once however often it was tried; a read once when its body ends (ok when it all came or its reader stopped, gave_up when its resumes ran out)',
      labelNames: ['op', 'outcome'],
      registers,
    });
    this.storeRetries = new client.Counter({
      name: 'userjoin_store_retries_total',
      help: 'Object store requests (S3) tried again, a read resumed after a cut included, by operation and transient reason (throttled, unavailable, server_error, connection, cut, timeout)',
      labelNames: ['op', 'reason'],
      registers,
    });
    this.eventBodies = new client.Gauge({
      name: 'userjoin_event_bodies_in_flight',
      help: 'POST /events/s3 bodies this process is reading or recording now (at most EVENT_WEBHOOK_CONCURRENCY)',
      registers,
    });
    const stat = (name: string, help: string, pick: (s: ClusterStats) => number) =>
      new client.Gauge({
        name,
        help,
        registers,
        collect: async () => {
          const s = await this.clusterStats();
          // Never read yet (the database failed from the start): the series says 0.
          this.gaugeOf(name).set(s ? pick(s) : 0);
        },
      });
    stat('userjoin_users', 'Users in the database (all instances)', (s) => s.users);
    stat('userjoin_users_with_photo', 'Users with a photo (all instances)', (s) => s.usersWithPhoto);
    stat('userjoin_events_pending', 'Keys named by events and not processed yet (all instances)', (s) => s.pendingEvents);
    stat(
      'userjoin_events_oldest_pending_age_seconds',
      'How long the longest-waiting of those keys has waited since an event last named it, in seconds; 0 if none waits (all instances)',
      (s) => (s.oldestPendingAt ? Math.max(0, (Date.now() - s.oldestPendingAt.getTime()) / 1000) : 0),
    );
    // 0 until a run succeeds, so an alert on its age fires for a service that never succeeded.
    stat('userjoin_last_successful_run_timestamp_seconds', 'When the last successful run of any instance finished, in Unix seconds; 0 if none has', (s) =>
      s.lastSuccessAt ? s.lastSuccessAt.getTime() / 1000 : 0,
    );
    if (probeDependencies) {
      const up: client.Gauge<'dependency'> = new client.Gauge({
        name: 'userjoin_dependency_up',
        help: 'Whether PostgreSQL (dependency="database") and the object store (dependency="store") answer this process: 1 or 0, checked at each scrape as GET /health checks them',
        labelNames: ['dependency'],
        registers,
        collect: async () => {
          for (const [dependency, check] of Object.entries(await probeDependencies())) up.set({ dependency }, check.ok ? 1 : 0);
        },
      });
    }
  }

  private gaugeOf(name: string): client.Gauge {
    return this.registry.getSingleMetric(name) as client.Gauge;
  }

  runFinished(report: RunReport): void {
    this.runs.inc({ status: report.status, trigger: report.trigger });
    if (report.finished_at) {
      const seconds = (Date.parse(report.finished_at) - Date.parse(report.started_at)) / 1000;
      this.runDuration.observe({ status: report.status }, Math.max(0, seconds));
    }
    this.objectsRead.inc(report.counts.read);
    this.objectsRejected.inc(report.counts.rejected);
    this.erasures.inc({ reason: 'source_delete' }, report.counts.erased);
  }

  /** A user erased through the API. */
  erased(): void {
    this.erasures.inc({ reason: 'api' });
  }

  /** One event batch: the run it belongs to is counted once, when it finishes for good. */
  eventBatch(counts: RunCounts): void {
    this.objectsRead.inc(counts.read);
    this.objectsRejected.inc(counts.rejected);
    this.erasures.inc({ reason: 'source_delete' }, counts.erased);
  }

  eventsReceived(source: 's3' | 'folder', outcome: EventOutcome, n = 1): void {
    if (n > 0) this.events.inc({ source, outcome }, n);
  }

  eventBodiesInFlight(n: number): void {
    this.eventBodies.set(n);
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.http.observe({ method, route, status: String(status) }, seconds);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Read at most every STATS_MAX_AGE_MS, scrapes in between share it. A failed read keeps the last values. */
  private clusterStats(): Promise<ClusterStats | null> {
    const now = Date.now();
    if (!this.stats || now - this.stats.at > STATS_MAX_AGE_MS) this.stats = { at: now, value: this.freshStats() };
    return this.stats.value;
  }

  /** The figures, waited for at most STATS_DEADLINE_MS; failed or late, the last values read. */
  private async freshStats(): Promise<ClusterStats | null> {
    // A read still hanging from an earlier scrape is waited for again, never started twice.
    this.reading ??= this.readStats(STATS_TIMEOUT_MS).finally(() => (this.reading = null));
    try {
      const read = await within(STATS_DEADLINE_MS, this.reading);
      if (read === 'timeout') throw new Error(`no answer within ${STATS_DEADLINE_MS} ms`);
      return (this.lastKnown = read);
    } catch (err) {
      this.log.warn({ err }, 'metrics: could not read the users figures; reporting the last known');
      this.stats = null;
      return this.lastKnown;
    }
  }
}
