import { EventEmitter } from 'node:events';
import type { Logger } from './log.js';

/** The listening side of an emitter: listeners cannot emit. */
export type Events<T extends Record<keyof T, unknown[]>> = Pick<EventEmitter<T>, 'on' | 'once' | 'off'>;

/**
 * Typed events that tell tests, metrics and logs what a long-lived part is doing. A listener
 * that throws must not break its emitter's bookkeeping: it is logged, never rethrown.
 */
export class SafeEmitter<T extends Record<keyof T, unknown[]>> {
  private readonly emitter = new EventEmitter<T>();
  /** For listeners. */
  readonly events: Events<T> = this.emitter;

  constructor(
    private readonly log: Logger,
    /** Names the emitter in the log line of a failed listener. */
    private readonly what: string,
  ) {}

  emit<K extends keyof T & string>(name: K, ...args: T[K]): void {
    try {
      // Typed at the call sites; TypeScript cannot check a generic K against the map here.
      (this.emitter as EventEmitter).emit(name, ...args);
    } catch (err) {
      this.log.error({ err, event: name }, `a listener of ${this.what} events failed`);
    }
  }
}
