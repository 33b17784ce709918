import fc from 'fast-check';
import sharp from 'sharp';

/**
 * Generators of hostile source files for property-based tests, each with the outcome
 * docs/input-rules.md promises for it. The rules, restated here as the specification:
 * - a CSV is valid when it is UTF-8, has a header naming first_name, last_name and birthts
 *   once each (trimmed, any case, any order, extra columns allowed) and exactly one data row;
 *   names are trimmed, non-empty, at most 256 characters, without control or invisible
 *   characters, and stored in NFC;
 *   birthts is an integer of milliseconds between year 1 and now;
 * - an image is valid when sharp decodes it;
 * - a key is refused when it is over 1024 bytes, holds a control character, or its user_id
 *   is blank, holds an invisible character, is "." or "..", or is not in NFC;
 * - output.csv writes a text cell starting with = + - @, a tab or a CR (or a full-width
 *   = + - @) with a leading '.
 */

export const MIN_BIRTHTS = -62_135_596_800_000;
export const MAX_CSV_BYTES = 4096;

/** How many cases a property runs: FUZZ_RUNS overrides the CI default, for long local runs. */
export function fuzzRuns(ciDefault: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(n) && n > 0 ? n : ciDefault;
}

/** fast-check parameters; FUZZ_SEED (and FUZZ_PATH) replay a failure it printed. */
export function fuzzParams(ciDefault: number): fc.Parameters<unknown> {
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  return { numRuns: fuzzRuns(ciDefault), seed, path: process.env.FUZZ_PATH, endOnFailure: true };
}

// What names and keys must not hold: control characters, line and paragraph separators, and
// bidirectional controls (they make a name display as something else).
export const FORBIDDEN = /[\p{Cc}\p{Cs}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
// What user_ids and names must not hold either: zero-width characters, the soft hyphen and
// direction marks, and the rest of Unicode's Default_Ignorable_Code_Point (a name with one
// looks exactly like another).
export const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\u00ad\u061c\u200b-\u200f\u2060\ufeff]/u;
const invisibleChar = fc.constantFrom(
  ...['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u200e', '\u200f', '\u061c'],
  ...['\u2063', '\u180e', '\u3164', '\u034f', '\ufe0f', '\u{e0041}'],
);

const controlChar = fc.constantFrom(
  ...['\u0000', '\u0001', '\u0007', '\b', '\t', '\n', '\u000b', '\f', '\r', '\u001b', '\u001f', '\u007f', '\u0085', '\u009b'],
  ...['\u2028', '\u2029', '\u202a', '\u202e', '\u2066', '\u2069'],
);
// Printable characters from all over Unicode: no controls, no lone surrogates.
const printableChar = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...'abcXYZ019 ,"\'=+-@;%#&<>\\/|*?.'.split('')) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom('\u00a0', '\u3000', '\ufeff', '\u200b', '\u200d', '\u200f', '\u00ad', '\u061c', '\u3164', '\ufe0f', 'é', 'e\u0301', 'ß', '名', '😀', '👩‍👩‍👧') },
).filter((c) => !FORBIDDEN.test(c));

const text = (min: number, max: number) => fc.string({ unit: printableChar, minLength: min, maxLength: max });

/** A name as it may appear in a valid CSV, before trimming. */
const validName = text(1, 12).filter((s) => s.trim() !== '' && [...s.trim()].length <= 256 && !INVISIBLE.test(s.trim()));

/** A name that must be refused: a control or invisible character inside it, blank, or too long. */
const badName = fc.oneof(
  fc.tuple(text(1, 5), fc.oneof(controlChar, invisibleChar), text(1, 5))
    .filter(([a, , b]) => a.trim() !== '' && b.trim() !== '')
    .map(([a, c, b]) => `${a.trimEnd()}${c}${b.trimStart()}`),
  fc.constantFrom('', '   ', '\t \t'),
  fc.constant('x'.repeat(257)),
);

