import type { EventsConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Events } from '../events.js';
import { SafeEmitter } from '../events.js';
import type { Runner } from '../runs/coordinator.js';
import type { EventBatchOutcome } from '../runs/eventBatch.js';

const MAX_BACKOFF_MS = 5 * 60_000;

/** What the event loop reports as it goes, for metrics, logs and whoever waits on it. */
export interface EventProcessorEvents {
  /** A batch is over: processed (more may be pending), nothing to do, or busy elsewhere. */
  batch: [{ outcome: EventBatchOutcome }];
  /** Nothing more to do for now: the loop waits up to waitMs, or until woken. */
  idle: [{ waitMs: number }];
  /** A batch failed; its events stay pending, and the next try comes after retryInMs. */
  failed: [{ err: unknown; retryInMs: number }];
}

/**
 * Takes pending events in batches, on every instance: right away when this instance recorded
 * some, otherwise every pollMs (another instance may have). Only the run-lock holder works,
 * so the instances take turns. Also rewrites output.csv when it is due.
 */
export class EventProcessor {
  // A listener that throws must not stop the loop.
  private readonly emitter: SafeEmitter<EventProcessorEvents>;
  readonly events: Events<EventProcessorEvents>;
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private stopped = false;
  private loop: Promise<void> | null = null;
  /** Failed batches in a row: the pause before the next try grows with them. */
  private failures = 0;

  constructor(
    private readonly runner: Runner,
    private readonly metrics: Metrics,
    private readonly config: EventsConfig,
    private readonly log: Logger,
  ) {
    this.emitter = new SafeEmitter(log, 'event loop');
    this.events = this.emitter.events;
  }

  start(): void {
    this.loop ??= this.run();
  }

  wake(): void {
    this.woken = true;
    // While failing, the pause holds (see run).
    if (this.failures === 0) this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.woken = false;
      let waitMs = this.config.pollMs;
      try {
        const out = await this.runner.runEvents({
          maxKeys: this.config.maxKeys,
          exportIntervalMs: this.config.exportIntervalMs,
          coalesceMs: this.config.coalesceMs,
        });
        this.failures = 0;
        this.emitter.emit('batch', { outcome: out });
        if (out.kind === 'finished') {
          this.metrics.eventBatch(out.counts);
          if (out.more) continue;
        }
        // Not sooner than every 50 ms, whatever the clocks say.
        if (out.kind !== 'busy' && out.exportInMs !== null) waitMs = Math.max(50, Math.min(waitMs, out.exportInMs));
      } catch (err) {
        // Recorded in a run's row already; the events stay pending and are tried again, after
        // a pause that doubles with each failure in a row (1 s to 5 min): an outage must not
        // write a failed run every second.
        this.failures++;
        waitMs = Math.min(MAX_BACKOFF_MS, this.config.pollMs * 2 ** (this.failures - 1));
        this.log.error({ err, retryInMs: waitMs }, 'event batch failed; its events stay pending');
        this.emitter.emit('failed', { err, retryInMs: waitMs });
      }
      // After a failure, new events do not cut the pause short.
      if ((!this.woken || this.failures > 0) && !this.stopped) {
        const pause = this.sleep(waitMs);
        // After the pause is set up, so a listener may wake the loop.
        if (this.failures === 0) this.emitter.emit('idle', { waitMs });
        await pause;
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = null;
        done();
      };
    });
  }
}
