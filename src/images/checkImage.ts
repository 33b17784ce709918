import type Sharp from 'sharp';
import type { Metadata, OutputInfo } from 'sharp';
import { within } from '../deadline.js';
import type { ImageData } from '../core/model.js';
import { type ImageHeader, readImageHeader } from './imageHeader.js';
import type { PixelBudget } from './budget.js';
import { PixelBudgetTimeout } from './budget.js';

export type ImageResult =
  | { ok: true; data: ImageData }
  /** transient: the image took too long to decode, which says as much about the machine as the file. */
  | { ok: false; reason: string; transient?: true };

let loading: Promise<typeof Sharp> | null = null;
/**
 * sharp, loaded on first use: loading it takes about 0.1 s, which a run that checks no image
 * (nothing changed) need not pay.
 */
export function loadSharp(): Promise<typeof Sharp> {
  return (loading ??= import('sharp').then(({ default: sharp }) => {
    // sharp's cache keeps decoded images around for reuse; we look at each image once.
    sharp.cache(false);
    return sharp;
  }));
}

// The decode's output fits in this box: enough to check every pixel of data on the way, at
// most 256 KB out. Smaller images are decoded as they are, larger ones shrunk while decoding
// (shrink-on-load) where the format allows, so full-resolution pixels are never held.
const DECODE_BOX = 256;

/** Formats sharp may report that we accept; avif is reported as heif with av1 compression. */
const ACCEPTED_FORMATS = new Set(['png', 'jpeg', 'webp', 'gif', 'tiff', 'heif']);

interface Declared {
  format: string;
  width: number;
  height: number;
  frames: number;
}

/**
 * Checks that bytes are an image sharp can read, within the pixel limit. The pixel count the
 * header declares is checked before any decoding, so a decompression bomb costs nothing.
 * Reading the header and decoding must each finish within timeoutMs; libvips cannot be
 * stopped, so a decode that runs over keeps its share of the pixel budget until it ends.
 *
 * A still PNG, JPEG or WebP takes one sharp call: its size is read from its first bytes
 * (imageHeader.ts). Other formats, and headers that cannot be read so, ask sharp first.
 */
export async function checkImage(bytes: Buffer, budget: PixelBudget, timeoutMs = 60_000): Promise<ImageResult> {
  const maxPixels = budget.limit;
  const tooSlow: ImageResult = { ok: false, reason: `decoding it took longer than ${timeoutMs} ms`, transient: true };
  const sniffed = readImageHeader(bytes);
  let declared: Declared;
  if (sniffed) declared = { ...sniffed, frames: 1 };
  else {
    const asked = await askSharp(bytes, timeoutMs);
    if (asked === 'timeout') return tooSlow;
    if (!('width' in asked)) return asked;
    declared = asked;
  }
  const overLimit = pixelLimitReason(declared, maxPixels);
  if (overLimit) return { ok: false, reason: overLimit };

  const decoded = await decode(bytes, declared.width * declared.height * declared.frames, budget, timeoutMs);
  if (decoded === 'timeout') return tooSlow;
  if ('reason' in decoded) return decoded;
  // libvips read the header itself. Should it disagree with ours, its word counts: ask it.
  if (sniffed && !fitsAsDeclared(decoded, sniffed)) {
    const asked = await askSharp(bytes, timeoutMs);
    if (asked === 'timeout') return tooSlow;
    if (!('width' in asked)) return asked;
    const over = pixelLimitReason(asked, maxPixels);
    if (over) return { ok: false, reason: over };
    declared = asked;
  }
  return { ok: true, data: { format: declared.format, width: declared.width, height: declared.height } };
}

/** The header as sharp reads it, or why the image is refused. */
export async function askSharp(bytes: Buffer, timeoutMs: number): Promise<Declared | { ok: false; reason: string } | 'timeout'> {
  const sharp = await loadSharp();
  let meta: Metadata | 'timeout';
  try {
    meta = await within(timeoutMs, sharp(bytes, { limitInputPixels: false }).metadata());
  } catch (err) {
    return { ok: false, reason: `not a readable image: ${sharpMessage(err)}` };
  }
  if (meta === 'timeout') return 'timeout';
  const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : meta.format;
  if (!ACCEPTED_FORMATS.has(meta.format) || format === 'heif') {
    return { ok: false, reason: `unsupported image format "${format}"` };
  }
  // sharp refuses a header without dimensions, so these are always set here. Animated images
  // declare one frame's size; every frame counts.
  return { format, width: meta.width ?? 0, height: meta.height ?? 0, frames: Math.max(1, meta.pages ?? 1) };
}

export function pixelLimitReason(d: Declared, maxPixels: number): string | null {
  const pixels = d.width * d.height * d.frames;
  if (pixels <= maxPixels) return null;
  return `image declares ${d.width}x${d.height}${d.frames > 1 ? `x${d.frames} frames` : ''} = ${pixels} pixels, over the limit of ${maxPixels}`;
}

/**
 * Decodes every byte of image data for real: a valid header can front truncated or corrupt
 * data. Declared pixels are admitted against the shared budget first.
 */
async function decode(bytes: Buffer, pixels: number, budget: PixelBudget, timeoutMs: number): Promise<OutputInfo | { ok: false; reason: string; transient?: true } | 'timeout'> {
  const maxPixels = budget.limit;
  const sharp = await loadSharp();
  let release: () => void;
  try {
    release = await budget.acquire(pixels, timeoutMs);
  } catch (err) {
    if (!(err instanceof PixelBudgetTimeout)) throw err;
    // Says nothing about the file: reported, not recorded, and tried again next run.
    return { ok: false, reason: `it waited longer than ${timeoutMs} ms for room to be decoded (other images held the pixel budget, MAX_IMAGE_PIXELS); it is tried again next run`, transient: true };
  }
  const decoding = sharp(bytes, { limitInputPixels: maxPixels, sequentialRead: true, failOn: 'error' })
    .timeout({ seconds: Math.max(1, Math.ceil(timeoutMs / 1000)) })
    .resize(DECODE_BOX, DECODE_BOX, { fit: 'inside', withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  void decoding.then(release, release);
  try {
    const done = await within(timeoutMs, decoding);
    return done === 'timeout' ? 'timeout' : done.info;
  } catch (err) {
    const message = sharpMessage(err);
    if (/^timeout\b/i.test(message)) return 'timeout';
    if (/exceeds pixel limit/i.test(message)) return { ok: false, reason: `image is larger than the limit of ${maxPixels} pixels: ${message}` };
    return { ok: false, reason: `image data is corrupt or truncated: ${message}` };
  }
}

/** Whether the decoded size is what a box fit of the sniffed header gives. */
function fitsAsDeclared(out: OutputInfo, h: ImageHeader): boolean {
  if (h.width <= DECODE_BOX && h.height <= DECODE_BOX) return out.width === h.width && out.height === h.height;
  // sharp rounds the shorter side; allow one pixel either way.
  const scale = Math.min(DECODE_BOX / h.width, DECODE_BOX / h.height);
  return Math.abs(out.width - h.width * scale) <= 1 && Math.abs(out.height - h.height * scale) <= 1;
}

export function sharpMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // libvips messages can run over several lines; the first says what went wrong.
  return msg.split('\n')[0]!.trim();
}
