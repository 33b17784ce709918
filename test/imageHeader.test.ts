import fc from 'fast-check';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PixelBudget } from '../src/images/budget.js';
import { checkImage } from '../src/images/checkImage.js';
import { readImageHeader } from '../src/images/imageHeader.js';
import { makeImage } from './support/fixtures.js';

const LIMIT = 50_000_000;

const noise = (width: number, height: number, channels: 3 | 4 = 3) =>
  sharp(Buffer.from(Array.from({ length: width * height * channels }, (_, i) => (i * 7919) % 251)), { raw: { width, height, channels } });

describe('readImageHeader', () => {
  it.each([
    ['png', () => noise(300, 17).png().toBuffer(), 300, 17],
    ['jpeg (baseline)', () => noise(17, 300).jpeg().toBuffer(), 17, 300],
    ['jpeg (progressive)', () => noise(640, 480).jpeg({ progressive: true }).toBuffer(), 640, 480],
    ['webp (lossy, VP8)', () => noise(333, 20).webp().toBuffer(), 333, 20],
    ['webp (lossless, VP8L)', () => noise(20, 333).webp({ lossless: true }).toBuffer(), 20, 333],
    ['webp (with alpha, VP8X)', () => noise(41, 9, 4).webp().toBuffer(), 41, 9],
  ])('reads the size of a %s as sharp does', async (_name, make, width, height) => {
    const bytes = await make();
    const h = readImageHeader(bytes);
    const meta = await sharp(bytes).metadata();
    expect(h).toEqual({ format: meta.format, width, height });
    expect([meta.width, meta.height]).toEqual([width, height]);
  });

  it('leaves other formats, animated WebPs and garbage to sharp', async () => {
    for (const format of ['gif', 'tiff', 'avif'] as const) expect(readImageHeader(await makeImage(format, 5, 5))).toBeNull();
    const frames = await Promise.all([10, 90, 170].map((v) => makeImage('png', 8, 8, { r: v, g: v, b: v })));
    const animated = await sharp(frames, { join: { animated: true } }).webp({ loop: 0 }).toBuffer();
    expect((await sharp(animated).metadata()).pages).toBe(3);
    expect(readImageHeader(animated)).toBeNull();
    expect(readImageHeader(Buffer.from('first_name,last_name,birthts\n'))).toBeNull();
    expect(readImageHeader(Buffer.alloc(0))).toBeNull();
  });

  it('never throws, and never claims a size of zero, whatever the bytes', async () => {
    const seeds = await Promise.all([noise(9, 9).png().toBuffer(), noise(9, 9).jpeg().toBuffer(), noise(9, 9).webp().toBuffer(), noise(9, 9).webp({ lossless: true }).toBuffer()]);
    const mutated = fc
      .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat())
      .map(([seed, edits, cut]) => {
        const b = Buffer.from(seed.subarray(0, 1 + (cut % seed.length)));
        for (const [at, v] of edits) b[at % b.length] = v;
        return b;
      });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a))), (bytes) => {
        const h = readImageHeader(bytes);
        if (h) expect(h.width > 0 && h.height > 0).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('checkImage with a header read from the bytes', () => {
  it('reports the same size as sharp for any image that decodes, however its header was damaged', async () => {
    const seeds = await Promise.all([noise(12, 7).png().toBuffer(), noise(12, 7).jpeg().toBuffer(), noise(12, 7).webp().toBuffer()]);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), async (seed, edits) => {
        const bytes = Buffer.from(seed);
        for (const [at, v] of edits) bytes[at % bytes.length] = v;
        const r = await checkImage(bytes, new PixelBudget(LIMIT));
        if (!r.ok) return;
        const meta = await sharp(bytes).metadata();
        expect([r.data.width, r.data.height]).toEqual([meta.width, meta.height]);
      }),
      { numRuns: 300 },
    );
  });

  it('checks a 12-megapixel JPEG photo while shrinking it, and rejects it cut off', async () => {
    const photo = await noise(400, 300).resize(4000, 3000).jpeg({ quality: 90 }).toBuffer();
    expect(await checkImage(photo, new PixelBudget(LIMIT))).toEqual({ ok: true, data: { format: 'jpeg', width: 4000, height: 3000 } });
    const cut = await checkImage(photo.subarray(0, Math.floor(photo.length * 0.7)), new PixelBudget(LIMIT));
    expect(cut).toMatchObject({ ok: false, reason: expect.stringMatching(/^image data is corrupt or truncated: /) });
  });

  it('applies the pixel limit to the size read from the bytes', async () => {
    const bytes = await noise(100, 50).jpeg().toBuffer();
    expect(await checkImage(bytes, new PixelBudget(4999))).toEqual({ ok: false, reason: 'image declares 100x50 = 5000 pixels, over the limit of 4999' });
    expect(await checkImage(bytes, new PixelBudget(5000))).toMatchObject({ ok: true });
  });

  // libjpeg reads FF 00 after a segment as stuffed data: it skips it and scans on to the next
  // FF. Read as a marker with a length instead, it jumps to a size of the file's choosing
  // (here hidden in a comment libjpeg skips), and the decode budget trusts it.
  const hiding = async (width: number, height: number) => {
    const real = await noise(300, 200).jpeg({ progressive: true }).toBuffer();
    const fakeSof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    return Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0x00, 0x00, 0x06, 0xff, 0xfe, 0x00, fakeSof.length + 2]), fakeSof, real.subarray(2)]);
  };

  it('never reads a JPEG size that libjpeg does not, so the pixel budget counts the pixels really decoded', async () => {
    const tiny = await hiding(1, 1);
    expect([(await sharp(tiny).metadata()).width, (await sharp(tiny).metadata()).height]).toEqual([300, 200]);
    const h = readImageHeader(tiny);
    if (h) expect([h.width, h.height]).toEqual([300, 200]);
    const budget = new PixelBudget(60_001);
    const checking = checkImage(tiny, budget);
    let held = 0;
    let settled = false;
    void checking.finally(() => (settled = true));
    for (const deadline = Date.now() + 10_000; !settled && Date.now() < deadline; await new Promise(setImmediate)) held = Math.max(held, budget.pixelsInUse);
    expect(await checking).toEqual({ ok: true, data: { format: 'jpeg', width: 300, height: 200 } });
    expect(held).toBe(300 * 200);
  });

  it('does not refuse a JPEG for a size libjpeg never reads', async () => {
    expect(await checkImage(await hiding(60_000, 60_000), new PixelBudget(LIMIT))).toEqual({ ok: true, data: { format: 'jpeg', width: 300, height: 200 } });
  });
});
