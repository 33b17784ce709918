import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';

/**
 * A CSV byte stream from records as they arrive: header first, RFC 4180 quoting (fields with
 * commas, quotes or line breaks are quoted) and CRLF line ends. Used for output.csv and for
 * `GET /data?format=csv`.
 */
export function csvStream(columns: readonly string[], records: AsyncIterable<string[]> | Iterable<string[]>): Readable {
  const csv = stringify({ header: true, columns: [...columns], record_delimiter: '\r\n' });
  const source = Readable.from(records);
  // pipe() does not forward errors: a failed source must fail the consumer, not stall it.
  source.on('error', (err) => csv.destroy(err));
  return source.pipe(csv);
}
