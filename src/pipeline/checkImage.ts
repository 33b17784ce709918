import sharp, { type Metadata } from 'sharp';
import type { ImageData } from '../model.js';

export type ImageResult =
  | { ok: true; data: ImageData }
  /** transient: the image took too long to decode, which says as much about the machine as the file. */
  | { ok: false; reason: string; transient?: true };

// sharp's cache keeps decoded images around for reuse; we look at each image once.
sharp.cache(false);

// Up to this size an image is decoded whole (at most ~4 MB of RGBA); setting up a resize costs
// more than decoding a small photo.
const DECODE_IN_FULL_MAX_PIXELS = 1_000_000;

/** Formats sharp may report that we accept; avif is reported as heif with av1 compression. */
const ACCEPTED_FORMATS = new Set(['png', 'jpeg', 'webp', 'gif', 'tiff', 'heif']);

/**
 * Checks that bytes are an image sharp can read, within the pixel limit. The pixel count the
 * header declares is checked before any decoding, so a decompression bomb costs nothing.
 */
export async function checkImage(bytes: Buffer, maxPixels: number, timeoutMs = 60_000): Promise<ImageResult> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    return { ok: false, reason: `not a readable image: ${sharpMessage(err)}` };
  }
  const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : meta.format;
  if (!ACCEPTED_FORMATS.has(meta.format) || format === 'heif') {
    return { ok: false, reason: `unsupported image format "${format}"` };
  }
  // sharp refuses a header without dimensions, so these are always set here.
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  // Animated images declare one frame's size; every frame is decoded, so count them all.
  const pixels = width * height * Math.max(1, meta.pages ?? 1);
  if (pixels > maxPixels) {
    return {
      ok: false,
      reason: `image declares ${width}x${height}${(meta.pages ?? 1) > 1 ? `x${meta.pages} frames` : ''} = ${pixels} pixels, over the limit of ${maxPixels}`,
    };
  }
  try {
    // Decode it for real: a valid header can front truncated or corrupt data. A small image is
    // decoded as is; a large one is shrunk while decoding, so its pixels never sit in memory.
    const decoder = sharp(bytes, { limitInputPixels: maxPixels, sequentialRead: true, failOn: 'error' }).timeout({
      seconds: Math.max(1, Math.ceil(timeoutMs / 1000)),
    });
    if (pixels > DECODE_IN_FULL_MAX_PIXELS) decoder.resize(16, 16, { fit: 'inside' });
    await decoder.raw().toBuffer();
  } catch (err) {
    const message = sharpMessage(err);
    if (/^timeout\b/i.test(message)) return { ok: false, reason: `decoding it took longer than ${Math.ceil(timeoutMs / 1000)} s`, transient: true };
    return { ok: false, reason: `image data is corrupt or truncated: ${message}` };
  }
  return { ok: true, data: { format, width, height } };
}

function sharpMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // libvips messages can run over several lines; the first says what went wrong.
  return msg.split('\n')[0]!.trim();
}
