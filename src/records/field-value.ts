/**
 * Typed field values (FORMAT.md §12): the plaintext of a sealed database field is a type tag and
 * the value's bytes, so a value reads back as the type it was written as; and the text form of a
 * sealed field for text columns.
 *
 *   plaintext = tag (1) || bytes
 *   0x01 string   UTF-8
 *   0x02 bytes    as is
 *   0x03 number   IEEE 754 binary64, big-endian; NaN only as 7ff8000000000000, -0 kept
 *   0x04 bigint   the decimal string, UTF-8 (sign first), no leading zeros, never -0
 *   0x05 boolean  one byte, 0x00 or 0x01
 *   0x06 date     milliseconds since the epoch, binary64 big-endian: an integer within ±8.64e15, not -0
 *   0x07 json     UTF-8 of JSON.stringify, exactly (a reader parses, writes again, and compares); never null
 *   0x08 decimal  u8 scale || the unscaled integer as a bigint's text: "12.50" at scale 2 is 02 "1250"
 *
 * A reader refuses whatever a writer never writes, with FieldMalformedError (ERR_FIELD_MALFORMED).
 *
 *   text form = "kme." || base64url(sealed message), no padding
 */
import { base64url, isWellFormedUtf8, slabBytes, utf8, utf8DecodeStrict } from '../core/bytes.ts';
import { FieldMalformedError } from '../core/errors.ts';
import { builtinModule } from '../core/runtime.ts';

export type FieldType = 'string' | 'bytes' | 'number' | 'bigint' | 'boolean' | 'date' | 'json' | 'decimal';

export interface FieldValues {
  string: string;
  bytes: Uint8Array;
  number: number;
  bigint: bigint;
  boolean: boolean;
  date: Date;
  json: unknown;
  /** A fixed-scale decimal as a string (`"-12.50"`); it reads back with exactly the column's `scale` decimal places. */
  decimal: string;
}

const TAGS: Record<FieldType, number> = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5, date: 6, json: 7, decimal: 8 };
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

/**
 * tag || the string's bytes when it is all ASCII (most stored text), written in one pass into one
 * buffer; undefined otherwise. Encoding then tagging made two buffers and a copy per field.
 */
function taggedAscii(tag: number, value: string): Uint8Array | undefined {
  const n = value.length;
  const out = new Uint8Array(1 + n);
  out[0] = tag;
  for (let i = 0; i < n; i++) {
    const code = value.charCodeAt(i);
    if (code > 0x7f) {
      out.fill(0, 1, i + 1);
      return undefined;
    }
    out[i + 1] = code;
  }
  return out;
}

function taggedText(tag: number, value: string, where: string): Uint8Array {
  if (!value.isWellFormed()) throw new FieldTypeError(`${where} is not well-formed Unicode (a lone surrogate)`);
  const body = utf8(value, where);
  try {
    return tagged(tag, body);
  } finally {
    body.fill(0);
  }
}

function float64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}

/** The one NaN a writer writes (the quiet NaN with no payload bits): 7ff8 0000 0000 0000. */
const CANONICAL_NAN = Uint8Array.of(0x7f, 0xf8, 0, 0, 0, 0, 0, 0);
/** The largest time value of a Date, in milliseconds either side of the epoch (ECMAScript TimeClip). */
export const MAX_DATE_MS = 8.64e15;

const DECIMAL = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;

/** tag 08 || scale || the unscaled integer's text; a FieldTypeError for another value, or more places than the scale. */
function encodeDecimal(value: unknown, scale: number, where: string): Uint8Array {
  const m = typeof value === 'string' ? DECIMAL.exec(value) : null;
  if (!m) throw new FieldTypeError(`${where} expected a decimal string such as "-12.50", got ${typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : typeof value}`);
  const fraction = m[3] ?? '';
  if (fraction.length > scale) throw new FieldTypeError(`${where} has ${fraction.length} decimal places; the column's scale is ${scale} (round it first)`);
  const digits = BigInt(m[2]! + fraction.padEnd(scale, '0'));
  return tagged(TAGS.decimal, Uint8Array.of(scale, ...utf8((m[1] && digits !== 0n ? -digits : digits).toString(10), where)));
}

