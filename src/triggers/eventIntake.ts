import type { Database } from '../db/index.js';
import { recordEvents } from '../db/events.js';
import type { EventOutcome, Metrics } from '../metrics.js';
import { checkKey, classifyKey } from '../core/keys.js';

// Event-driven ingestion: bucket notifications and the folder watch name keys; the keys are
// recorded in pending_events, and the processor runs event batches through the same run code
// as everything else. The scheduled run stays as the reconcile that catches missed events.

/** Whether an event's key is worth recording: a user file with a usable name. */
export function screenKey(key: string): EventOutcome {
  const cls = classifyKey(key);
  if (!cls) return 'not_user_file';
  // Refused names are never stored (a NUL cannot be); the scheduled listing reports them.
  if (checkKey(key, cls.userId) !== null) return 'refused_key';
  return 'accepted';
}

export type EventSource = 's3' | 'folder';

/** Records keys that events named, durably, and wakes the processor. */
export class EventIntake {
  constructor(
    private readonly db: Database,
    private readonly metrics: Metrics,
    private readonly processor: { wake(): void },
  ) {}

  /**
   * Records the keys worth it. Returns what became of each event, by outcome: those given in
   * `ignored` (already screened out by the caller) plus the keys' own.
   */
  async accept(source: EventSource, keys: string[], ignored: Partial<Record<EventOutcome, number>> = {}): Promise<Partial<Record<EventOutcome, number>>> {
    const counts: Partial<Record<EventOutcome, number>> = { ...ignored };
    const accepted: string[] = [];
    for (const key of keys) {
      const outcome = screenKey(key);
      counts[outcome] = (counts[outcome] ?? 0) + 1;
      if (outcome === 'accepted') accepted.push(key);
    }
    await recordEvents(this.db, accepted);
    for (const [outcome, n] of Object.entries(counts)) this.metrics.eventsReceived(source, outcome as EventOutcome, n);
    if (accepted.length > 0) this.processor.wake();
    return counts;
  }
}
