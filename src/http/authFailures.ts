import { isIPv4, isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';

export interface AuthFailureLimit {
  /** Wrong tokens an address may send within one window. */
  limit: number;
  windowMs: number;
}

/** Addresses tracked at once: a few hundred kB at most. */
export const MAX_TRACKED_ADDRESSES = 10_000;

interface Window {
  failures: number;
  endsAt: number;
}

/**
 * Wrong tokens per client address, in a fixed window that starts at the address's first
 * failure. Once an address reaches the limit it is locked out until its window ends, even
 * with the right token: otherwise an attacker could go on guessing and tell a hit by its 200.
 *
 * Built on lru-cache rather than a rate-limit library: those count every request (koa-ratelimit)
 * or keep one unbounded entry per key (rate-limiter-flexible's memory store), and neither takes
 * a clock for tests. The LRU bounds memory; an attacker who owns more addresses than it holds
 * can push a locked one out, but then has that many addresses to guess from anyway.
 */
export class AuthFailures {
  private readonly windows: LRUCache<string, Window>;

  constructor(
    private readonly opts: AuthFailureLimit,
    maxAddresses = MAX_TRACKED_ADDRESSES,
    private readonly now: () => number = Date.now,
  ) {
    this.windows = new LRUCache<string, Window>({ max: maxAddresses });
  }

  /** Whole seconds until the address may try again; 0 when it may now. */
  retryAfter(address: string): number {
    const w = this.current(clientKey(address));
    return w && w.failures >= this.opts.limit ? Math.ceil((w.endsAt - this.now()) / 1000) : 0;
  }

  failed(address: string): void {
    const key = clientKey(address);
    const w = this.current(key);
    if (w) w.failures++;
    else this.windows.set(key, { failures: 1, endsAt: this.now() + this.opts.windowMs });
  }

  private current(key: string): Window | undefined {
    const w = this.windows.get(key);
    if (w && w.endsAt > this.now()) return w;
    if (w) this.windows.delete(key);
    return undefined;
  }
}

/**
 * What is counted: an IPv4 address (IPv4-mapped IPv6 included) as it is, an IPv6 address by
 * its /64, since one host usually holds a whole /64 and could otherwise rotate through it.
 */
export function clientKey(address: string): string {
  const plain = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain);
  if (mapped) return mapped[1]!;
  if (isIPv4(plain) || !isIPv6(plain)) return plain;
  const [head = '', tail] = plain.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  // A trailing dotted IPv4 part is two groups, past the /64 in any case.
  const right = tail === undefined || tail === '' ? [] : tail.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