/** The text of an unscaled integer at a scale: exactly `scale` places. */
function decimalText(unscaledText: string, scale: number): string {
  const negative = unscaledText.startsWith('-');
  const digits = (negative ? unscaledText.slice(1) : unscaledText).padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${text}` : text;
}

/** The plaintext of a field: its type tag and bytes. Throws FieldTypeError for a value of another type. `scale`: a decimal column's. */
export function encodeFieldValue(type: FieldType, value: unknown, where: string, scale = 0): Uint8Array {
  // Text, the common column, before the error closure below is made (a row seals several fields).
  if (type === 'string' && typeof value === 'string') return taggedAscii(TAGS.string, value) ?? taggedText(TAGS.string, value, where);
  const wrong = (): FieldTypeError => new FieldTypeError(`${where} expected a ${type}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  switch (type) {
    case 'string':
      if (typeof value !== 'string') throw wrong();
      return taggedAscii(TAGS.string, value) ?? taggedText(TAGS.string, value, where);
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw wrong();
      return tagged(TAGS.bytes, value);
    case 'number':
      if (typeof value !== 'number') throw wrong();
      // Every NaN is written as the one canonical NaN (a reader refuses any other); -0 stays -0.
      return tagged(TAGS.number, Number.isNaN(value) ? CANONICAL_NAN : float64(value));
    case 'bigint':
      if (typeof value !== 'bigint') throw wrong();
      return tagged(TAGS.bigint, utf8(value.toString(10), where));
    case 'boolean':
      if (typeof value !== 'boolean') throw wrong();
      return Uint8Array.of(TAGS.boolean, value ? 1 : 0);
    case 'date': {
      if (!(value instanceof Date)) throw wrong();
      const time = Date.prototype.getTime.call(value);
      if (dateProblem(time) !== undefined) throw new FieldTypeError(`${where} is an invalid Date`);
      return tagged(TAGS.date, float64(time));
    }
    case 'json': {
      const text = JSON.stringify(value);
      if (text === undefined) throw new FieldTypeError(`${where} has no JSON form`);
      if (text === 'null') throw new FieldTypeError(`${where} has the JSON form null: store NULL instead (null is never sealed)`);
      return taggedAscii(TAGS.json, text) ?? taggedText(TAGS.json, text, where);
    }
    case 'decimal':
      return encodeDecimal(value, scale, where);
    default:
      throw new FieldTypeError(`${where}: unknown field type ${JSON.stringify(type)}`);
  }
}

/** Why a Date's time value is not one a Date holds (NaN, a fraction, beyond ±8.64e15 ms, -0), or undefined. */
function dateProblem(time: number): string | undefined {
  if (!Number.isInteger(time)) return Number.isNaN(time) ? 'NaN is not a time' : 'not a whole number of milliseconds';
  if (Math.abs(time) > MAX_DATE_MS) return 'beyond 8.64e15 milliseconds from the epoch';
  if (Object.is(time, -0)) return '-0 is not a time value (a Date holds +0)';
  return undefined;
}

/** The value of a field's plaintext, or why it is not a valid value of `type` (FORMAT.md §12.1). */
function decodeOrProblem(type: FieldType, plaintext: Uint8Array, scale = 0): { value: FieldValues[FieldType] } | { problem: string } {
  if (plaintext.length === 0) return { problem: 'the plaintext is empty' };
  if (TYPES[plaintext[0]!] !== type) return { problem: `type tag 0x${plaintext[0]!.toString(16).padStart(2, '0')} is not the tag of ${type}` };
  const body = plaintext.subarray(1);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (type) {
    case 'string': {
      const text = utf8DecodeStrict(body);
      return text === undefined ? { problem: 'not well-formed UTF-8' } : { value: text };
    }
    case 'bytes':
      return { value: body.slice() };
    case 'number': {
      if (body.length !== 8) return { problem: `${body.length} bytes, not 8` };
      const n = view.getFloat64(0);
      if (Number.isNaN(n) && !body.every((b, i) => b === CANONICAL_NAN[i])) return { problem: 'a NaN other than 7ff8000000000000' };
      return { value: n };
    }
    case 'bigint': {
      if (!isIntegerText(body)) return { problem: 'not -?(0|[1-9][0-9]*) in ASCII, or -0' };
      return { value: BigInt(utf8DecodeStrict(body)!) };
    }
    case 'boolean':
      return body.length === 1 && body[0]! <= 1 ? { value: body[0] === 1 } : { problem: 'not one byte 00 or 01' };
    case 'date': {
      if (body.length !== 8) return { problem: `${body.length} bytes, not 8` };
      const time = view.getFloat64(0);
      const problem = dateProblem(time);
      return problem === undefined ? { value: new Date(time) } : { problem };
    }
    case 'json':
      return decodeJson(body);
    case 'decimal': {
      if (body.length < 2 || body[0] !== scale) return { problem: `scale byte ${body.length ? body[0] : 'missing'}, not the column's ${scale}` };
      if (!isIntegerText(body.subarray(1))) return { problem: 'the unscaled value is not -?(0|[1-9][0-9]*) in ASCII, or -0' };
      return { value: decimalText(utf8DecodeStrict(body.subarray(1))!, scale) };
    }
  }
}

