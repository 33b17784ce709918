import { describeDatabaseError } from '../db/index.js';

/**
 * The object store failed as a whole (not one object): the run cannot go on. The message is
 * short and stable, fit for the run report; the cause, with hosts and paths, goes to the log.
 */
export class StoreFailure extends Error {
  override name = 'StoreFailure';
}

/**
 * What a failed run reports through the API and the CLI: a short, stable description with
 * no host:port, path or SQL object name. The full error is logged separately.
 */
export function describeFailure(err: unknown): string {
  if (err instanceof StoreFailure) return err.message;
  return describeDatabaseError(err) ?? 'an internal error stopped the run (see the service log)';
}
