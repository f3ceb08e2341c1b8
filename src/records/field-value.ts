/**
 * Typed field values (FORMAT.md §12): the plaintext of a sealed database field is a type tag and
 * the value's bytes, so a value reads back as the type it was written as; and the text form of a
 * sealed field for text columns.
 *
 *   plaintext = tag (1) || bytes
 *   0x01 string   UTF-8
 *   0x02 bytes    as is
 *   0x03 number   IEEE 754 binary64, big-endian
 *   0x04 bigint   the decimal string, UTF-8 (sign first)
 *   0x05 boolean  one byte, 0x00 or 0x01
 *   0x06 date     milliseconds since the epoch, binary64 big-endian
 *   0x07 json     UTF-8 of JSON.stringify
 *
 *   text form = "kme." || base64url(sealed message), no padding
 */
import { base64url, isWellFormedUtf8, utf8, utf8DecodeStrict } from '../core/bytes.ts';

export type FieldType = 'string' | 'bytes' | 'number' | 'bigint' | 'boolean' | 'date' | 'json';

export interface FieldValues {
  string: string;
  bytes: Uint8Array;
  number: number;
  bigint: bigint;
  boolean: boolean;
  date: Date;
  json: unknown;
}

const TAGS: Record<FieldType, number> = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5, date: 6, json: 7 };
const TYPES: Record<number, FieldType> = Object.fromEntries(Object.entries(TAGS).map(([t, n]) => [n, t as FieldType]));

export const TEXT_PREFIX = 'kme.';

/** A value that is not of its column's type, or not representable. */
class FieldTypeError extends TypeError {}

function tagged(tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

function float64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}

/** The plaintext of a field: its type tag and bytes. Throws FieldTypeError for a value of another type. */
export function encodeFieldValue(type: FieldType, value: unknown, where: string): Uint8Array {
  const wrong = (): FieldTypeError => new FieldTypeError(`${where} expected a ${type}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  switch (type) {
    case 'string':
      if (typeof value !== 'string') throw wrong();
      return tagged(TAGS.string, utf8(value, where));
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw wrong();
      return tagged(TAGS.bytes, value);
    case 'number':
      if (typeof value !== 'number') throw wrong();
      return tagged(TAGS.number, float64(value));
    case 'bigint':
      if (typeof value !== 'bigint') throw wrong();
      return tagged(TAGS.bigint, utf8(value.toString(10), where));
    case 'boolean':
      if (typeof value !== 'boolean') throw wrong();
      return Uint8Array.of(TAGS.boolean, value ? 1 : 0);
    case 'date':
      if (!(value instanceof Date)) throw wrong();
      if (Number.isNaN(value.getTime())) throw new FieldTypeError(`${where} is an invalid Date`);
      return tagged(TAGS.date, float64(value.getTime()));
    case 'json': {
      const text = JSON.stringify(value);
      if (text === undefined) throw new FieldTypeError(`${where} has no JSON form`);
      return tagged(TAGS.json, utf8(text, where));
    }
    default:
      throw new FieldTypeError(`${where}: unknown field type ${JSON.stringify(type)}`);
  }
}

/**
 * Whether decodeFieldValue would give a value, checked on the bytes where it can be (a reseal
 * needs no value, and a decoded string cannot be wiped); JSON is parsed, as nothing less tells.
 */
export function isFieldValue(type: FieldType, plaintext: Uint8Array): boolean {
  if (plaintext.length === 0 || TYPES[plaintext[0]!] !== type) return false;
  const body = plaintext.subarray(1);
  switch (type) {
    case 'string':
      return isWellFormedUtf8(body);
    case 'bytes':
      return true;
    case 'number':
    case 'date':
      return body.length === 8;
    case 'boolean':
      return body.length === 1 && body[0]! <= 1;
    case 'bigint':
      return isIntegerText(body);
    case 'json':
      return decodeFieldValue(type, plaintext) !== undefined;
  }
}

/** -?(0|[1-9][0-9]*) in ASCII: a bigint's text form. */
function isIntegerText(body: Uint8Array): boolean {
  let i = body[0] === 0x2d ? 1 : 0;
  if (i >= body.length) return false;
  if (body[i] === 0x30) return body.length === i + 1;
  for (; i < body.length; i++) if (body[i]! < 0x30 || body[i]! > 0x39) return false;
  return true;
}

/** The value a field's plaintext holds; undefined when its tag or bytes are not a valid value of `type`. */
export function decodeFieldValue(type: FieldType, plaintext: Uint8Array): FieldValues[FieldType] | undefined {
  if (plaintext.length === 0 || TYPES[plaintext[0]!] !== type) return undefined;
  const body = plaintext.subarray(1);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (type) {
    case 'string':
      return utf8DecodeStrict(body);
    case 'bytes':
      return body.slice();
    case 'number':
      return body.length === 8 ? view.getFloat64(0) : undefined;
    case 'bigint': {
      const text = utf8DecodeStrict(body);
      return text !== undefined && /^-?(0|[1-9]\d*)$/.test(text) ? BigInt(text) : undefined;
    }
    case 'boolean':
      return body.length === 1 && body[0]! <= 1 ? body[0] === 1 : undefined;
    case 'date':
      return body.length === 8 ? new Date(view.getFloat64(0)) : undefined;
    case 'json': {
      const text = utf8DecodeStrict(body);
      if (text === undefined) return undefined;
      try {
        return JSON.parse(text) as unknown;
      } catch {
        return undefined;
      }
    }
  }
}

/** The text form of a sealed field. */
export function fieldToText(sealed: Uint8Array): string {
  return TEXT_PREFIX + base64url.encode(sealed);
}

/** The sealed bytes of a text-form field, or undefined when the text is not one. */
export function fieldFromText(text: string): Uint8Array | undefined {
  if (!text.startsWith(TEXT_PREFIX)) return undefined;
  return base64url.decodeTransient(text.slice(TEXT_PREFIX.length));
}

/** Characters of the text form for a sealed message of `bytes` bytes. */
export function textLength(bytes: number): number {
  return TEXT_PREFIX.length + Math.ceil((bytes * 4) / 3);
}