/** JSON as JSON.stringify writes it: parsed, written again, the same bytes; and not `null`. */
function decodeJson(body: Uint8Array): { value: unknown } | { problem: string } {
  const text = utf8DecodeStrict(body);
  if (text === undefined) return { problem: 'not well-formed UTF-8' };
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return { problem: 'not JSON' };
  }
  if (value === null) return { problem: 'null is never sealed' };
  if (JSON.stringify(value) !== text) return { problem: 'not in the form JSON.stringify writes (white space, a repeated key, keys or numbers written otherwise)' };
  return { value };
}

/**
 * Whether decodeFieldValue would give a value, checked on the bytes where it can be (a reseal
 * needs no value, and a decoded string cannot be wiped); JSON is parsed, as nothing less tells.
 */
export function isFieldValue(type: FieldType, plaintext: Uint8Array, scale = 0): boolean {
  if (type === 'string') return plaintext.length > 0 && TYPES[plaintext[0]!] === type && isWellFormedUtf8(plaintext.subarray(1));
  if (type === 'bytes') return plaintext.length > 0 && TYPES[plaintext[0]!] === type;
  return 'value' in decodeOrProblem(type, plaintext, scale);
}

/** -?(0|[1-9][0-9]*) in ASCII, and not -0: a bigint's text form. */
function isIntegerText(body: Uint8Array): boolean {
  let i = body[0] === 0x2d ? 1 : 0;
  if (i >= body.length) return false;
  if (body[i] === 0x30) return body.length === i + 1 && i === 0;
  for (; i < body.length; i++) if (body[i]! < 0x30 || body[i]! > 0x39) return false;
  return true;
}

/** The value a field's plaintext holds; undefined when its tag or bytes are not a valid value of `type`. */
export function decodeFieldValue(type: FieldType, plaintext: Uint8Array, scale = 0): FieldValues[FieldType] | undefined {
  // Text, the common column: no view and no result object per value (a batch of reads makes thousands).
  if (type === 'string') return plaintext.length > 0 && plaintext[0] === TAGS.string ? textAfterTag(plaintext) : undefined;
  const decoded = decodeOrProblem(type, plaintext, scale);
  return 'value' in decoded ? decoded.value : undefined;
}

/** The typed error of a plaintext that is not a valid value of `type` (ERR_FIELD_MALFORMED); undefined when it is one. */
export function fieldMalformed(type: FieldType, plaintext: Uint8Array, scale = 0): FieldMalformedError | undefined {
  const decoded = decodeOrProblem(type, plaintext, scale);
  if ('value' in decoded) return undefined;
  return new FieldMalformedError(type, plaintext[0], decoded.problem);
}

/**
 * The `row` of a field's binding (FORMAT.md §12.2): JSON.stringify of the array of the key columns'
 * values, in declared order, even for one column. A value is a string (well-formed Unicode), a
 * finite number, a bigint (written as its decimal string) or a valid Date (written as its ISO
 * string); anything else is refused with a TypeError naming the column, by writer and reader alike.
 */
export function rowKeyJson(values: readonly unknown[], columns: readonly string[], table: string): string {
  // One string key (the common primary key): its JSON array at once, without an array of parts.
  const only = values.length === 1 ? values[0] : undefined;
  if (typeof only === 'string' && only.isWellFormed()) return `[${JSON.stringify(only)}]`;
  const parts: unknown[] = [];
  for (let i = 0; i < values.length; i++) parts.push(rowKeyPart(values[i], columns, table, i));
  return JSON.stringify(parts);
}

