import { describe, expect, it } from 'vitest';
import { compareKeys } from '../src/storage/keyOrder.js';

const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('compareKeys', () => {
  it('agrees with UTF-8 byte order, including astral characters against the end of the BMP', () => {
    const samples = ['', 'a', 'a.csv', 'a/x', 'a0', 'A', 'é', '\uFF21', '\u{1F600}', '\u{1F600}b', '\uE000', '\uD7FF', 'zz', '日本.csv'];
    for (const a of samples) {
      for (const b of samples) expect(Math.sign(compareKeys(a, b)), `${a} vs ${b}`).toBe(Math.sign(bytes(a, b)));
    }
  });
});
