// Text from the source bucket (keys, file contents) is an attacker's choice. These helpers
// turn it into something safe to store, log and print, without losing what it was.

const CONTROL = /\p{Cc}/u;
const CONTROL_ALL = /\p{Cc}/gu;

/** The first control character (C0, DEL or C1) in s, or null. */
export function firstControlChar(s: string): { char: string; index: number } | null {
  const m = CONTROL.exec(s);
  return m ? { char: m[0], index: m.index } : null;
}

/** "U+0000" for a character, as reasons name it. */
export function codePointName(ch: string): string {
  return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * s with every control character written as \xNN: storable in PostgreSQL (no NUL), one line
 * in a log or a terminal (no newline, no escape sequence), and still recognisable.
 */
export function printable(s: string): string {
  return s.replace(CONTROL_ALL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

// ignoreBOM keeps a leading U+FEFF: in a file name it is part of the name, not a marker.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decodes bytes that should be UTF-8. Valid input comes back as is (valid: true). Otherwise
 * every byte that is not part of a valid sequence is written as \xNN, so the name can still
 * be reported.
 */
export function decodeUtf8Lenient(bytes: Uint8Array): { text: string; valid: boolean } {
  try {
    return { text: utf8.decode(bytes), valid: true };
  } catch {
    // Fall through: rebuild it one sequence at a time.
  }
  let text = '';
  for (let i = 0; i < bytes.length; ) {
    let len = 1;
    let ch: string | null = null;
    // A fatal decoder refuses a partial or broken sequence, so the shortest slice that decodes
    // is the one valid character starting here, if there is one.
    for (; len <= 4 && i + len <= bytes.length; len++) {
      try {
        ch = utf8.decode(bytes.subarray(i, i + len));
        break;
      } catch {
        // Try one byte longer.
      }
    }
    if (ch === null) {
      text += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
      i += 1;
    } else {
      text += ch;
      i += len;
    }
  }
  return { text, valid: false };
}
