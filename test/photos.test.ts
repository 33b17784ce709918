import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { Photos } from '../src/images/photos.js';
import { checkImage } from '../src/images/checkImage.js';
import type { TestDatabase } from './support/database.js';
import { createTestDatabase } from './support/database.js';
import type { ImageFormat } from './support/fixtures.js';
import { makeImage, pngDeclaring, put, remove, userCsv } from './support/fixtures.js';
import { ObservedStore } from './support/harness.js';
import { raw } from './support/rawHttp.js';
import type { TestService } from './support/service.js';
import { startTestService } from './support/service.js';
import type { Backend } from './support/stores.js';
import { backends } from './support/stores.js';
import { PixelBudget } from '../src/images/budget.js';

interface ErrorBody {
  error: { code: string; message: string };
}

const FORMATS: Array<[ImageFormat, string]> = [
  ['png', 'image/png'],
  ['jpeg', 'image/jpeg'],
  ['webp', 'image/webp'],
  ['gif', 'image/gif'],
  ['tiff', 'image/tiff'],
  ['avif', 'image/avif'],
];
const EXT: Record<ImageFormat, string> = { png: 'png', jpeg: 'jpg', webp: 'webp', gif: 'gif', tiff: 'tif', avif: 'avif' };
// Small enough that a test can build a photo over it, large enough for every fixture.
const MAX_IMAGE_BYTES = 300_000;
const OBJECT_TIMEOUT_MS = 1500;

const bytesOf = async (res: Response) => Buffer.from(await res.arrayBuffer());
const errorOf = async (res: Response) => ((await res.json()) as ErrorBody).error;