const validBirthts = fc.bigInt({ min: BigInt(MIN_BIRTHTS), max: BigInt(Date.now() - 60_000) }).chain((n) =>
  fc.tuple(fc.constantFrom('', '+', '0', '00'), fc.constantFrom('', ' ', '  ')).map(([pre, pad]) => {
    const digits = n < 0n ? `-${(-n).toString()}` : pre === '+' ? `+${n.toString()}` : `${pre.replace('+', '')}${n.toString()}`;
    return { raw: `${pad}${digits}${pad}`, value: Number(n) };
  }),
);
const badBirthts = fc.oneof(
  fc.constantFrom('', 'abc', '1.5', '1e12', '0x10', '12 34', '2001-01-01', '99999999999999999999', `${MIN_BIRTHTS - 1}`),
  fc.bigInt({ min: BigInt(Date.now() + 86_400_000), max: 10n ** 15n }).map((n) => n.toString()),
);

const REQUIRED = ['first_name', 'last_name', 'birthts'] as const;
const headerSpelling = (name: string) =>
  fc.tuple(fc.constantFrom('lower', 'upper', 'mixed'), fc.constantFrom('', ' ', '\t')).map(([c, pad]) => {
    const n = c === 'lower' ? name : c === 'upper' ? name.toUpperCase() : name[0]!.toUpperCase() + name.slice(1);
    return `${pad}${n}${pad}`;
  });
const extraColumn = text(1, 8).filter((s) => !(REQUIRED as readonly string[]).includes(s.trim().toLowerCase()));

