/**
 * The values of a blind index (FORMAT.md §11.2, §11.3): normalisers, and the typed encoding of
 * normalised values that is the HMAC message.
 */
import { describe, isBytes, utf8, wipe } from '../core/bytes.ts';

/** What a column holds: encoded with a type tag, so `1` and `"1"` differ unless a normaliser makes them one. */
export type BlindIndexValue = string | number | bigint | boolean | Date | Uint8Array;

/**
 * Normalisers (FORMAT.md §11.3), applied in the order given, before the value is encoded:
 * - `trim`: strings lose leading and trailing white space (ECMAScript's WhiteSpace and LineTerminator);
 * - `casefold`: strings become `s.toLowerCase().toUpperCase().toLowerCase()` (Unicode default case
 *   conversion, locale-independent), so `Straße`, `STRASSE` and `strasse` match, as do final and medial sigma;
 * - `nfc`: strings in Unicode Normalization Form C, so composed and decomposed accents match;
 * - `text`: numbers, bigints, booleans and Dates become strings (`String(x)`, Dates `toISOString()`), so `1` and `"1"` match;
 * - `digits`: as `text`, then only the ASCII digits 0-9 are kept (`+1 (555) 010-9999` → `15550109999`);
 * - a function of your own: it must be deterministic, for as long as the index exists.
 * Text normalisers leave bytes and other non-strings as they are. Put `nfc` last: case mapping can
 * leave a string that is not in NFC (`ı` + U+0301 folds to `i` + U+0301, which NFC composes to `í`).
 */
export type BlindIndexNormalizer = 'trim' | 'casefold' | 'nfc' | 'text' | 'digits' | ((value: BlindIndexValue) => BlindIndexValue);

const TAG = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5, date: 6 } as const;

/** ECMAScript's WhiteSpace and LineTerminator code points (what String.prototype.trim removes), fixed here. */
const SPACE = '\\u0009-\\u000D\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF';
const TRIM = new RegExp(`^[${SPACE}]+|[${SPACE}]+$`, 'g');
const NOT_DIGIT = /[^0-9]/g;

export function isDate(value: unknown): value is Date {
  return value instanceof Date || Object.prototype.toString.call(value) === '[object Date]';
}

function asText(value: BlindIndexValue): BlindIndexValue {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (isDate(value)) return value.toISOString(); // RangeError for an invalid Date
  return value;
}

/**
 * `digits` (FORMAT.md §11.3): the ASCII digits of the value as text. Bytes are refused (they have
 * no text), and so is a value with no digit at all, which would index like every other such value
 * (`Infinity`, `abc`, `true` and the empty string would all be "").
 */
function digitsOf(v: BlindIndexValue): string {
  if (isBytes(v)) throw new TypeError('the "digits" normaliser does not apply to bytes');
  const text = asText(v) as string;
  const digits = text.replace(NOT_DIGIT, '');
  if (digits.length === 0) throw new RangeError('a value with no digit 0-9 has no index under the "digits" normaliser (store NULL)');
  return digits;
}

const NORMALIZERS: Record<Exclude<BlindIndexNormalizer, (value: BlindIndexValue) => BlindIndexValue>, (value: BlindIndexValue) => BlindIndexValue> = {
  trim: (v) => (typeof v === 'string' ? v.replace(TRIM, '') : v),
  casefold: (v) => (typeof v === 'string' ? v.toLowerCase().toUpperCase().toLowerCase() : v),
  nfc: (v) => (typeof v === 'string' ? v.normalize('NFC') : v),
  text: asText,
  digits: digitsOf,
};

export type NormalizerFn = (value: BlindIndexValue) => BlindIndexValue;

