import pg from 'pg';
import { isDatabaseUnavailable } from './pool.js';

// Only errors PostgreSQL sent carry a SQLSTATE: "EPERM" from a file system has five capitals too.
const sqlstate = (err: unknown): string | null => (err instanceof pg.DatabaseError && typeof err.code === 'string' ? err.code : null);

// SQLSTATE classes caused by the values of a statement, not by the server or the query:
// 22 data exception, 23 integrity constraint violation, 54 program limit exceeded.
const DATA_ERROR_CLASSES = new Set(['22', '23', '54']);

/** Whether PostgreSQL refused a statement because of the values in it. */
export function isDataError(err: unknown): boolean {
  const code = sqlstate(err);
  return code !== null && DATA_ERROR_CLASSES.has(code.slice(0, 2));
}

// Descriptions for the data errors hostile input can cause. PostgreSQL's own messages name
// indexes and constraints, which stay in the log.
const DATA_ERRORS: Record<string, string> = {
  '22021': 'a value holds a byte sequence the database cannot store',
  '22P05': 'a value holds a character the database cannot store',
  '22001': 'a value is too long for its column',
  '22003': 'a number is out of range',
  '22008': 'a date is out of range',
  '23505': 'it collides with a record already stored',
  '23514': 'a value breaks a rule of the database',
  '54000': 'a value is too large for a database index',
};

/** Whether PostgreSQL cancelled a statement for running past statement_timeout. */
export function isStatementTimeout(err: unknown): boolean {
  return sqlstate(err) === '57014';
}

/** A short description of a data error, safe to show: no SQL object names. */
export function describeDataError(err: unknown): string {
  const code = sqlstate(err) ?? '?????';
  const known = DATA_ERRORS[code];
  if (known) return `${known} (SQLSTATE ${code})`;
  const cls = code.slice(0, 2);
  const kind = cls === '22' ? 'a malformed or out-of-range value' : cls === '23' ? 'a broken constraint' : 'a database limit';
  return `the database refused it: ${kind} (SQLSTATE ${code})`;
}

/**
 * A run failure caused by the database, described without hosts, SQL or object names; null
 * when the error did not come from the database.
 */
export function describeDatabaseError(err: unknown): string | null {
  if (isDatabaseUnavailable(err)) return 'the database became unavailable';
  const code = sqlstate(err);
  if (!code) return null;
  if (code === '57014') return 'a database statement took longer than the statement timeout (SQLSTATE 57014)';
  return `a database operation failed (SQLSTATE ${code})`;
}
