import { describe, expect, it } from 'vitest';
import { covers, inScope, prefixUpperBound } from '../src/core/scope.js';
import { compareKeys } from '../src/storage/keyOrder.js';

describe('run scopes', () => {
  const users = (...ids: string[]) => ({ full: false, scope: { userIds: ids, prefix: null } });
  const prefix = (p: string) => ({ full: false, scope: { userIds: null, prefix: p } });
  const incremental = { full: false, scope: null };
  const full = { full: true, scope: null };

  it('a run covers a trigger only when it rereads at least what the trigger asks', () => {
    expect(covers(full, incremental)).toBe(true);
    expect(covers(full, users('a'))).toBe(true);
    expect(covers(incremental, incremental)).toBe(true);
    expect(covers(incremental, full)).toBe(false);
    expect(covers(incremental, users('a'))).toBe(false);
    expect(covers(users('a', 'b'), users('b'))).toBe(true);
    expect(covers(users('a'), users('a', 'b'))).toBe(false);
    expect(covers(users('a'), incremental)).toBe(false);
    expect(covers(users('a'), full)).toBe(false);
    expect(covers(prefix('batch1/'), prefix('batch1/x/'))).toBe(true);
    expect(covers(prefix('batch1/x/'), prefix('batch1/'))).toBe(false);
    expect(covers(prefix('batch1/'), users('a'))).toBe(false);
    expect(covers(prefix('batch1/'), { full: false, scope: { userIds: ['a'], prefix: 'batch1/2' } })).toBe(true);
    expect(covers({ full: false, scope: { userIds: ['a'], prefix: 'b/' } }, prefix('b/'))).toBe(false);
  });

  it('keys inside a scope', () => {
    expect(inScope({ userIds: ['1'], prefix: 'a/' }, 'a/1.csv', '1')).toBe(true);
    expect(inScope({ userIds: ['1'], prefix: 'a/' }, 'b/1.csv', '1')).toBe(false);
    expect(inScope({ userIds: ['1'], prefix: null }, 'x/', null)).toBe(false);
  });

  it('the upper bound of a prefix: exactly the keys that start with it lie below it', () => {
    const keys = ['a', 'a/', 'a/b', 'a0', 'a\u{10FFFF}', 'a\uFFFF', 'a\uD7FF', 'a\u{1F600}', 'b', 'a\u{10FFFF}\u{10FFFF}x', '\u{10FFFF}'];
    for (const p of ['a', 'a/', 'a\uD7FF', 'a\u{10FFFF}', '\u{10FFFF}', 'a\uFFFF']) {
      const upper = prefixUpperBound(p);
      for (const k of keys) {
        const inRange = compareKeys(k, p) >= 0 && (upper === null || compareKeys(k, upper) < 0);
        expect(inRange, `${JSON.stringify(k)} against ${JSON.stringify(p)}`).toBe(k.startsWith(p));
      }
    }
    expect(prefixUpperBound('a\uD7FF')).toBe('a\uE000');
    expect(prefixUpperBound('\u{10FFFF}')).toBeNull();
  });
});