/** The normalisers as functions, checked; a TypeError names the bad one. */
export function normalizerChain(normalize: BlindIndexNormalizer | readonly BlindIndexNormalizer[] | undefined, title = 'normalize'): NormalizerFn[] {
  if (normalize === undefined) return [];
  const list = typeof normalize === 'string' || typeof normalize === 'function' ? [normalize] : normalize;
  if (!Array.isArray(list)) throw new TypeError(`"${title}" expected a normaliser or a list of them, got ${describe(normalize)}`);
  return list.map((n: unknown) => {
    if (typeof n === 'function') return n as NormalizerFn;
    if (typeof n === 'string' && Object.hasOwn(NORMALIZERS, n)) return NORMALIZERS[n as keyof typeof NORMALIZERS];
    throw new TypeError(`"${title}" expected ${Object.keys(NORMALIZERS).map((k) => JSON.stringify(k)).join(', ')} or a function, got ${typeof n === 'string' ? JSON.stringify(n) : describe(n)}`);
  });
}

function checkValue(value: unknown, where: string): BlindIndexValue {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || isBytes(value) || isDate(value)) return value;
  if (value === null || value === undefined) {
    throw new TypeError(`${where} is ${String(value)}: a NULL value has no index (store NULL in the index column)`);
  }
  throw new TypeError(`${where} expected a string, number, bigint, boolean, Date or Uint8Array, got ${describe(value)}`);
}

/** Applies the normalisers in order. */
export function normalizeValue(value: BlindIndexValue, chain: readonly NormalizerFn[], where = 'value'): BlindIndexValue {
  let v = checkValue(value, where);
  // Before any normaliser: with `text`, NaN would otherwise index as "NaN" (FORMAT.md §11.2).
  if (typeof v === 'number' && Number.isNaN(v)) throw new RangeError(`${where} is NaN, which equals nothing: it has no index`);
  if (isDate(v) && Number.isNaN(Date.prototype.getTime.call(v))) throw new RangeError(`${where} is an invalid Date: it has no index`);
  for (const normalize of chain) v = checkValue(normalize(v), `${where} (after a normaliser)`);
  return v;
}

function float64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}

/** tag || value bytes (FORMAT.md §11.2, the tags of §12.1); -0 becomes 0, NaN and invalid Dates are refused. */
function typedValue(value: BlindIndexValue, where: string): [number, Uint8Array] {
  if (typeof value === 'string') return [TAG.string, utf8(value, where)];
  if (typeof value === 'number') {
    if (Number.isNaN(value)) throw new RangeError(`${where} is NaN, which equals nothing: it has no index`);
    return [TAG.number, float64(value === 0 ? 0 : value)];
  }
  if (typeof value === 'bigint') return [TAG.bigint, utf8(value.toString(10), where)];
  if (typeof value === 'boolean') return [TAG.boolean, Uint8Array.of(value ? 1 : 0)];
  if (isDate(value)) {
    const time = value.getTime();
    if (Number.isNaN(time)) throw new RangeError(`${where} is an invalid Date: it has no index`);
    return [TAG.date, float64(time)];
  }
  return [TAG.bytes, value];
}

/**
 * The HMAC message of normalised values: for each, u32 length || tag || value bytes, in order
 * (the length counts the tag). One value for a single column; a compound index's in declared order.
 */
export function encodeIndexMessage(values: readonly BlindIndexValue[], where: readonly string[] = []): Uint8Array {
  const typed: [number, Uint8Array][] = [];
  let length = 0;
  for (let i = 0; i < values.length; i++) {
    const t = typedValue(values[i]!, where[i] ?? 'value');
    typed.push(t);
    length += 5 + t[1].length;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const [tag, bytes] of typed) {
    const n = 1 + bytes.length;
    out[at] = n >>> 24;
    out[at + 1] = (n >>> 16) & 0xff;
    out[at + 2] = (n >>> 8) & 0xff;
    out[at + 3] = n & 0xff;
    out[at + 4] = tag;
    out.set(bytes, at + 5);
    at += 5 + bytes.length;
    if (tag !== TAG.bytes) wipe(bytes); // a copy of the value; bytes are the caller's own
  }
  return out;
}
