/**
 * The encryption context (FORMAT.md §3): validation, the canonical binary encoding stored in the
 * header, and the canonical JSON sent to a KMS. Both sort keys by their UTF-8 bytes.
 */
import { compareBytes, describe, equalBytes, slabBytes, startsWithPublicBytes, utf8, utf8DecodeStrict } from './bytes.ts';
import { HeaderMalformedError, HeaderTruncatedError, LimitExceededError } from './errors.ts';

/** Caller-chosen, non-secret strings the KMS and the message bind to the data key. */
export type EncryptionContext = Readonly<Record<string, string>>;

export const CONTEXT_LIMITS = {
  maxPairs: 64,
  maxKeyBytes: 256,
  maxValueBytes: 4096,
  maxEncodedBytes: 16384,
} as const;

interface EncodedPair {
  key: Uint8Array;
  value: Uint8Array;
  keyText: string;
  valueText: string;
}

/** A validated context with its canonical encodings, computed once. */
export interface CanonicalContext {
  readonly pairs: EncryptionContext;
  /** FORMAT.md §3 binary encoding. */
  readonly encoded: Uint8Array;
  /** Sorted-key JSON without whitespace, as the KMS sees it. */
  readonly json: string;
}

/**
 * Recently canonicalised contexts, keyed by an injective spelling of their entries: a storage layer
 * seals row after row with the same few contexts, and canonicalising costs more than the lookup.
 * The key is spelled from the same snapshot that is encoded (see snapshot()), so a context whose
 * getters or Proxy traps answer differently on each read cannot file one context under another's
 * key. The cached objects are immutable (frozen pairs; `encoded` is never written to).
 */
const recent = new Map<string, CanonicalContext>();

/** Contexts this module made, validated and encoded: canonicalContext() takes them as they are. */
const made = new WeakSet<object>();
const RECENT_MAX = 256;
/** The snapshot canonicalised last, and its context. */
let lastEntries: Snapshot | undefined;
let last: CanonicalContext | undefined;

/** What a caller may pass as a context: a plain object of strings, or a Map of strings. */
export type ContextInput = EncryptionContext | ReadonlyMap<string, string>;

const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, 'size')!.get!;
const mapForEach = Map.prototype.forEach;

/** A real Map (any realm, subclasses too), told by its internal slot rather than by anything it says about itself. */
function isMap(value: object): boolean {
  try {
    mapSize.call(value);
    return true;
  } catch {
    return false;
  }
}

const hasOwn = Object.prototype.hasOwnProperty;

/** A context read once: keys and values, flat, in the order read (`[k0, v0, k1, v1, ...]`). */
type Snapshot = string[];

function checkPair(key: unknown, value: unknown, title: string, out: Snapshot): void {
  if (typeof key !== 'string') throw new TypeError(`"${title}" keys must be strings, got ${describe(key)}`);
  if (typeof value !== 'string') throw new TypeError(`"${title}" value of key ${JSON.stringify(key)} expected string, got ${describe(value)}`);
  out.push(key, value);
}

/**
 * Reads a caller's context exactly once: a plain object's own enumerable string-keyed properties
 * (one read each, a getter's or a Proxy's answer included), or a Map's entries. Nothing else is a
 * context: anything else is a TypeError that names its type, and a value that is not a string one
 * that names its key (never the value, which may be secret).
 */
function snapshot(context: unknown, title: string): Snapshot {
  const out: Snapshot = [];
  if (context === undefined) return out;
  if (context === null || typeof context !== 'object') {
    throw new TypeError(`"${title}" expected a plain object or a Map<string, string>, got ${describe(context)}`);
  }
  const proto: unknown = Object.getPrototypeOf(context);
  if (proto !== Object.prototype && proto !== null) {
    if (isMap(context)) {
      // The Map's own data, not its (overridable) methods: read once, in insertion order.
      mapForEach.call(context, (value: unknown, key: unknown) => checkPair(key, value, title, out));
      return out;
    }
    const name = describe(context);
    throw new TypeError(
      `"${title}" expected a plain object or a Map<string, string>, got ${name === 'Object' ? 'an object whose prototype is not Object.prototype' : name}`,
    );
  }
  if (Object.getOwnPropertySymbols(context).length > 0) throw new TypeError(`"${title}" has a symbol key: keys must be strings`);
  // One [[Get]] per own property: the snapshot everything after (the memo key, the encoding) is made of.
  for (const key in context) {
    if (hasOwn.call(context, key)) checkPair(key, (context as Record<string, unknown>)[key], title, out);
  }
  return out;
}