describe.each(backends)('photos over HTTP on the %s backend', (_name, start) => {
  let backend: Backend;
  let db: TestDatabase;
  let svc: TestService;
  let store: ObservedStore;
  const originals = new Map<string, Buffer>();
  const src = () => svc.srcBucket;
  // fetch() turns a request with If-None-Match into one that bypasses caches (Cache-Control:
  // no-cache), which must not answer 304; a browser revalidating its cache sends no such header.
  const conditional = (path: string, etag: string) => raw(svc.url, path, { headers: { 'If-None-Match': etag } });

  beforeAll(async () => {
    backend = await start();
    db = await createTestDatabase();
    svc = await startTestService(
      backend,
      db,
      { MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES), OBJECT_TIMEOUT_MS: String(OBJECT_TIMEOUT_MS) },
      { wrapStore: (s) => (store = new ObservedStore(s)) },
    );
    for (const [format] of FORMATS) {
      const img = await makeImage(format, 120, 80);
      originals.set(format, img);
      await put(backend, src(), `${format}.csv`, userCsv('Pat', format, 0));
      await put(backend, src(), `photos/${format}.${EXT[format]}`, img);
    }
    await put(backend, src(), 'nophoto.csv', userCsv('No', 'Photo', 0));
    for (const id of ['gone', 'garbage', 'bomb', 'big', 'stall', 'changed']) {
      await put(backend, src(), `${id}.csv`, userCsv('Hostile', id, 0));
      await put(backend, src(), `${id}.png`, await makeImage('png', 64, 64));
    }
    const run = (await (await svc.post('/data?wait=true')).json()) as { status: string; counts: { rejected: number } };
    expect(run).toMatchObject({ status: 'succeeded', counts: { rejected: 0 } });

    // After the run checked them, the objects change in the store.
    await remove(backend, src(), 'gone.png');
    await put(backend, src(), 'garbage.png', Buffer.from('this is not an image at all, though it was one when checked'));
    await put(backend, src(), 'bomb.png', pngDeclaring(20_000, 20_000));
    await put(backend, src(), 'big.png', Buffer.alloc(MAX_IMAGE_BYTES + 1, 7));
    store.stallReads.add('stall.png');
  });
  afterAll(async () => {
    await svc?.stop();
    await db?.drop();
    await backend?.stop();
  });

  describe('GET /data/:user_id/image', () => {
    it.each(FORMATS)('streams a %s photo as stored, as %s, with validators', async (format, type) => {
      const res = await svc.get(`/data/${format}/image`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(type);
      expect(res.headers.get('etag')).toMatch(/^"[\w-]+"$/);
      expect(res.headers.get('cache-control')).toBe('private, no-cache');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toContain('sandbox');
      const body = await bytesOf(res);
      expect(body.equals(originals.get(format)!)).toBe(true);
      expect(res.headers.get('content-length')).toBe(String(body.length));
    });

    it('answers 304 to If-None-Match with the current ETag, and a new ETag once the photo changes', async () => {
      await put(backend, src(), 'changed.png', await makeImage('png', 64, 64, { r: 1, g: 2, b: 3 }));
      const first = await svc.get('/data/changed/image');
      const etag = first.headers.get('etag')!;
      await first.arrayBuffer();
      const again = await conditional('/data/changed/image', etag);
      expect(again.status).toBe(304);
      expect(again.body).toBe('');
      expect(again.headers.etag).toBe(etag);

      const replacement = await makeImage('png', 64, 48, { r: 9, g: 9, b: 200 });
      await put(backend, src(), 'changed.png', replacement);
      expect((await conditional('/data/changed/image', etag)).status).toBe(200);
      const after = await svc.get('/data/changed/image');
      expect(after.headers.get('etag')).not.toBe(etag);
      expect((await bytesOf(after)).equals(replacement)).toBe(true);
    });

    it('answers HEAD with the headers alone, without opening the object', async () => {
      store.reset();
      const res = await fetch(`${svc.url}/data/png/image`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(res.headers.get('content-length')).toBe(String(originals.get('png')!.length));
      expect(res.headers.get('etag')).toMatch(/^"/);
      expect(store.reads).toEqual([]);
    });
  });

  describe('GET /data/:user_id/image?width=N', () => {
    it.each(FORMATS)('resizes a %s photo to a WebP of that width', async (format) => {
      const res = await svc.get(`/data/${format}/image?width=60`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/webp');
      expect(res.headers.get('cache-control')).toBe('private, no-cache');
      const meta = await sharp(await bytesOf(res)).metadata();
      expect(meta).toMatchObject({ format: 'webp', width: 60, height: 40 });
    });

    it('never enlarges a photo', async () => {
      const meta = await sharp(await bytesOf(await svc.get('/data/png/image?width=1024'))).metadata();
      expect(meta).toMatchObject({ width: 120, height: 80 });
    });

    it('gives each width its own ETag, and answers 304 for a current one', async () => {
      const a = await svc.get('/data/jpeg/image?width=32');
      const b = await svc.get('/data/jpeg/image?width=33');
      const original = await svc.get('/data/jpeg/image');
      await Promise.all([a, b, original].map((r) => r.arrayBuffer()));
      const tags = [a, b, original].map((r) => r.headers.get('etag'));
      expect(new Set(tags).size).toBe(3);
      expect((await conditional('/data/jpeg/image?width=32', tags[0]!)).status).toBe(304);
      expect((await conditional('/data/jpeg/image?width=32', tags[1]!)).status).toBe(200);
    });

    it('reads and resizes a thumbnail once, however often and however many at once it is asked for', async () => {
      store.reset();
      const answers = await Promise.all(Array.from({ length: 6 }, () => svc.get('/data/webp/image?width=48')));
      const bodies = await Promise.all(answers.map(bytesOf));
      expect(answers.every((r) => r.status === 200)).toBe(true);
      expect(bodies.every((b) => b.equals(bodies[0]!))).toBe(true);
      await (await svc.get('/data/webp/image?width=48')).arrayBuffer();
      expect(store.reads).toEqual(['photos/webp.webp']);
    });

    it.each(['15', '1025', '0', 'abc', '64.5', ''])('refuses width=%s with a 400 naming width', async (width) => {
      const res = await svc.get(`/data/png/image?width=${width}`);
      expect(res.status).toBe(400);
      const error = await errorOf(res);
      expect(error.code).toBe('invalid_parameter');
      expect(error.message).toMatch(/^width: must be an integer from 16 to 1024/);
    });

    it('refuses a repeated width and unknown parameters', async () => {
      expect((await errorOf(await svc.get('/data/png/image?width=20&width=30'))).message).toBe('width: give it once');
      expect((await errorOf(await svc.get('/data/png/image?size=20'))).message).toBe('size: unknown parameter');
    });
  });

  describe('photos that are missing or changed since they were checked', () => {
    const both = (id: string) => [`/data/${id}/image`, `/data/${id}/image?width=64`];

    it('answers 404 for a user without a photo, an unknown user, and a photo gone from the store', async () => {
      for (const [path, message] of [
        ['/data/nophoto/image', 'user "nophoto" has no photo'],
        ['/data/nobody/image?width=64', 'no user with user_id "nobody"'],
        ...both('gone').map((p) => [p, 'the photo is no longer in the store']),
      ] as const) {
        const res = await svc.get(path);
        expect(res.status, path).toBe(404);
        expect(res.headers.get('cache-control'), path).toBe('no-store');
        expect(res.headers.get('etag'), path).toBeNull();
        expect(await errorOf(res), path).toEqual({ code: 'not_found', message });
      }
    });

    it('answers 422 when a resize meets bytes that are no longer an image', async () => {
      const res = await svc.get('/data/garbage/image?width=64');
      expect(res.status).toBe(422);
      const error = await errorOf(res);
      expect(error.code).toBe('photo_unusable');
      expect(error.message).toMatch(/^the stored photo fails the image checks: not a readable image: /);
    });

    it('answers 422 when a resize meets a decompression bomb, without decoding it', async () => {
      const res = await svc.get('/data/bomb/image?width=64');
      expect(res.status).toBe(422);
      expect(await errorOf(res)).toEqual({
        code: 'photo_unusable',
        message: 'the stored photo fails the image checks: image declares 20000x20000 = 400000000 pixels, over the limit of 50000000',
      });
    });

    it('answers 422 for a photo that grew past MAX_IMAGE_BYTES, as stored or resized', async () => {
      for (const path of both('big')) {
        const res = await svc.get(path);
        expect(res.status, path).toBe(422);
        expect(await errorOf(res)).toEqual({ code: 'photo_unusable', message: `the stored photo is ${MAX_IMAGE_BYTES + 1} bytes, over the limit of ${MAX_IMAGE_BYTES}` });
      }
    });

    it('answers 503 once OBJECT_TIMEOUT_MS has passed when the store stalls, as stored or resized', async () => {
      for (const path of both('stall')) {
        const res = await svc.get(path);
        expect(res.status, path).toBe(503);
        expect(res.headers.get('retry-after')).toBe('5');
        expect((await errorOf(res)).code).toBe('photo_timeout');
      }
      // Every stream handed out for the stalled object was closed.
      expect(store.stalled.length).toBeGreaterThan(0);
      expect(store.stalled.every((s) => s.destroyed)).toBe(true);
    });

    it('answers 503 store_unavailable when the store fails', async () => {
      store.failReads = new Error('connect ECONNREFUSED 10.1.2.3:9000');
      try {
        const res = await svc.get('/data/tiff/image');
        expect(res.status).toBe(503);
        const text = await res.text();
        expect(JSON.parse(text)).toEqual({ error: { code: 'store_unavailable', message: 'the object store is unavailable; try again shortly' } });
        expect(text).not.toContain('10.1.2.3');
      } finally {
        store.failReads = null;
      }
    });
  });
});

describe('the thumbnail cache', () => {
  it('stays within its byte bound however many photos are resized', async () => {
    const backend = await backends[0]![1]();
    try {
      await backend.store.ensureBucket('src');
      const limits = loadConfig({}).limits;
      const photos = new Photos(backend.store, limits, new PixelBudget(limits.maxImagePixels), { cacheBytes: 20_000 });
      let served = 0;
      for (let i = 0; i < 40; i++) {
        // Noise: it does not compress, so each thumbnail is a few KB.
        const noise = await sharp(randomBytes(200 * 200 * 3), { raw: { width: 200, height: 200, channels: 3 } }).png().toBuffer();
        await put(backend, 'src', `${i}.png`, noise);
        const photo = await photos.locate({ path: `src/${i}.png` });
        served += (await photos.resized(photo, 128)).length;
        expect(photos.cachedBytes).toBeLessThanOrEqual(20_000);
      }
      // The bound was reached, so it is the bound that held memory down.
      expect(served).toBeGreaterThan(40_000);
      expect(photos.cachedBytes).toBeGreaterThan(0);
    } finally {
      await backend.stop();
    }
  });
});

describe('resizing a photo the run accepted', () => {
  it('makes a thumbnail of a very tall photo, which WebP cannot hold at full height', async () => {
    const backend = await backends[0]![1]();
    try {
      await backend.store.ensureBucket('src');
      const limits = loadConfig({}).limits;
      // 400,000 pixels, far under the limit: the run's image check accepts it.
      const tall = await sharp({ create: { width: 20, height: 20_000, channels: 3, background: '#888' } }).png().toBuffer();
      expect(await checkImage(tall, new PixelBudget(limits.maxImagePixels))).toMatchObject({ ok: true, data: { width: 20, height: 20_000 } });
      await put(backend, 'src', 'tall.png', tall);
      const photos = new Photos(backend.store, limits, new PixelBudget(limits.maxImagePixels));
      const photo = await photos.locate({ path: 'src/tall.png' });
      for (const width of [16, 64, 1024]) {
        const meta = await sharp(await photos.resized(photo, width)).metadata();
        expect(meta.format).toBe('webp');
        expect(meta.width).toBeLessThanOrEqual(Math.min(width, 20));
        expect(meta.height).toBeLessThanOrEqual(16_383);
        expect(meta.height).toBeGreaterThan(10_000);
      }
    } finally {
      await backend.stop();
    }
  });
});

describe('resizes at once', () => {
  it('reads only as many photos into memory as it may resize at once; the others wait their turn', async () => {
    const backend = await backends[0]![1]();
    try {
      await backend.store.ensureBucket('src');
      await put(backend, 'src', 'p.png', await makeImage('png', 120, 80));
      // Reads wait at a gate until the test opens it; entered counts the reads begun.
      let entered = 0;
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const store = new ObservedStore(backend.store);
      store.beforeRead = async () => {
        entered++;
        await gate;
      };
      const photos = new Photos(store, loadConfig({}).limits, new PixelBudget(loadConfig({}).limits.maxImagePixels), { maxResizes: 2 });
      const photo = await photos.locate({ path: 'src/p.png' });
      // Eight widths: eight resizes, each of which reads the whole photo into memory.
      const widths = [16, 17, 18, 19, 20, 21, 22, 23];
      const all = Promise.all(widths.map((w) => photos.resized(photo, w)));
      for (const deadline = Date.now() + 5000; entered < 2 && Date.now() < deadline; ) await new Promise(setImmediate);
      expect(entered).toBe(2);
      open();
      const out = await all;
      expect(out.map((b) => b.length > 0)).toEqual(widths.map(() => true));
      expect(entered).toBe(widths.length);
    } finally {
      await backend.stop();
    }
  });
});