/** One value of a bound primary key as its JSON array holds it, or a TypeError naming the column. */
function rowKeyPart(v: unknown, columns: readonly string[], table: string, i: number): unknown {
  const where = () => `table ${table}: primary key column ${columns[i] ?? i}`;
  if (typeof v === 'string') {
    if (!v.isWellFormed()) throw new TypeError(`${where()} is not well-formed Unicode (a lone surrogate)`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError(`${where()} is ${v}: a key number must be finite`);
    return v;
  }
  if (typeof v === 'bigint') return v.toString(10);
  if (v instanceof Date) {
    if (dateProblem(Date.prototype.getTime.call(v)) !== undefined) throw new TypeError(`${where()} is an invalid Date`);
    return v.toISOString();
  }
  throw new TypeError(`${where()} is a ${v === null ? 'null' : typeof v}${v instanceof Uint8Array ? ' (bytes)' : ''}: a bound key is a string, a finite number, a bigint or a Date`);
}

/** The part of Node's Buffer the text form uses: its native base64url encoder and decoder, and UTF-8 decoder. */
interface NodeBufferClass {
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): { toString(encoding: 'base64url' | 'utf8'): string; write(text: string, encoding: 'base64url'): number };
}
interface NodeBufferModule {
  Buffer: NodeBufferClass;
  /** Strict UTF-8 validation (Node 18.14+), as a fatal TextDecoder's. */
  isUtf8?: (input: ArrayBufferView) => boolean;
}
let nodeBuffer: NodeBufferModule | null | undefined;
const nativeModule = (): NodeBufferModule | undefined => (nodeBuffer ??= builtinModule<NodeBufferModule>('node:buffer') ?? null) ?? undefined;
const nativeBuffer = (): NodeBufferClass | undefined => nativeModule()?.Buffer;

/**
 * The string a string field's plaintext holds after its tag, or undefined when it is not
 * well-formed UTF-8: validated and decoded natively where Node is (a read of 50 rows decodes 150 of
 * them), else by utf8DecodeStrict. Both keep a leading U+FEFF (the strict decoder ignores no BOM).
 */
function textAfterTag(plaintext: Uint8Array): string | undefined {
  const native = nativeModule();
  if (native?.isUtf8) {
    const view = native.Buffer.from(plaintext.buffer, plaintext.byteOffset + 1, plaintext.byteLength - 1);
    return native.isUtf8(view as unknown as ArrayBufferView) ? view.toString('utf8') : undefined;
  }
  return utf8DecodeStrict(plaintext.subarray(1));
}

const BASE64URL_TEXT = /^[A-Za-z0-9_-]*$/;

/** The 6-bit value of a base64url character (one of the alphabet's). */
function sextet(code: number): number {
  if (code >= 0x61) return code - 0x61 + 26; // a-z
  if (code >= 0x41) return code === 0x5f ? 63 : code - 0x41; // A-Z, _
  return code === 0x2d ? 62 : code - 0x30 + 52; // -, 0-9
}

/**
 * Canonical unpadded base64url, as the portable decoder accepts it: only the alphabet, a length
 * that is not 1 mod 4, and zero bits left over in the last character. Node's decoder skips what it
 * does not know, so the text is checked first; then it decodes natively into slab memory.
 */
function nativeBase64urlBytes(text: string, native: NodeBufferClass): Uint8Array | undefined {
  const rest = text.length % 4;
  if (rest === 1 || !BASE64URL_TEXT.test(text)) return undefined;
  if (rest > 0 && (sextet(text.charCodeAt(text.length - 1)) & (rest === 2 ? 0x0f : 0x03)) !== 0) return undefined;
  const out = slabBytes(Math.floor((text.length * 3) / 4));
  if (native.from(out.buffer, out.byteOffset, out.byteLength).write(text, 'base64url') !== out.length) return undefined;
  return out;
}

/**
 * base64url (no padding) of the bytes: Node's native encoder where there is one, which writes the
 * string at once (the portable encoder costs about a tenth of a sealed field's time), else ours.
 * The same characters either way (test/records/field-value.test.ts).
 */
function base64urlText(bytes: Uint8Array): string {
  const native = nativeBuffer();
  return native ? native.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url') : base64url.encode(bytes);
}

/** The text form of a sealed field. */
export function fieldToText(sealed: Uint8Array): string {
  return TEXT_PREFIX + base64urlText(sealed);
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = {
  portableText: (sealed: Uint8Array): string => TEXT_PREFIX + base64url.encode(sealed),
  portableBytes: (text: string): Uint8Array | undefined => (text.startsWith(TEXT_PREFIX) ? base64url.decode(text.slice(TEXT_PREFIX.length)) : undefined),
};

/** The sealed bytes of a text-form field, or undefined when the text is not one. */
export function fieldFromText(text: string): Uint8Array | undefined {
  if (!text.startsWith(TEXT_PREFIX)) return undefined;
  const body = text.slice(TEXT_PREFIX.length);
  const native = nativeBuffer();
  return native ? nativeBase64urlBytes(body, native) : base64url.decodeTransient(body);
}

/** Characters of the text form for a sealed message of `bytes` bytes. */
export function textLength(bytes: number): number {
  return TEXT_PREFIX.length + Math.ceil((bytes * 4) / 3);
}
