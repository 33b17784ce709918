import type { Database } from '../db/index.js';
import { countPendingUpTo, recordEvents } from '../db/events.js';
import type { Logger } from '../log.js';
import type { EventOutcome, Metrics } from '../metrics.js';
import { checkKey, classifyKey } from '../core/keys.js';

// Event-driven ingestion: bucket notifications and the folder watch name keys; the keys are
// recorded in pending_events, and the processor runs event batches through the same run code
// as everything else. The scheduled run stays as the reconcile that catches missed events.

/** Why the store could never hold an object under a key (ObjectStore.keyProblem), or null. */
export type StoreKeyRule = (key: string) => string | null;

/**
 * Whether an event's key is worth recording: a user file with a usable name, that the store
 * could hold (a forged key the folder store could never have is refused, not looked up).
 */
export function screenKey(key: string, storeRule: StoreKeyRule = () => null): EventOutcome {
  const cls = classifyKey(key);
  if (!cls) return 'not_user_file';
  // Refused names are never stored (a NUL cannot be); the scheduled listing reports them.
  if (checkKey(key, cls.userId) !== null || storeRule(key) !== null) return 'refused_key';
  return 'accepted';
}

export type EventSource = 's3' | 'folder';

export interface IntakeOptions {
  /** EVENT_BACKLOG_LIMIT: pending keys past which nothing more is recorded. */
  backlogLimit: number;
  storeRule?: StoreKeyRule;
  /** Milliseconds, for how long a backlog count is reused (performance.now unless a test says). */
  now?: () => number;
}

// Every admitted body would otherwise pay a backlog count (about 12 ms at 100,000 pending).
const BACKLOG_COUNT_REUSE_MS = 1000;

/** Records keys that events named, durably, and wakes the processor. */
export class EventIntake {
  /** The folder watch's keys are being dropped (said once, until the backlog is under the limit again). */
  private dropping = false;
  /** The last backlog count, plus the keys this process recorded since. */
  private counted: { atMs: number; n: number } | null = null;

  constructor(
    private readonly db: Database,
    private readonly metrics: Metrics,
    private readonly processor: { wake(): void },
    private readonly opts: IntakeOptions,
    private readonly log: Logger,
  ) {}

  /**
   * Whether pending_events holds EVENT_BACKLOG_LIMIT keys or more: then the webhook refuses
   * bodies. A count is reused for a second, plus what this process recorded since, while it
   * says "not full"; so across instances the limit is approximate by what the others record
   * within that second. A refusal always comes from a fresh count.
   */
  async backlogFull(): Promise<boolean> {
    const limit = this.opts.backlogLimit;
    const now = (this.opts.now ?? performance.now.bind(performance))();
    const last = this.counted;
    if (last && now - last.atMs < BACKLOG_COUNT_REUSE_MS && last.n < limit) return false;
    const n = await countPendingUpTo(this.db, limit);
    this.counted = { atMs: now, n };
    return n >= limit;
  }

  /**
   * Records the keys worth it. Returns what became of each event, by outcome: those given in
   * `ignored` (already screened out by the caller) plus the keys' own. The webhook checks
   * backlogFull before it reads a body; the folder watch's keys are checked here.
   */
  async accept(source: EventSource, keys: string[], ignored: Partial<Record<EventOutcome, number>> = {}): Promise<Partial<Record<EventOutcome, number>>> {
    const counts: Partial<Record<EventOutcome, number>> = { ...ignored };
    const accepted: string[] = [];
    for (const key of keys) {
      const outcome = screenKey(key, this.opts.storeRule);
      counts[outcome] = (counts[outcome] ?? 0) + 1;
      if (outcome === 'accepted') accepted.push(key);
    }
    if (source === 'folder' && accepted.length > 0 && (await this.dropForBacklog())) {
      // The folder is local and trusted, and has no sender to retry: the keys are dropped, and
      // the scheduled run (the reconcile, with SCHEDULE on) or POST /data finds those files.
      counts.accepted = 0;
      counts.backlog_full = accepted.length;
      accepted.length = 0;
    }
    await recordEvents(this.db, accepted);
    // Duplicates of pending keys count too: the estimate errs towards a fresh count.
    if (this.counted) this.counted.n += accepted.length;
    for (const [outcome, n] of Object.entries(counts)) this.metrics.eventsReceived(source, outcome as EventOutcome, n);
    if (accepted.length > 0) this.processor.wake();
    return counts;
  }

  private async dropForBacklog(): Promise<boolean> {
    const full = await this.backlogFull();
    if (full && !this.dropping) {
      this.log.warn({ backlogLimit: this.opts.backlogLimit }, 'pending events reached EVENT_BACKLOG_LIMIT: the folder watch drops keys until they are processed; the scheduled run (with SCHEDULE on) or POST /data finds those files');
    }
    this.dropping = full;
    return full;
  }
}
