/**
 * Compares object keys in UTF-8 byte order: the order S3 lists keys in, and PostgreSQL's
 * COLLATE "C" on a UTF-8 database. A run merges the listing with the recorded files in this
 * order, so all three must agree.
 *
 * JavaScript's `<` compares UTF-16 code units, which agrees with UTF-8 bytes except that
 * surrogates (astral characters) sort below U+E000..U+FFFF instead of above them.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Move surrogates above the rest of the BMP.
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}
