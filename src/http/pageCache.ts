import { LRUCache } from 'lru-cache';

export interface CachedPage {
  body: Buffer;
  type: string;
  headers: Record<string, string>;
}

// Ages move with the clock, so a cached page is kept at most this long: an age bound is then
// out by at most a second. Data changes clear the cache at once.
const TTL_MS = 1000;
const MAX_BYTES = 32 * 1024 * 1024;

/**
 * Bounded GET /data pages, serialized, for repeated queries. Trusted only while the change
 * feed is listening: a change in any instance clears it, and while the feed is down the
 * cache is off.
 */
export class PageCache {
  private readonly pages: LRUCache<string, CachedPage>;
  private enabled = false;
  private generation = 0;

  /** clock: milliseconds, any origin but 0 (lru-cache reads a start of 0 as "no TTL"). */
  constructor(clock: { now(): number } = performance) {
    this.pages = new LRUCache<string, CachedPage>({
      maxSize: MAX_BYTES,
      sizeCalculation: (p) => p.body.length + 256,
      ttl: TTL_MS,
      perf: clock,
      // Read the clock on every check: by default lru-cache reuses a reading for 1 ms of real time.
      ttlResolution: 0,
    });
  }

  get(key: string): CachedPage | undefined {
    return this.enabled ? this.pages.get(key) : undefined;
  }

  /** Take before querying; pass to set(), which then drops a page that a change made stale meanwhile. */
  version(): number {
    return this.generation;
  }

  set(key: string, page: CachedPage, version: number): void {
    if (this.enabled && version === this.generation) this.pages.set(key, page);
  }

  invalidate(): void {
    this.generation++;
    this.pages.clear();
  }

  setEnabled(on: boolean): void {
    this.enabled = on;
    this.invalidate();
  }
}