/** A CSV field, quoted as RFC 4180 requires (and sometimes when it need not be). */
function field(v: string, forceQuote: boolean): string {
  return forceQuote || /[",\r\n]/.test(v) || v !== v.trim() ? `"${v.replaceAll('"', '""')}"` : v;
}

export type CsvExpectation = { ok: true; firstName: string; lastName: string; birthts: number } | { ok: false };
export interface GeneratedCsv {
  bytes: Buffer;
  expect: CsvExpectation;
  /** What was generated, for reading a counterexample. */
  shape: string;
}

interface Layout {
  order: number[];
  spellings: string[];
  extras: string[];
  extraValues: string[];
  eol: string;
  bom: boolean;
  finalEol: boolean;
  blankLines: boolean;
  quoteAll: boolean;
}
const layout = fc.record({
  order: fc.shuffledSubarray([0, 1, 2], { minLength: 3, maxLength: 3 }),
  spellings: fc.tuple(headerSpelling('first_name'), headerSpelling('last_name'), headerSpelling('birthts')),
  extras: fc.array(extraColumn, { maxLength: 2 }),
  extraValues: fc.array(fc.oneof(text(0, 8), fc.tuple(text(0, 3), controlChar).map(([a, c]) => a + c)), { minLength: 2, maxLength: 2 }),
  eol: fc.constantFrom('\n', '\r\n'),
  bom: fc.boolean(),
  finalEol: fc.boolean(),
  blankLines: fc.boolean(),
  quoteAll: fc.boolean(),
}) as fc.Arbitrary<Layout>;

function render(l: Layout, values: [string, string, string], opts: { header?: string[]; rows?: number; dropField?: boolean } = {}): string {
  const header = opts.header ?? [...l.order.map((i) => l.spellings[i]!), ...l.extras];
  const row = [...l.order.map((i) => values[i]!), ...l.extras.map((_, i) => l.extraValues[i] ?? '')];
  if (opts.dropField) row.pop();
  const line = (cells: string[]) => cells.map((c) => field(c, l.quoteAll)).join(',');
  const lines = [line(header)];
  if (l.blankLines) lines.push('');
  for (let i = 0; i < (opts.rows ?? 1); i++) lines.push(line(row));
  return (l.bom ? '\ufeff' : '') + lines.join(l.eol) + (l.finalEol ? l.eol : '');
}

const valid = fc.tuple(layout, validName, validName, validBirthts).map(([l, f, s, b]): GeneratedCsv => ({
  bytes: Buffer.from(render(l, [f, s, b.raw])),
  expect: { ok: true, firstName: f.trim().normalize('NFC'), lastName: s.trim().normalize('NFC'), birthts: b.value + 0 },
  shape: 'valid',
}));

const invalid: fc.Arbitrary<GeneratedCsv> = fc.oneof(
  fc.tuple(layout, badName, validName, validBirthts, fc.boolean()).map(([l, bad, good, b, first]) => ({
    bytes: Buffer.from(render(l, first ? [bad, good, b.raw] : [good, bad, b.raw])),
    expect: { ok: false } as const,
    shape: 'bad name',
  })),
  fc.tuple(layout, validName, validName, badBirthts).map(([l, f, s, b]) => ({
    bytes: Buffer.from(render(l, [f, s, b])),
    expect: { ok: false } as const,
    shape: 'bad birthts',
  })),
  fc.tuple(layout, validName, validName, validBirthts, fc.constantFrom(0, 1, 2), fc.boolean()).map(([l, f, s, b, drop, twice]) => {
    const names = l.order.map((i) => l.spellings[i]!);
    const header = twice ? [...names, names[drop]!] : names.filter((_, i) => i !== drop);
    return { bytes: Buffer.from(render(l, [f, s, b.raw], { header })), expect: { ok: false } as const, shape: 'bad header' };
  }),
  fc.tuple(layout, validName, validName, validBirthts, fc.constantFrom(0, 2)).map(([l, f, s, b, rows]) => ({
    bytes: Buffer.from(render(l, [f, s, b.raw], { rows })),
    expect: { ok: false } as const,
    shape: `${rows} data rows`,
  })),
  fc.tuple(layout, validName, validName, validBirthts).map(([l, f, s, b]) => ({
    bytes: Buffer.from(render({ ...l, extras: [] }, [f, s, b.raw], { dropField: true })),
    expect: { ok: false } as const,
    shape: 'missing field',
  })),
  // A valid file with one byte that is not UTF-8 spliced in.
  fc.tuple(valid, fc.nat(), fc.constantFrom(0x80, 0xc3, 0xff, 0xfe, 0xed)).map(([v, at, byte]) => {
    const i = at % (v.bytes.length + 1);
    return { bytes: Buffer.concat([v.bytes.subarray(0, i), Buffer.from([byte]), v.bytes.subarray(i)]), expect: { ok: false } as const, shape: 'invalid UTF-8' };
  }),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => ({ bytes: Buffer.from(b), expect: { ok: false } as const, shape: 'random bytes' })),
  fc.constant({ bytes: Buffer.alloc(0), expect: { ok: false } as const, shape: 'empty' }),
  fc.constant({ bytes: Buffer.from(`first_name,last_name,birthts\n${'a'.repeat(MAX_CSV_BYTES)},b,1\n`), expect: { ok: false } as const, shape: 'too big' }),
);

/** A user CSV, valid about half the time. */
export const userCsvFile: fc.Arbitrary<GeneratedCsv> = fc.oneof(valid, invalid);

export interface GeneratedImage {
  bytes: Buffer;
  ok: boolean;
  shape: string;
}

/** Small real images in every accepted format; made once, since encoding is slow. */
export async function sampleImages(): Promise<Buffer[]> {
  const formats = ['png', 'jpeg', 'webp', 'gif', 'tiff', 'avif'] as const;
  return Promise.all(
    formats.map((f, i) => sharp({ create: { width: 4 + i, height: 3, channels: 3, background: { r: 40 * i, g: 90, b: 200 } } }).toFormat(f).toBuffer()),
  );
}

const MAGIC = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from([0xff, 0xd8, 0xff]), Buffer.from('GIF89a'), Buffer.from('RIFF\0\0\0\0WEBP')];

