// Text from the source bucket (keys, file contents) is an attacker's choice. These helpers
// turn it into something safe to store, log and print, without losing what it was.

// Control characters (C0, DEL, C1), plus the Unicode line and paragraph separators and the
// bidirectional embedding, override and isolate controls: they break lines, or make text
// display as something else (a file name shown reversed), wherever the text is shown. Also
// lone surrogates (an XML character reference or a JSON escape can carry one): PostgreSQL
// text would store them changed, and its jsonb refuses them.
const CONTROL_CLASS = '\\p{Cc}\\p{Cs}\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';
const CONTROL = new RegExp(`[${CONTROL_CLASS}]`, 'u');
const CONTROL_ALL = new RegExp(`[${CONTROL_CLASS}]`, 'gu');

/** The first control character in s (see CONTROL_CLASS), or null. */
export function firstControlChar(s: string): { char: string; index: number } | null {
  const m = CONTROL.exec(s);
  return m ? { char: m[0], index: m.index } : null;
}

// Characters that show as nothing (zero-width U+200B-U+200D, U+2060, U+FEFF, and the soft
// hyphen U+00AD) or only steer direction (U+200E, U+200F, U+061C): "1000" with one of them is
// another user that looks exactly like 1000. Refused in user_ids and names (issue 18). The
// named ones are a floor; Unicode's Default_Ignorable_Code_Point covers the rest of the kind
// (U+2063, U+180E, U+3164, U+034F, variation selectors, tag characters, ...).
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\u00ad\u061c\u200b-\u200f\u2060\ufeff]/u;

/** The first invisible character in s (see INVISIBLE), or null. */
export function firstInvisibleChar(s: string): { char: string; index: number } | null {
  const m = INVISIBLE.exec(s);
  return m ? { char: m[0], index: m.index } : null;
}

/** "U+0000" for a character, as reasons name it. */
export function codePointName(ch: string): string {
  return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * s with every control character written as \xNN (or \uNNNN): storable in PostgreSQL (no
 * NUL), one line in a log or a terminal (no newline, no escape sequence, no reversal), and
 * still recognisable. A literal backslash is left as it is, so the form is for reading only.
 */
export function printable(s: string): string {
  return s.replace(CONTROL_ALL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
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

/** s cut to at most max characters, marked with "…" when cut. */
export function clip(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join('')}…`;
}
