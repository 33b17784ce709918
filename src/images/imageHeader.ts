/**
 * Format and size of a still PNG, JPEG or WebP, read from the first bytes. This lets the
 * image check make a single sharp call for the common formats: the pixel limit and the
 * decode budget need the size before anything is decoded, and a separate sharp metadata()
 * call for it costs a trip through the thread pool per image.
 *
 * It never decides that an image is valid: the decode does. It only says what the header
 * claims, or null when it cannot tell (another format, an animated WebP, a header it does
 * not understand), and then the caller asks sharp.
 */
export interface ImageHeader {
  format: 'png' | 'jpeg' | 'webp';
  width: number;
  height: number;
}

export function readImageHeader(b: Buffer): ImageHeader | null {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a && b.toString('latin1', 12, 16) === 'IHDR') {
    return sized('png', b.readUInt32BE(16), b.readUInt32BE(20));
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpegHeader(b);
  if (b.length >= 30 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return webpHeader(b);
  return null;
}

function sized(format: ImageHeader['format'], width: number, height: number): ImageHeader | null {
  return width > 0 && height > 0 ? { format, width, height } : null;
}

// Start-of-frame markers: C0-CF but for C4 (DHT), C8 (JPG) and CC (DAC). libjpeg takes its
// size from the first one.
const isStartOfFrame = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

function jpegHeader(b: Buffer): ImageHeader | null {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Markers without a length: TEM and RSTn. SOI again or EOI before a frame: not ours to read.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    // FF 00 is no marker: libjpeg skips it and scans on for the next FF, where a length read
    // here would jump elsewhere (to a size of the file's choosing). Ask sharp.
    if (marker === 0x00 || marker === 0xd8 || marker === 0xd9 || marker === 0xda) return null;
    const length = b.readUInt16BE(i + 2);
    if (length < 2) return null;
    if (isStartOfFrame(marker)) {
      // Length, precision, height, width. A height of 0 is defined later (DNL): ask sharp.
      if (i + 9 > b.length) return null;
      return sized('jpeg', b.readUInt16BE(i + 7), b.readUInt16BE(i + 5));
    }
    i += 2 + length;
  }
  return null;
}

function webpHeader(b: Buffer): ImageHeader | null {
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ') {
    // Key frame start code, then 14-bit width and height (the top two bits are scaling).
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return sized('webp', b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff);
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return null;
    const bits = b.readUInt32LE(21);
    return sized('webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === 'VP8X') {
    // Animated WebPs decode frame by frame; their frame count is sharp's to tell.
    if ((b[20]! & 0x02) !== 0) return null;
    return sized('webp', b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1);
  }
  return null;
}