/** An injective spelling of the snapshot; undefined when too long to be worth a memo. */
function memoKey(pairs: Snapshot): string | undefined {
  let key = '';
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!;
    const value = pairs[i + 1]!;
    key += `${name.length}:${name}${value.length}:${value}`;
    if (key.length > 1024) return undefined;
  }
  return key;
}

/**
 * Validates a caller's context (TypeError/RangeError at the boundary) and encodes it. The context
 * is read once, before anything else; every later step works on that snapshot.
 */
export function canonicalContext(context: unknown, title = 'context'): CanonicalContext {
  if (typeof context === 'object' && context !== null && (made.has(context) || OneValueContext.made(context))) return context as CanonicalContext;
  const entries = snapshot(context, title);
  // The context of the last call, told by its snapshot's strings (no memo key to spell and hash).
  if (entries.length === lastEntries?.length && entries.every((e, i) => e === lastEntries![i])) return last!;
  const key = memoKey(entries);
  let known = key === undefined ? undefined : recent.get(key);
  if (!known) {
    known = canonicalize(entries, title);
    if (recent.size >= RECENT_MAX) recent.clear();
    if (key !== undefined) recent.set(key, known);
  }
  lastEntries = entries;
  return (last = known);
}

function canonicalize(entries: Snapshot, title: string): CanonicalContext {
  const count = entries.length / 2;
  if (count > CONTEXT_LIMITS.maxPairs) {
    throw new RangeError(`"${title}" has ${count} pairs; at most ${CONTEXT_LIMITS.maxPairs} are allowed`);
  }
  const pairs: EncodedPair[] = [];
  for (let i = 0; i < entries.length; i += 2) {
    const keyText = entries[i]!;
    const valueText = entries[i + 1]!;
    const key = utf8(keyText, `${title} key`);
    const value = utf8(valueText, `${title} value`);
    if (key.length === 0 || key.length > CONTEXT_LIMITS.maxKeyBytes) {
      throw new RangeError(`"${title}" keys must be 1 to ${CONTEXT_LIMITS.maxKeyBytes} UTF-8 bytes, got ${key.length}`);
    }
    if (value.length > CONTEXT_LIMITS.maxValueBytes) {
      throw new RangeError(`"${title}" values must be at most ${CONTEXT_LIMITS.maxValueBytes} UTF-8 bytes, got ${value.length}`);
    }
    pairs.push({ key, value, keyText, valueText });
  }
  pairs.sort((a, b) => compareBytes(a.key, b.key));
  for (let i = 1; i < pairs.length; i++) {
    if (compareBytes(pairs[i - 1]!.key, pairs[i]!.key) === 0) throw new TypeError(`"${title}" has the key ${JSON.stringify(pairs[i]!.keyText)} twice`);
  }
  const encoded = encodePairs(pairs);
  if (encoded.length > CONTEXT_LIMITS.maxEncodedBytes) {
    throw new RangeError(`"${title}" encodes to ${encoded.length} bytes; at most ${CONTEXT_LIMITS.maxEncodedBytes} are allowed`);
  }
  return finish(pairs, encoded);
}

function encodePairs(pairs: EncodedPair[]): Uint8Array {
  let size = 2;
  for (const p of pairs) size += 4 + p.key.length + p.value.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint16(0, pairs.length);
  let o = 2;
  for (const p of pairs) {
    view.setUint16(o, p.key.length);
    out.set(p.key, o + 2);
    o += 2 + p.key.length;
    view.setUint16(o, p.value.length);
    out.set(p.value, o + 2);
    o += 2 + p.value.length;
  }
  return out;
}

