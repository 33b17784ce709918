import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';

/** A cell: text, a number (never neutralized, so a negative birthts stays a number), or empty. */
export type CsvCell = string | number | null;

export interface CsvOptions {
  /** CSV_NEUTRALIZE_FORMULAS: see csvStream. */
  neutralizeFormulas: boolean;
}

/**
 * A CSV byte stream from records as they arrive: header first, RFC 4180 quoting (fields with
 * commas, quotes or line breaks are quoted) and CRLF line ends. Used for output.csv and for
 * `GET /data?format=csv`. With neutralizeFormulas (CSV_NEUTRALIZE_FORMULAS), a text cell
 * starting with = + - @, a tab or a CR (or a full-width = + - @) gets a leading ' (OWASP), so
 * a spreadsheet shows a name such as =HYPERLINK(...) instead of running it.
 */
export function csvStream(
  columns: readonly string[],
  records: AsyncIterable<CsvCell[]> | Iterable<CsvCell[]>,
  opts: CsvOptions,
): Readable {
  const csv = stringify({
    header: true,
    columns: [...columns],
    record_delimiter: '\r\n',
    // With a record_delimiter set, csv-stringify would leave a lone CR or LF unquoted.
    quote_record_delimiter: true,
    escape_formulas: opts.neutralizeFormulas,
  });
  const source = Readable.from(records);
  // pipe() does not forward errors: a failed source must fail the consumer, not stall it.
  source.on('error', (err) => csv.destroy(err));
  return source.pipe(csv);
}
