import { pino } from 'pino';

export type Logger = pino.Logger;

/** JSON lines on stderr, so stdout stays free for a command's own output (e.g. --json). */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { service: 'userjoin', ...bindings } }, pino.destination(2));
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
