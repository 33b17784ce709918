import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parse as parseCsv } from 'csv-parse/sync';
import { parseUserCsv, splitPlainCsv } from '../src/pipeline/parseUserCsv.js';
import { userCsv } from './support/fixtures.js';

const NOW = Date.UTC(2026, 10, 22);
const parse = (text: string | Buffer) => parseUserCsv(Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8'), NOW);
const ok = (text: string | Buffer) => {
  const r = parse(text);
  if (!r.ok) throw new Error(`expected ok, got: ${r.reason}`);
  return r.data;
};
const reason = (text: string | Buffer) => {
  const r = parse(text);
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.data)}`);
  return r.reason;
};

describe('parseUserCsv: accepted input', () => {
  it('parses the sample shape, with a space after each comma', () => {
    expect(ok('first_name, last_name, birthts\nSusan, Lee, 612302400000\n')).toEqual({
      firstName: 'Susan',
      lastName: 'Lee',
      birthts: 612302400000,
    });
  });

  it('finds columns by header in any order, case-insensitively, ignoring extra columns', () => {
    expect(ok(' BirthTS ,email, Last_Name,FIRST_NAME\n1000,a@b.c,Lee,Susan\n')).toEqual({
      firstName: 'Susan',
      lastName: 'Lee',
      birthts: 1000,
    });
  });

  it('handles a UTF-8 BOM, CRLF line ends and blank lines', () => {
    const text = '\uFEFFfirst_name,last_name,birthts\r\n\r\n  \r\nSusan,Lee,5\r\n\r\n';
    expect(ok(text)).toEqual({ firstName: 'Susan', lastName: 'Lee', birthts: 5 });
  });

  it('handles quoted fields with commas and quotes, and trims values', () => {
    const data = ok('first_name,last_name,birthts\n"  Mary, Jr. ","O""Neil Smith", " 42 "\n');
    expect(data).toEqual({ firstName: 'Mary, Jr.', lastName: 'O"Neil Smith', birthts: 42 });
  });

  it('parses a quoted line break, but refuses it inside a name, as every control character', () => {
    expect(reason('first_name,last_name,birthts\n"Mary","O\nNeil",42\n')).toBe('last_name contains the control character U+000A at position 2');
    expect(reason('first_name,last_name,birthts\nMa\u0000ry,Lee,42\n')).toBe('first_name contains the control character U+0000 at position 3');
    expect(reason('first_name,last_name,birthts\nMary,L\u001bee,42\n')).toBe('last_name contains the control character U+001B at position 2');
    expect(reason('first_name,last_name,birthts\nMary,Lee\u0085x,42\n')).toBe('last_name contains the control character U+0085 at position 4');
    expect(reason('first_name,last_name,birthts\n\u{1F600}\u0007,Lee,42\n')).toBe('first_name contains the control character U+0007 at position 2');
    // Separators and bidirectional controls too: they break lines or show a name reversed.
    expect(reason('first_name,last_name,birthts\nMary,L\u202eee,42\n')).toBe('last_name contains the control character U+202E at position 2');
    expect(reason('first_name,last_name,birthts\nMa\u2028ry,Lee,42\n')).toBe('first_name contains the control character U+2028 at position 3');
    // Tabs and other whitespace at either end are trimmed like spaces, so they never reach a name.
    expect(ok('first_name,last_name,birthts\n\tMary\t,Lee,42\n').firstName).toBe('Mary');
  });

  it.each([
    ['\u200b', 'U+200B'],
    ['\u200c', 'U+200C'],
    ['\u200d', 'U+200D'],
    ['\u2060', 'U+2060'],
    ['\ufeff', 'U+FEFF'],
    ['\u00ad', 'U+00AD'],
    ['\u200e', 'U+200E'],
    ['\u200f', 'U+200F'],
    ['\u061c', 'U+061C'],
    // More of Unicode's Default_Ignorable_Code_Point.
    ['\u2063', 'U+2063'],
    ['\u180e', 'U+180E'],
    ['\u3164', 'U+3164'],
    ['\u034f', 'U+034F'],
    ['\ufe0f', 'U+FE0F'],
    ['\u{e0041}', 'U+E0041'],
  ])('refuses a name with the invisible character %j (%s), which would look like another name', (char, code) => {
    expect(reason(`first_name,last_name,birthts\nMa${char}ry,Lee,42\n`)).toBe(`first_name contains the invisible character ${code} at position 3`);
    expect(reason(`first_name,last_name,birthts\nMary,L${char}ee,42\n`)).toBe(`last_name contains the invisible character ${code} at position 2`);
  });

  it('stores names in NFC: "e" + U+0301 becomes "é"', () => {
    expect(ok('first_name,last_name,birthts\nRene\u0301e,Zoe\u0308,42\n')).toMatchObject({ firstName: 'Ren\u00e9e', lastName: 'Zo\u00eb' });
  });

  it('refuses a name longer than 256 characters, counting characters, not bytes', () => {
    expect(ok(userCsv('\u{1F600}'.repeat(256), 'Lee', 1)).firstName).toHaveLength(512);
    expect(reason(userCsv('a'.repeat(257), 'Lee', 1))).toBe('first_name is 257 characters long, over the limit of 256');
  });

  it('accepts negative birthts (before 1970) and a file without a final newline', () => {
    expect(ok('first_name,last_name,birthts\nAda,Lovelace,-4849920000000').birthts).toBe(-4849920000000);
  });

  it('accepts non-ASCII names', () => {
    expect(ok(userCsv('Zoë', 'Łukasiewicz', 0)).lastName).toBe('Łukasiewicz');
  });

  it('accepts a birth time of exactly now', () => {
    expect(ok(userCsv('A', 'B', NOW)).birthts).toBe(NOW);
  });
});

describe('parseUserCsv: every rejection reason', () => {
  it('rejects bytes that are not UTF-8', () => {
    expect(reason(Buffer.from([0x66, 0x69, 0xff, 0xfe, 0x0a]))).toBe('not valid UTF-8 text');
  });

  it('rejects an empty file', () => {
    expect(reason('')).toBe('the file is empty');
    expect(reason('\n\n  \n')).toBe('the file is empty');
  });

  it('rejects a header without a data row', () => {
    expect(reason('first_name,last_name,birthts\n')).toBe('no data row after the header');
  });

  it('rejects more than one data row', () => {
    expect(reason('first_name,last_name,birthts\nA,B,1\nC,D,2\n')).toBe('expected exactly one data row, found 2');
  });

  it('rejects a header missing required columns, naming them', () => {
    expect(reason('first_name,surname,born\nA,B,1\n')).toBe(
      'header is missing columns last_name, birthts (found: "first_name", "surname", "born")',
    );
    expect(reason('first_name,last_name\nA,B\n')).toMatch(/^header is missing column birthts/);
  });

  it('rejects a required column that appears twice', () => {
    expect(reason('first_name,last_name,birthts,BirthTS\nA,B,1,2\n')).toBe('column "birthts" appears twice in the header');
  });

  it('rejects a row whose field count differs from the header', () => {
    expect(reason('first_name,last_name,birthts\nA,B\n')).toBe(
      'malformed CSV: line 2 has a different number of fields than the header',
    );
  });

  it('rejects an unclosed quote', () => {
    expect(reason('first_name,last_name,birthts\n"A,B,1\n')).toBe('malformed CSV: a quoted field is never closed');
  });

  it('rejects a misplaced quote', () => {
    expect(reason('first_name,last_name,birthts\nA"x",B,1\n')).toMatch(/^malformed CSV: misplaced quote on line 2/);
  });

  it('rejects an empty first_name or last_name', () => {
    expect(reason('first_name,last_name,birthts\n  ,Lee,1\n')).toBe('first_name is empty');
    expect(reason('first_name,last_name,birthts\nSusan,"",1\n')).toBe('last_name is empty');
  });

  it('rejects an empty birthts', () => {
    expect(reason('first_name,last_name,birthts\nSusan,Lee, \n')).toBe('birthts is empty');
  });

  it.each(['abc', '1.5', '1e12', '12 34', '0x10', '2001-01-01'])('rejects a non-integer birthts %j', (v) => {
    expect(reason(`first_name,last_name,birthts\nSusan,Lee,${v}\n`)).toBe(
      `birthts must be an integer number of milliseconds, got ${JSON.stringify(v)}`,
    );
  });

  it('rejects a birthts out of range', () => {
    expect(reason(userCsv('A', 'B', '99999999999999999999'))).toBe('birthts "99999999999999999999" is out of range');
    expect(reason(userCsv('A', 'B', '-62135596800001'))).toBe('birthts "-62135596800001" is out of range');
  });

  it('rejects a birthts in the future', () => {
    expect(reason(userCsv('A', 'B', NOW + 1))).toBe(`birthts ${NOW + 1} (2026-11-22T00:00:00.001Z) is in the future`);
  });
});

describe('splitPlainCsv: the hand-split fast path', () => {
  const csvParse = (text: string) => {
    try {
      const records: string[][] = parseCsv(text, { bom: true, trim: true, skip_empty_lines: true, skip_records_with_empty_values: true, relax_column_count: false });
      return records;
    } catch {
      return 'error';
    }
  };

  it('agrees with csv-parse whenever it takes a file', () => {
    // Dense in the characters that matter: separators, spaces, quotes, line ends, odd whitespace.
    const char = fc.constantFrom(',', ',', ' ', ' ', '\n', '\n', '"', '\r', '\t', '\u00a0', '\u2028', '\ufeff', 'a', 'b', 'é', '1', '日');
    let taken = 0;
    fc.assert(
      fc.property(fc.array(char, { maxLength: 30 }).map((a) => a.join('')), (text) => {
        const fast = splitPlainCsv(text);
        if (fast === null) return;
        taken++;
        expect(fast).toEqual(csvParse(text));
      }),
      { numRuns: 20_000 },
    );
    expect(taken).toBeGreaterThan(50);
  });

  it('takes the usual file, and leaves quotes, CRLF and odd whitespace to csv-parse', () => {
    expect(splitPlainCsv('first_name, last_name, birthts\nSusan, Lee, 612302400000\n')).toEqual([
      ['first_name', 'last_name', 'birthts'],
      ['Susan', 'Lee', '612302400000'],
    ]);
    for (const text of ['a,b\r\nc,d\r\n', 'a,"b"\nc,d\n', '\ufeffa,b\nc,d\n', 'a,b\nc\u00a0,d\n', 'a,b\nc,d\ne,f\n', 'a,b\nc\n']) expect(splitPlainCsv(text)).toBeNull();
  });
});