export function imageFile(samples: Buffer[]): fc.Arbitrary<GeneratedImage> {
  return fc.oneof(
    fc.constantFrom(...samples).map((bytes) => ({ bytes, ok: true, shape: 'valid' })),
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => ({ bytes: Buffer.from(b), ok: false, shape: 'random bytes' })),
    fc.tuple(fc.constantFrom(...MAGIC), fc.uint8Array({ minLength: 0, maxLength: 200 })).map(([m, b]) => ({
      bytes: Buffer.concat([m, Buffer.from(b)]),
      ok: false,
      shape: 'magic + random bytes',
    })),
  );
}

export type Backend = 'folder' | 's3rver' | 'radosgw';

// A folder name never contains "." and a file name always ends in one, so no key is ever
// both a file and a folder (a folder store cannot hold that).
const segmentChar = (backend: Backend, hostile: boolean) =>
  fc.oneof(
    { weight: 6, arbitrary: printableChar.filter((c) => c !== '/' && c !== '.') },
    // s3rver drops control characters from its listings; a real server (radosgw) keeps them.
    { weight: backend !== 's3rver' && hostile ? 1 : 0, arbitrary: controlChar.filter((c) => c !== '\u0000') },
    // Separators and bidirectional controls survive any S3 listing, so every backend gets them.
    { weight: hostile ? 1 : 0, arbitrary: fc.constantFrom('\u2028', '\u202e', '\u2067') },
  );

const folderName = (backend: Backend, hostile: boolean) =>
  fc.string({ unit: segmentChar(backend, hostile), minLength: 1, maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 200 && s.trim() === s);

/** A user_id: from a small pool, so users collide across folders, or anything printable. */
const userIdArb = (backend: Backend, hostile: boolean) =>
  fc.oneof(
    fc.constantFrom('1', '42', 'Zoë', 'a b', '100%', 'x+y'),
    fc.string({ unit: segmentChar(backend, hostile), minLength: 1, maxLength: 30 }),
    fc.constantFrom(' ', '  '),
  ).filter((u) => Buffer.byteLength(u) <= 180 && !u.startsWith('.'));

export interface GeneratedKey {
  key: string;
  userId: string;
}

export function keyArb(backend: Backend, ext: fc.Arbitrary<string>): fc.Arbitrary<GeneratedKey> {
  const hostile = true;
  return fc
    .tuple(
      fc.oneof(
        { weight: 5, arbitrary: fc.array(folderName(backend, hostile), { maxLength: 3 }) },
        // Deep nesting: long keys, over 1024 bytes where the store can hold them.
        { weight: 1, arbitrary: fc.array(fc.constantFrom('d'.repeat(150), 'é'.repeat(90)), { minLength: 4, maxLength: 9 }) },
      ),
      userIdArb(backend, hostile),
      ext,
    )
    .map(([dirs, userId, e]) => ({ key: [...dirs, `${userId}.${e}`].join('/'), userId }))
    // The minio client refuses to send keys over 1024 bytes, as S3 servers refuse to hold them.
    .filter((k) => backend === 'folder' || Buffer.byteLength(k.key) <= 1024);
}

export const csvExt = fc.constantFrom('csv', 'CSV', 'Csv');
export const imageExt = fc.constantFrom('png', 'PNG', 'jpg', 'jpeg', 'webp', 'gif', 'tif', 'tiff', 'avif');

/** Whether the key itself is refused, before any read. */
export function keyRefused(key: string, userId: string): boolean {
  return (
    Buffer.byteLength(key) > 1024 ||
    FORBIDDEN.test(key) ||
    userId.trim() === '' ||
    INVISIBLE.test(userId) ||
    userId === '.' ||
    userId === '..' ||
    userId !== userId.normalize('NFC')
  );
}

/** A text cell as output.csv writes it (CSV_NEUTRALIZE_FORMULAS on, the default). */
export function csvCell(text: string): string {
  return /^[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]/u.test(text) ? `'${text}` : text;
}
