import { CsvError, parse } from 'csv-parse/sync';
import type { CsvData } from '../core/model.js';
import { codePointName, firstControlChar, firstInvisibleChar } from '../core/text.js';

export type CsvResult = { ok: true; data: CsvData } | { ok: false; reason: string };

const REQUIRED = ['first_name', 'last_name', 'birthts'] as const;
// 0001-01-01T00:00:00Z. Earlier dates are surely typos, and PostgreSQL's range ends at 4713 BC.
const MIN_BIRTHTS = -62_135_596_800_000;
const INTEGER = /^[+-]?\d+$/;
// Generous for any real name, and it bounds what one row costs in every page of GET /data.
export const MAX_NAME_CHARS = 256;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses one user CSV: a header row and exactly one data row. Columns are found by their
 * (trimmed, case-insensitive) header, in any order; extra columns are ignored. Never throws:
 * every problem comes back as a reason an operator can act on.
 */
export function parseUserCsv(bytes: Uint8Array, now: number = Date.now()): CsvResult {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail('not valid UTF-8 text');
  }

  let records: string[][] | null = splitPlainCsv(text);
  if (!records) {
    try {
      records = parse(text, {
        bom: true,
        trim: true,
        skip_empty_lines: true,
        // Lines of only spaces or commas carry nothing; treat them as blank.
        skip_records_with_empty_values: true,
        relax_column_count: false,
      });
    } catch (err) {
      if (err instanceof CsvError) return fail(`malformed CSV: ${describeCsvError(err)}`);
      throw err;
    }
  }

  const [header, ...rows] = records;
  if (!header) return fail('the file is empty');
  const names = header.map((h) => h.trim().toLowerCase());
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n) && (REQUIRED as readonly string[]).includes(n)) return fail(`column "${n}" appears twice in the header`);
    seen.add(n);
  }
  const missing = REQUIRED.filter((c) => !names.includes(c));
  if (missing.length > 0) {
    // A header can hold half a million columns: name a few, count the rest.
    const shown = names.slice(0, 8).map(quote).join(', ') + (names.length > 8 ? ` and ${names.length - 8} more` : '');
    return fail(`header is missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (found: ${shown})`);
  }
  if (rows.length === 0) return fail('no data row after the header');
  if (rows.length > 1) return fail(`expected exactly one data row, found ${rows.length}`);
  const row = rows[0]!;
  const value = (col: (typeof REQUIRED)[number]) => (row[names.indexOf(col)] ?? '').trim();

  // Names are stored in NFC, not refused: "é" as e + U+0301 is the same name to any reader,
  // and a name is data, not a key, so normalising merges nothing and loses no user.
  const firstName = value('first_name').normalize('NFC');
  const lastName = value('last_name').normalize('NFC');
  const bad = checkName('first_name', firstName) ?? checkName('last_name', lastName);
  if (bad) return fail(bad);

  const raw = value('birthts');
  if (raw === '') return fail('birthts is empty');
  if (!INTEGER.test(raw)) return fail(`birthts must be an integer number of milliseconds, got ${quote(raw)}`);
  const birthts = Number(raw);
  if (!Number.isSafeInteger(birthts) || birthts < MIN_BIRTHTS) return fail(`birthts ${quote(raw)} is out of range`);
  if (birthts > now) return fail(`birthts ${raw} (${new Date(birthts).toISOString()}) is in the future`);

  return { ok: true, data: { firstName, lastName, birthts } };
}

// Anything that makes splitting on "," and "\n" differ from csv-parse: quotes, carriage
// returns, and every whitespace but the space (csv-parse and String.trim disagree on some).
const NOT_PLAIN = /["\r\t\v\f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;

/**
 * The records of the usual user CSV, a header line and a data line with no quotes, split by
 * hand; null for anything else, which csv-parse then reads. csv-parse set up for one small
 * file cost more than reading the file. test/parseUserCsv.test.ts checks that both agree.
 */
export function splitPlainCsv(text: string): string[][] | null {
  if (text.length > 4096 || NOT_PLAIN.test(text)) return null;
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length !== 2) return null;
  const records = lines.map((l) => l.split(',').map((f) => f.trim()));
  const [header, row] = records as [string[], string[]];
  // Blank rows and ragged rows have rules of their own; csv-parse applies them.
  if (header.length !== row.length || header.every((f) => f === '') || row.every((f) => f === '')) return null;
  return records;
}

/**
 * Why a name cannot be stored, or null. Control characters are refused rather than dropped:
 * a NUL cannot be stored at all, and a newline or an escape sequence in a name would spill
 * into every log line, terminal and spreadsheet that shows it.
 */
function checkName(column: string, v: string): string | null {
  if (v === '') return `${column} is empty`;
  const control = firstControlChar(v);
  if (control) return `${column} contains the control character ${codePointName(control.char)} at position ${[...v.slice(0, control.index)].length + 1}`;
  const invisible = firstInvisibleChar(v);
  if (invisible) return `${column} contains the invisible character ${codePointName(invisible.char)} at position ${[...v.slice(0, invisible.index)].length + 1}`;
  const chars = [...v].length;
  if (chars > MAX_NAME_CHARS) return `${column} is ${chars} characters long, over the limit of ${MAX_NAME_CHARS}`;
  return null;
}

function fail(reason: string): CsvResult {
  return { ok: false, reason };
}

function quote(v: string): string {
  return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
}

function describeCsvError(err: CsvError): string {
  switch (err.code) {
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH':
    case 'CSV_RECORD_INCONSISTENT_COLUMNS':
      return `line ${Number(err.lines)} has a different number of fields than the header`;
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is never closed';
    case 'CSV_INVALID_CLOSING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
      return `misplaced quote on line ${Number(err.lines)}`;
    default:
      return err.message;
  }
}