function finish(pairs: EncodedPair[], encoded: Uint8Array): CanonicalContext {
  const record: Record<string, string> = Object.create(null);
  for (const p of pairs) record[p.keyText] = p.valueText;
  let json: string | undefined;
  const context: CanonicalContext = {
    pairs: Object.freeze(record),
    encoded,
    // Only a KMS call needs the JSON: built on first use, off the cached hot path.
    get json() {
      json ??= jsonOf(pairs);
      return json;
    },
  };
  made.add(context);
  return context;
}

const jsonOf = (pairs: readonly { keyText: string; valueText: string }[]): string =>
  `{${pairs.map((p) => `${JSON.stringify(p.keyText)}:${JSON.stringify(p.valueText)}`).join(',')}}`;

/** A context of contextTemplate(): its pairs and JSON only when asked for (a KMS never sees a field's binding). */
class OneValueContext implements CanonicalContext {
  #pairs: EncryptionContext | undefined;
  #json: string | undefined;
  readonly encoded: Uint8Array;
  readonly #fixed: EncryptionContext;
  readonly #keys: readonly string[];
  readonly #variableKey: string;
  readonly #value: string;
  constructor(encoded: Uint8Array, fixed: EncryptionContext, keys: readonly string[], variableKey: string, value: string) {
    this.encoded = encoded;
    this.#fixed = fixed;
    this.#keys = keys;
    this.#variableKey = variableKey;
    this.#value = value;
  }
  /** Made by contextTemplate (a private field cannot be forged, unlike a prototype). */
  static made(value: object): value is OneValueContext {
    return #json in value;
  }
  get pairs(): EncryptionContext {
    return (this.#pairs ??= Object.freeze(Object.assign(Object.create(null) as Record<string, string>, this.#fixed, { [this.#variableKey]: this.#value })));
  }
  get json(): string {
    return (this.#json ??= jsonOf(this.#keys.map((k) => ({ keyText: k, valueText: k === this.#variableKey ? this.#value : this.#fixed[k]! }))));
  }
}

/**
 * Contexts that share their keys and all values but one (a database field's binding, where only
 * the row varies): the fixed pairs are checked and encoded once, and each context then costs the
 * encoding of its one value. Returns a function from that value to the canonical context, the
 * same bytes canonicalContext() gives for the whole map.
 */
export function contextTemplate(fixed: EncryptionContext, variableKey: string, title = 'context'): (value: string) => CanonicalContext {
  const sample = canonicalContext({ ...fixed, [variableKey]: '' }, title);
  // In canonical order: by UTF-8 bytes (an object lists integer-like keys first, whatever their bytes).
  const keys = Object.keys(sample.pairs).sort((a, b) => compareBytes(utf8(a, title), utf8(b, title)));
  const at = keys.indexOf(variableKey);
  // Offset of the variable pair's value length: count, then each pair before it, then its key.
  let offset = 2;
  for (let i = 0; i < at; i++) offset += 4 + utf8(keys[i]!, title).length + utf8(sample.pairs[keys[i]!]!, title).length;
  offset += 2 + utf8(variableKey, title).length;
  const prefix = sample.encoded.subarray(0, offset);
  const suffix = sample.encoded.subarray(offset + 2); // the empty value's length was 0
  return (value: string): CanonicalContext => {
    const bytes = utf8(value, `${title} value`);
    if (bytes.length > CONTEXT_LIMITS.maxValueBytes) {
      throw new RangeError(`"${title}" values must be at most ${CONTEXT_LIMITS.maxValueBytes} UTF-8 bytes, got ${bytes.length}`);
    }
    const size = prefix.length + 2 + bytes.length + suffix.length;
    if (size > CONTEXT_LIMITS.maxEncodedBytes) throw new RangeError(`"${title}" encodes to ${size} bytes; at most ${CONTEXT_LIMITS.maxEncodedBytes} are allowed`);
    const encoded = slabBytes(size); // made per value and read once: see slabBytes
    encoded.set(prefix);
    encoded[offset] = bytes.length >> 8;
    encoded[offset + 1] = bytes.length & 0xff;
    encoded.set(bytes, offset + 2);
    encoded.set(suffix, offset + 2 + bytes.length);
    return new OneValueContext(encoded, sample.pairs, keys, variableKey, value);
  };
}

/**
 * Recently parsed encodings, most recent first: messages under different data keys (no cache, or
 * keys rotated) share their context, and comparing its bytes costs less than decoding it. The
 * encoding is self-delimiting, so bytes that hold a known one at the offset parse to it.
 */
const parsedRecently: CanonicalContext[] = [];
const PARSED_RECENTLY_MAX = 8;

/**
 * Parses a canonical context encoding at `offset` of `bytes`. Every declared length is checked
 * against its limit before the field is read; non-canonical order is malformed.
 * Returns the context and the offset just past it.
 */
export function parseContext(bytes: Uint8Array, offset: number): { context: CanonicalContext; end: number } {
  for (let i = 0; i < parsedRecently.length; i++) {
    const known = parsedRecently[i]!;
    if (!startsWithPublicBytes(bytes, known.encoded, offset)) continue;
    if (i > 0) parsedRecently.unshift(...parsedRecently.splice(i, 1));
    return { context: known, end: offset + known.encoded.length };
  }
  const parsed = parseContextBytes(bytes, offset);
  parsedRecently.unshift(parsed.context);
  if (parsedRecently.length > PARSED_RECENTLY_MAX) parsedRecently.pop();
  return parsed;
}

function parseContextBytes(bytes: Uint8Array, offset: number): { context: CanonicalContext; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number, what: string): void => {
    if (offset + n > bytes.length) throw new HeaderTruncatedError(`header truncated in the encryption context (${what})`);
  };
  const start = offset;
  need(2, 'pair count');
  const count = view.getUint16(offset);
  offset += 2;
  if (count > CONTEXT_LIMITS.maxPairs) {
    throw new LimitExceededError(`encryption context has ${count} pairs; the limit is ${CONTEXT_LIMITS.maxPairs}`);
  }
  const pairs: EncodedPair[] = [];
  for (let i = 0; i < count; i++) {
    need(2, 'key length');
    const keyLen = view.getUint16(offset);
    if (keyLen === 0) throw new HeaderMalformedError('encryption context has an empty key');
    if (keyLen > CONTEXT_LIMITS.maxKeyBytes) {
      throw new LimitExceededError(`encryption context key of ${keyLen} bytes; the limit is ${CONTEXT_LIMITS.maxKeyBytes}`);
    }
    need(2 + keyLen, 'key');
    const key = bytes.subarray(offset + 2, offset + 2 + keyLen);
    offset += 2 + keyLen;
    need(2, 'value length');
    const valueLen = view.getUint16(offset);
    if (valueLen > CONTEXT_LIMITS.maxValueBytes) {
      throw new LimitExceededError(`encryption context value of ${valueLen} bytes; the limit is ${CONTEXT_LIMITS.maxValueBytes}`);
    }
    need(2 + valueLen, 'value');
    const value = bytes.subarray(offset + 2, offset + 2 + valueLen);
    offset += 2 + valueLen;
    if (offset - start > CONTEXT_LIMITS.maxEncodedBytes) {
      throw new LimitExceededError(`encryption context exceeds ${CONTEXT_LIMITS.maxEncodedBytes} bytes`);
    }
    const prev = pairs[pairs.length - 1];
    if (prev && compareBytes(prev.key, key) >= 0) {
      throw new HeaderMalformedError('encryption context keys are not in canonical (sorted, unique) order');
    }
    const keyText = utf8DecodeStrict(key);
    const valueText = utf8DecodeStrict(value);
    if (keyText === undefined || valueText === undefined) {
      throw new HeaderMalformedError('encryption context is not valid UTF-8');
    }
    pairs.push({ key, value, keyText, valueText });
  }
  const encoded = bytes.slice(start, offset);
  return { context: finish(pairs, encoded), end: offset };
}

export function sameContext(a: CanonicalContext, b: CanonicalContext): boolean {
  return equalBytes(a.encoded, b.encoded);
}
