import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PixelBudget, PixelBudgetTimeout } from '../src/images/budget.js';
import { checkImage } from '../src/images/checkImage.js';
import type { ImageFormat } from './support/fixtures.js';
import { makeImage, pngDeclaring } from './support/fixtures.js';

const LIMIT = 50_000_000;

describe('checkImage', () => {
  it.each<[ImageFormat, string]>([
    ['png', 'png'],
    ['jpeg', 'jpeg'],
    ['webp', 'webp'],
    ['gif', 'gif'],
    ['tiff', 'tiff'],
    ['avif', 'avif'],
  ])('accepts a %s image and reports its format and size', async (format, reported) => {
    const r = await checkImage(await makeImage(format, 12, 7), new PixelBudget(LIMIT));
    expect(r).toEqual({ ok: true, data: { format: reported, width: 12, height: 7 } });
  });

  it('rejects bytes that are not an image', async () => {
    const r = await checkImage(Buffer.from('first_name,last_name\nnot,an image\n'), new PixelBudget(LIMIT));
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^not a readable image: /) });
  });

  it('rejects an image format we do not accept (SVG)', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>');
    expect(await checkImage(svg, new PixelBudget(LIMIT))).toEqual({ ok: false, reason: 'unsupported image format "svg"' });
  });

  it('rejects a decompression bomb by its declared pixel count, before decoding', async () => {
    const bomb = pngDeclaring(100_000, 100_000);
    expect(bomb.length).toBeLessThan(1000);
    expect(await checkImage(bomb, new PixelBudget(LIMIT))).toEqual({
      ok: false,
      reason: 'image declares 100000x100000 = 10000000000 pixels, over the limit of 50000000',
    });
  });

  it('applies the configured pixel limit exactly', async () => {
    const img = await makeImage('png', 10, 10);
    expect((await checkImage(img, new PixelBudget(100))).ok).toBe(true);
    expect(await checkImage(img, new PixelBudget(99))).toEqual({ ok: false, reason: 'image declares 10x10 = 100 pixels, over the limit of 99' });
  });

  it('rejects a truncated image whose header is intact', async () => {
    const full = await makeImage('png', 64, 64);
    const cut = full.subarray(0, Math.floor(full.length * 0.6));
    const r = await checkImage(cut, new PixelBudget(LIMIT));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^(image data is corrupt or truncated|not a readable image): /);
  });

  it('rejects a JPEG whose header is intact but whose pixel data is cut off', async () => {
    // Noise does not compress, so half the file is well past the header.
    const full = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg()
      .toBuffer();
    const cut = full.subarray(0, full.length >> 1);
    expect((await sharp(cut).metadata()).width).toBe(256);
    const r = await checkImage(cut, new PixelBudget(LIMIT));
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^image data is corrupt or truncated: /) });
  });

  it('rejects a large image (shrunk while decoding) whose data is cut off, and accepts it whole', async () => {
    const full = await sharp({ create: { width: 1200, height: 1000, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg()
      .toBuffer();
    expect(await checkImage(full, new PixelBudget(LIMIT))).toEqual({ ok: true, data: { format: 'jpeg', width: 1200, height: 1000 } });
    const r = await checkImage(full.subarray(0, full.length >> 1), new PixelBudget(LIMIT));
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^image data is corrupt or truncated: /) });
  });
});

describe('PixelBudget: decodes in flight together stay under the pixel limit', () => {
  it('admits decodes while their sum fits, queues the rest in order, and runs an oversized one alone', async () => {
    const budget = new PixelBudget(100);
    const admitted: string[] = [];
    const take = (name: string, pixels: number) =>
      budget.acquire(pixels).then((release) => {
        admitted.push(name);
        return release;
      });
    const a = await take('a', 60);
    const b = await take('b', 40);
    const c = take('c', 30);
    const d = take('d', 10);
    await Promise.resolve();
    expect(admitted).toEqual(['a', 'b']);
    expect(budget.pixelsInUse).toBe(100);
    a();
    const [releaseC, releaseD] = await Promise.all([c, d]);
    expect(admitted).toEqual(['a', 'b', 'c', 'd']);
    expect(budget.pixelsInUse).toBe(80);
    b();
    releaseC();
    releaseD();
    const huge = await take('huge', 500);
    expect(budget.pixelsInUse).toBe(500);
    huge();
    expect(budget.pixelsInUse).toBe(0);
  });
});

describe('PixelBudget: a wait for room has a deadline', () => {
  it('gives up past its deadline while the test holds the budget, and leaves the queue to the decodes behind it', async () => {
    const budget = new PixelBudget(100);
    // Held by the test for the whole case: room for the 50 never comes.
    await budget.acquire(60);
    const large = budget.acquire(50, 20);
    // Fits, but waits behind the larger one (first come, first served).
    let smallIn = false;
    const small = budget.acquire(30).then((release) => {
      smallIn = true;
      return release;
    });
    await Promise.resolve();
    expect(smallIn).toBe(false);
    await expect(large).rejects.toBeInstanceOf(PixelBudgetTimeout);
    await small;
    expect(budget.pixelsInUse).toBe(90);
    // Without the deadline this would wait forever: fail soon instead.
  }, 10_000);

  it('makes checkImage fail as a transient failure with a clear reason, instead of waiting forever', async () => {
    const budget = new PixelBudget(LIMIT);
    await budget.acquire(LIMIT);
    const r = await checkImage(await makeImage('png'), budget, 50);
    expect(r).toEqual({
      ok: false,
      reason: 'it waited longer than 50 ms for room to be decoded (other images held the pixel budget, MAX_IMAGE_PIXELS); it is tried again next run',
      transient: true,
    });
    expect(budget.pixelsInUse).toBe(LIMIT);
  }, 10_000);
});

describe('checkImage deadline', () => {
  it('gives up on a tiny AVIF that declares 4 megapixels when the decode runs past the deadline, as a transient failure', async () => {
    // A few hundred bytes on disk, 4 million pixels to decode: HEIF decodes whole frames, and
    // nothing does that in a millisecond.
    const avif = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#fff' } }).avif().toBuffer();
    expect(avif.length).toBeLessThan(10_000);
    expect(await checkImage(avif, new PixelBudget(50_000_000), 1)).toEqual({ ok: false, reason: 'decoding it took longer than 1 ms', transient: true });
  });
});
