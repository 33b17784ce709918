import sharp from 'sharp';
import { pngDeclaring, userCsv } from './fixtures.js';

// Realistic-looking users for the console's tests and its screenshot: names, birth dates
// and drawn portraits, made from a seed, so every run gets the same people.

const FIRST = ['Amara', 'Lucas', 'Sofia', 'Kenji', 'Ingrid', 'Mateo', 'Priya', 'Oliver', 'Fatima', 'Noah', 'Elena', 'Tomasz', 'Aisha', 'Liam', 'Chloé', 'Diego', 'Hana', 'Yusuf', 'Marta', 'Ravi'];
const LAST = ['Okafor', 'Silva', 'Rossi', 'Tanaka', 'Larsen', 'García', 'Sharma', 'Bennett', 'Haddad', 'Kowalski', 'Novak', 'Nguyen', 'Müller', 'Dubois', 'Costa', 'Ibrahim', 'Kim', 'Andersson', 'Moreau', 'Walsh'];
const SKIN = ['#f1c7a5', '#e0ac85', '#c68863', '#8d5a3b', '#5c3a24', '#f5d5bd'];
const HAIR = ['#2b1b12', '#5a3a1e', '#a36b2c', '#d8b46a', '#777777', '#1a1a1a', '#b5482b'];
const BACK = ['#8fb3e8', '#a5d6a7', '#f4c28b', '#d1a6e0', '#9fd8d6', '#f2a7a7', '#c5cbe0'];

/** A small deterministic PRNG (mulberry32): numbers in [0, 1). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Person {
  userId: string;
  firstName: string;
  lastName: string;
  birthts: number;
  /** Absent for a user without a photo. */
  photo?: { key: string; bytes: Buffer };
}

/** A drawn head-and-shoulders portrait, as an SVG. */
function portrait(rnd: () => number): string {
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const skin = pick(SKIN);
  const hair = pick(HAIR);
  const shirt = `hsl(${Math.floor(rnd() * 360)} 45% 45%)`;
  const longHair = rnd() < 0.5;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320" viewBox="0 0 320 320">
    <rect width="320" height="320" fill="${pick(BACK)}"/>
    ${longHair ? `<rect x="92" y="96" width="136" height="150" rx="60" fill="${hair}"/>` : ''}
    <path d="M40 320c10-70 60-100 120-100s110 30 120 100z" fill="${shirt}"/>
    <rect x="140" y="180" width="40" height="50" fill="${skin}"/>
    <ellipse cx="160" cy="140" rx="58" ry="68" fill="${skin}"/>
    <path d="M100 128c0-48 30-70 60-70s62 22 62 70c-14-24-40-34-62-34s-46 10-60 34z" fill="${hair}"/>
    <circle cx="139" cy="146" r="6" fill="#2a2a2a"/><circle cx="181" cy="146" r="6" fill="#2a2a2a"/>
    <path d="M142 178q18 14 36 0" stroke="#7a3b2e" stroke-width="5" fill="none" stroke-linecap="round"/>
  </svg>`;
}

/**
 * count people with ids from firstId. About four in five have a photo, in PNG, JPEG or WebP,
 * some in a nested folder.
 */
export async function people(count: number, opts: { seed?: number; firstId?: number } = {}): Promise<Person[]> {
  const rnd = random(opts.seed ?? 42);
  const now = Date.now();
  const out: Person[] = [];
  for (let i = 0; i < count; i++) {
    const userId = String((opts.firstId ?? 1000) + i);
    const firstName = FIRST[Math.floor(rnd() * FIRST.length)]!;
    const lastName = LAST[Math.floor(rnd() * LAST.length)]!;
    // 18 to 80 years old, at a whole minute.
    const birthts = Math.round((now - (18 + rnd() * 62) * 365.25 * 86_400_000) / 60_000) * 60_000;
    const person: Person = { userId, firstName, lastName, birthts };
    if (rnd() < 0.8) {
      const format = (['png', 'jpeg', 'webp'] as const)[Math.floor(rnd() * 3)]!;
      const bytes = await sharp(Buffer.from(portrait(rnd))).toFormat(format).toBuffer();
      const folder = rnd() < 0.3 ? 'photos/' : '';
      person.photo = { key: `${folder}${userId}.${format === 'jpeg' ? 'jpg' : format}`, bytes };
    }
    out.push(person);
  }
  return out;
}

/** The objects of these people, as an operator would drop them. */
export function objectsOf(persons: Person[]): Array<[string, string | Buffer]> {
  return persons.flatMap((p): Array<[string, string | Buffer]> => [
    [`${p.userId}.csv`, userCsv(p.firstName, p.lastName, p.birthts)],
    ...(p.photo ? [[p.photo.key, p.photo.bytes] as [string, Buffer]] : []),
  ]);
}

/** Files a run rejects or warns about, each for a reason an operator meets in practice. */
export function troubleObjects(): Array<[string, string | Buffer]> {
  return [
    ['incoming/2001.csv', 'first_name,last_name,birthts\nMaya,Lopez,next tuesday\n'],
    ['2002.csv', 'first_name,last_name,birthts\nJonas,,631152000000\n'],
    ['2003.csv', userCsv('Ella', 'Fischer', 599616000000)],
    ['2003.png', Buffer.from('<html>this was saved with the wrong extension</html>')],
    ['2004.csv', userCsv('Omar', 'Aziz', 662688000000)],
    ['2004.png', pngDeclaring(30_000, 30_000)],
    // The same user_id in two folders: the newest CSV wins, the other is a warning.
    ['archive/2003.csv', userCsv('Ella', 'Fischer', 599616000000)],
  ];
}
