// JSON text of checkpoint files (config.json, the index, safetensors headers): parsing with
// errors that give a position and never quote the text, duplicate keys of the top-level
// object, UTF-8 validation, and descriptions of parsed values safe to put in a message.
//
// Rule: an error message may name keys the loader looks for and quote a parsed value only when
// it is a number, a boolean, null or a short identifier-like string (a dtype, a model_type, a
// tensor name); raw bytes of a file are never quoted (JSON.parse's own messages quote them, so
// they are replaced by a position).

/** The first JSON syntax error of `text` (character offset and what is wrong), or null if it is valid JSON. */
export function jsonSyntaxError(text: string): { offset: number; reason: string } | null {
  const n = text.length;
  let i = 0;
  const err = (reason: string) => ({ offset: i, reason });
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  /** i at '"': moves past the closing quote, or returns an error. */
  const string = (): { offset: number; reason: string } | null => {
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return null;
      }
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return err('bad \\u escape in a string');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          return err('bad escape in a string');
        }
        continue;
      }
      if (c < 0x20) return err('control character in a string');
      i++;
    }
    return err('unterminated string');
  };
  const digits = () => {
    const start = i;
    while (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
    return i > start;
  };
  const number = (): { offset: number; reason: string } | null => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (!digits()) return err('bad number');
    if (text[i] === '.') {
      i++;
      if (!digits()) return err('bad number');
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!digits()) return err('bad number');
    }
    return null;
  };
  /** After '{' or ',' in an object: a key and its colon. */
  const key = (): { offset: number; reason: string } | null => {
    ws();
    if (text[i] !== '"') return err(i >= n ? 'unexpected end of input' : 'expected a property name');
    const e = string();
    if (e) return e;
    ws();
    if (text[i] !== ':') return err(i >= n ? 'unexpected end of input' : "expected ':' after a property name");
    i++;
    return null;
  };

  const stack: number[] = []; // 0: object, 1: array
  for (;;) {
    // A value.
    ws();
    if (i >= n) return err('unexpected end of input');
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
      } else {
        stack.push(0);
        const e = key();
        if (e) return e;
        continue;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
      } else {
        stack.push(1);
        continue;
      }
    } else if (c === '"') {
      const e = string();
      if (e) return e;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      const e = number();
      if (e) return e;
    } else if (text.startsWith('true', i)) {
      i += 4;
    } else if (text.startsWith('false', i)) {
      i += 5;
    } else if (text.startsWith('null', i)) {
      i += 4;
    } else {
      return err('unexpected character');
    }
    // After a value: close containers or move to the next element.
    for (;;) {
      ws();
      if (stack.length === 0) return i < n ? err('unexpected characters after the JSON value') : null;
      const top = stack[stack.length - 1];
      const d = text[i];
      if (d === ',') {
        i++;
        if (top === 0) {
          const e = key();
          if (e) return e;
        }
        break;
      }
      if ((top === 0 && d === '}') || (top === 1 && d === ']')) {
        i++;
        stack.pop();
        continue;
      }
      if (i >= n) return err('unexpected end of input');
      return err(top === 0 ? "expected ',' or '}' after a property value" : "expected ',' or ']' after an array element");
    }
  }
}

/** "line 3, column 7 (character 52)" of a character offset. */
function where(text: string, offset: number): string {
  let line = 1, lineStart = 0;
  for (let k = text.indexOf('\n'); k !== -1 && k < offset; k = text.indexOf('\n', k + 1)) {
    line++;
    lineStart = k + 1;
  }
  return `line ${line}, column ${offset - lineStart + 1} (character ${offset})`;
}

/**
 * JSON.parse, with an error message that says where the text is broken and never quotes it.
 * Returns the value, or the message of the syntax error.
 */
export function parseJson(text: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) };
  } catch {
    const e = jsonSyntaxError(text);
    return { error: e ? `not valid JSON: ${e.reason} at ${where(text, e.offset)}` : 'not valid JSON' };
  }
}

/**
 * The keys of the top-level object of `text` as written, duplicates included (JSON.parse keeps
 * only the last of each). `text` must be valid JSON whose value is an object.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  const n = text.length;
  let i = text.indexOf('{') + 1;
  let depth = 1, expectKey = true;
  while (i < n && depth > 0) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i++;
      let escaped = false;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          escaped = true;
          i += 2;
        } else if (d === 0x22) {
          break;
        } else {
          i++;
        }
      }
      i++;
      if (depth === 1 && expectKey) {
        keys.push(escaped ? (JSON.parse(text.slice(start, i)) as string) : text.slice(start + 1, i - 1));
        expectKey = false;
      }
      continue;
    }
    if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && depth === 1) expectKey = true;
    i++;
  }
  return keys;
}

/** The first key of `keys` seen twice, or undefined. */
export function firstDuplicate(keys: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) return k;
    seen.add(k);
  }
  return undefined;
}

/** Offset of the first byte that is not valid UTF-8 (overlong forms and surrogates included), or -1. */
export function utf8ErrorOffset(b: Uint8Array): number {
  const n = b.length;
  for (let i = 0; i < n;) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let len: number, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + len > n) return i;
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k < len; k++) if (b[i + k] < 0x80 || b[i + k] > 0xbf) return i;
    i += len;
  }
  return -1;
}

const QUOTABLE = /^[A-Za-z0-9_.:+\-{}]*$/;

/** A parsed JSON value, described for a message without quoting free text (see the rule above). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') {
    return v.length <= 64 && QUOTABLE.test(v) ? JSON.stringify(v) : `a string of ${v.length} characters`;
  }
  if (Array.isArray(v)) {
    if (v.length <= 8 && v.every((x) => typeof x === 'number' || typeof x === 'boolean' || x === null)) return `[${v.map(String).join(', ')}]`;
    return `an array of ${v.length} item${v.length === 1 ? '' : 's'}`;
  }
  return 'an object';
}
