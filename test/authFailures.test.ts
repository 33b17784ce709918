import { describe, expect, it } from 'vitest';
import { AuthFailures, clientKey } from '../src/http/authFailures.js';

/** A limiter on a clock the test moves. */
function limiter(limit: number, windowMs: number, maxAddresses?: number) {
  let now = 1_000_000;
  const failures = new AuthFailures({ limit, windowMs }, maxAddresses, () => now);
  const fail = (...addresses: string[]) => addresses.forEach((a) => failures.failed(a));
  return { failures, fail, advance: (ms: number) => void (now += ms) };
}

describe('AuthFailures', () => {
  it('locks an address out after the limit, until the window from its first failure ends', () => {
    const { failures, fail, advance } = limiter(3, 60_000);
    fail('10.0.0.1');
    advance(10_000);
    fail('10.0.0.1');
    expect(failures.retryAfter('10.0.0.1')).toBe(0);
    fail('10.0.0.1');
    expect(failures.retryAfter('10.0.0.1')).toBe(50);
    advance(49_500);
    // Rounded up: it is never told to come back before the window ends.
    expect(failures.retryAfter('10.0.0.1')).toBe(1);
    advance(500);
    expect(failures.retryAfter('10.0.0.1')).toBe(0);
    // A new window counts from zero, and lasts from its own first failure.
    advance(5_000);
    fail('10.0.0.1', '10.0.0.1');
    expect(failures.retryAfter('10.0.0.1')).toBe(0);
    fail('10.0.0.1');
    expect(failures.retryAfter('10.0.0.1')).toBe(60);
  });

  it('counts each address on its own', () => {
    const { failures, fail } = limiter(2, 60_000);
    fail('10.0.0.1', '10.0.0.1', '10.0.0.2');
    expect(failures.retryAfter('10.0.0.1')).toBe(60);
    expect(failures.retryAfter('10.0.0.2')).toBe(0);
    expect(failures.retryAfter('10.0.0.3')).toBe(0);
  });

  it('counts an IPv4-mapped address as its IPv4 address, and IPv6 addresses by their /64', () => {
    const { failures, fail } = limiter(2, 60_000);
    fail('::ffff:10.0.0.1', '10.0.0.1');
    expect(failures.retryAfter('10.0.0.1')).toBe(60);
    fail('2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff');
    expect(failures.retryAfter('2001:0db8:0001:0002::abcd')).toBe(60);
    expect(failures.retryAfter('2001:db8:1:3::1')).toBe(0);
  });

  it('tracks at most maxAddresses, forgetting the least recently seen', () => {
    const { failures, fail } = limiter(1, 60_000, 2);
    fail('10.0.0.1', '10.0.0.2', '10.0.0.3');
    expect(failures.retryAfter('10.0.0.1')).toBe(0);
    expect(failures.retryAfter('10.0.0.2')).toBe(60);
    expect(failures.retryAfter('10.0.0.3')).toBe(60);
  });
});

describe('clientKey', () => {
  it('keeps IPv4 addresses, unwraps IPv4-mapped ones, and cuts IPv6 addresses to their /64', () => {
    expect(clientKey('192.0.2.7')).toBe('192.0.2.7');
    expect(clientKey('::FFFF:192.0.2.7')).toBe('192.0.2.7');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientKey('2001:DB8::')).toBe('2001:db8:0:0::/64');
    expect(clientKey('1::2:3:4:5:6.7.8.9')).toBe('1:0:2:3::/64');
    expect(clientKey('2001:db8:aa:bb:cc:dd:ee:ff')).toBe('2001:db8:aa:bb::/64');
    expect(clientKey('')).toBe('');
  });
});
