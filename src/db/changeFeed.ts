import pg from 'pg';
import type { Events } from '../events.js';
import { SafeEmitter } from '../events.js';
import type { Logger } from '../log.js';
import type { Database, Queryable } from './pool.js';

// NOTIFY is transactional: listeners hear it when the batch that changed users commits.
const USERS_CHANGED = 'userjoin_users_changed';
const USERS_ERASED = 'userjoin_users_erased';
const RECONNECT_MS = 1000;

/** Tells every instance (through LISTEN) that users changed. Call inside the changing transaction. */
export async function notifyUsersChanged(tx: Queryable): Promise<void> {
  await tx.query(`SELECT pg_notify($1, '')`, [USERS_CHANGED]);
}

/** Tells every instance that users were erased: caches of their photos go too. Inside the erasing transaction. */
export async function notifyUsersErased(tx: Queryable): Promise<void> {
  await tx.query(`SELECT pg_notify($1, '')`, [USERS_ERASED]);
}

export interface ChangeFeedHandlers {
  /** Users changed, in this or another instance. */
  onChange(): void;
  /** Users were erased, in this or another instance (onChange is called too). */
  onErased(): void;
  /** Listening (again): from now on, every change is reported. */
  onListening(): void;
  /** The connection is gone; changes and erasures may go unreported until onListening. */
  onLost(): void;
}

/** When the feed goes down and comes back, for health, metrics and whoever waits on it. */
export interface ChangeFeedEvents {
  /** Listening (again), after onListening. */
  listening: [];
  /** The connection failed, after onLost; it reconnects after a pause. Not said on close(). */
  lost: [{ err: unknown }];
}

export interface ChangeFeed {
  /** Listening side only. */
  readonly events: Events<ChangeFeedEvents>;
  close(): Promise<void>;
}

/**
 * Keeps one dedicated connection LISTENing for user changes, reconnecting after failures.
 * While it is down, onLost has been called, so callers never trust a stale view.
 */
export function listenForUserChanges(pool: Database, handlers: ChangeFeedHandlers, log: Logger): ChangeFeed {
  // A listener that throws must not stop the reconnecting.
  const emitter = new SafeEmitter<ChangeFeedEvents>(log, 'change feed');
  let closed = false;
  let client: pg.Client | null = null;
  let timer: NodeJS.Timeout | null = null;

  const lost = (err?: unknown) => {
    if (!client) return;
    const c = client;
    client = null;
    handlers.onLost();
    c.removeAllListeners();
    c.on('error', () => undefined);
    void c.end().catch(() => undefined);
    if (closed) return;
    log.warn({ err }, 'lost the user change feed; page cache off until it is back');
    timer = setTimeout(connect, RECONNECT_MS);
    emitter.emit('lost', { err });
  };

  const connect = () => {
    timer = null;
    if (closed) return;
    const c = new pg.Client(pool.options);
    client = c;
    c.on('error', lost);
    c.on('end', () => lost());
    c.on('notification', (n) => (n.channel === USERS_ERASED ? handlers.onErased() : handlers.onChange()));
    c.connect()
      .then(() => c.query(`LISTEN ${USERS_CHANGED}; LISTEN ${USERS_ERASED}`))
      .then(() => {
        if (client !== c) return;
        handlers.onListening();
        emitter.emit('listening');
      })
      .catch(lost);
  };
  connect();

  return {
    events: emitter.events,
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = null;
      handlers.onLost();
      await c?.end().catch(() => undefined);
    },
  };
}
