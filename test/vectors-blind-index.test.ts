/**
 * Blind-index vectors (test/vectors/blind-index.json, FORMAT.md §11), for a second implementation
 * that has no KMS and no key hierarchy: each case names its root key (the intermediate key of
 * P + "#blind-index", version V) and gives the normalised values, the HMAC message, the column
 * key, the index bytes and its output. Checked three ways: an independent implementation here
 * (node:crypto's HMACs only, from the file alone), the library's index on every backend, and the
 * library again for every refusal. UPDATE_VECTORS=1 rewrites the file (only when §11 changes).
 */
import { createHash, createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import type { BackendName } from '../src/index.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from '../src/kms/key-provider.ts';
import { type BlindIndexNormalizer, type BlindIndexValue, createBlindIndex } from '../src/records/blind-index.ts';
import { BACKENDS, hex, readVectors, unhex } from './helpers.ts';

/** A typed value in JSON: numbers as binary64 hex (NaN, -0 and all), bytes as hex, Dates as milliseconds. */
type Typed =
  | { type: 'string'; value: string }
  | { type: 'bytes'; value: string }
  | { type: 'number'; value: string }
  | { type: 'bigint'; value: string }
  | { type: 'boolean'; value: boolean }
  | { type: 'date'; value: number | null }
  | { type: 'null' };
interface Column {
  name: string;
  normalize: string[];
}
interface Case {
  name: string;
  table: string;
  columns: Column[];
  partition: string;
  version: number;
  bits: number;
  output: 'base64url' | 'bytes';
  values: Typed[];
  /** Positive cases: */
  normalized?: Typed[];
  info?: string;
  columnKey?: string;
  message?: string;
  hmac?: string;
  index?: string;
  /** The index as stored: base64url text, or hex for `bytes`. */
  stored?: string;
  /** Negative cases: the error's class and a word of its message. */
  refused?: { error: 'RangeError' | 'TypeError'; reason: string };
}
interface VectorFile {
  comment: string;
  /** Root keys: hierarchy partition (P + "#blind-index") -> version -> the 32-byte intermediate key, hex. */
  rootKeys: Record<string, Record<string, string>>;
  cases: Case[];
}

const f64 = (x: number): string => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x);
  return hex(out);
};
const typed = (v: BlindIndexValue | null): Typed => {
  if (v === null) return { type: 'null' };
  if (typeof v === 'string') return { type: 'string', value: v };
  if (typeof v === 'number') return { type: 'number', value: f64(v) };
  if (typeof v === 'bigint') return { type: 'bigint', value: v.toString() };
  if (typeof v === 'boolean') return { type: 'boolean', value: v };
  if (v instanceof Date) return { type: 'date', value: Number.isNaN(v.getTime()) ? null : v.getTime() };
  return { type: 'bytes', value: hex(v) };
};
const untyped = (t: Typed): BlindIndexValue | null => {
  switch (t.type) {
    case 'null':
      return null;
    case 'string':
    case 'boolean':
      return t.value;
    case 'bytes':
      return unhex(t.value);
    case 'number':
      return new DataView(unhex(t.value).buffer).getFloat64(0);
    case 'bigint':
      return BigInt(t.value);
    case 'date':
      return new Date(t.value ?? Number.NaN);
  }
};

/** A KMS whose data key is SHA-256 of the context's JSON: root keys anyone can make again. */
class DerivedKms implements KeyProvider {
  readonly id = 'derived';
  key(json: string): Uint8Array {
    return new Uint8Array(createHash('sha256').update(`blind-index vectors ${json}`).digest());
  }
  async generateDataKey(r: GenerateDataKeyRequest): Promise<DataKey> {
    return { keyId: 'k', plaintextKey: this.key(r.context.json), ciphertextBlob: Buffer.from(r.context.json).toString('base64') };
  }
  async decryptDataKey(r: DecryptDataKeyRequest): Promise<Uint8Array> {
    return this.key(Buffer.from(r.ciphertextBlob, 'base64').toString());
  }
}

type Spec = Omit<Case, 'values' | 'columns'> & { columns: (string | { name: string; normalize: string[] })[]; normalize?: string[]; values: (BlindIndexValue | null)[] };
const S = (name: string, normalize: string[], value: BlindIndexValue | null, extra: Partial<Spec> = {}): Spec => ({
  name,
  table: 'users',
  columns: ['v'],
  normalize,
  partition: 'tenant-1',
  version: 1,
  bits: 32,
  output: 'base64url',
  values: [value],
  ...extra,
});
const ALL = ['trim', 'casefold', 'nfc'];
const SPECS: Spec[] = [
  S('the inputs of FORMAT.md §11.6 (another root key): trim, casefold, nfc, 30 bits', ALL, '  Alice@Example.COM\n', { columns: ['email'], bits: 30 }),
  S('string, no normaliser', [], 'Alice'),
  S('empty string, no normaliser', [], ''),
  S('trim: every white space ECMAScript trims', ['trim'], '\u0009\u000a\u000b\u000c\u000d\u0020\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeffx\u3000'),
  S('trim: U+180E and U+200B are not trimmed', ['trim'], '\u180ex\u200b'),
  S('casefold: Straße', ['casefold'], 'Straße'),
  S('casefold: STRASSE (the same index as Straße)', ['casefold'], 'STRASSE'),
  S('casefold: final sigma', ['casefold'], 'ΟΔΟΣ'),
  S('casefold: ﬁ ligature', ['casefold'], 'ﬁle'),
  S('casefold: dotted capital I, locale-independent', ['casefold'], 'İstanbul'),
  S('nfc: decomposed é', ['nfc'], 'e\u0301'),
  S('casefold then nfc: dotless i with acute', ['casefold', 'nfc'], 'ı\u0301'),
  S('text: number', ['text'], 1.5),
  S('text: -0 is "0"', ['text'], -0),
  S('text: Infinity', ['text'], Number.POSITIVE_INFINITY),
  S('text: bigint', ['text'], -123n),
  S('text: boolean', ['text'], true),
  S('text: Date', ['text'], new Date(Date.UTC(1990, 0, 2))),
  S('text: bytes unchanged', ['text'], Uint8Array.of(1, 2, 3)),
  S('digits: phone number', ['digits'], '+1 (555) 010-9999'),
  S('digits: number', ['digits'], 5550109999),
  S('digits: bigint, sign dropped', ['digits'], -42n),
  S('digits: Date', ['digits'], new Date(0)),
  S('number', [], 1.5),
  S('number -0 indexes as 0', [], -0),
  S('number 0', [], 0),
  S('number Infinity', [], Number.NEGATIVE_INFINITY),
  S('bigint', [], 12345678901234567890n),
  S('bigint negative', [], -1n),
  S('boolean false', [], false),
  S('boolean true', [], true),
  S('Date', [], new Date(Date.UTC(1990, 0, 2))),
  S('Date before the epoch', [], new Date(-1)),
  S('bytes', [], Uint8Array.of(0, 255, 16)),
  S('bytes, empty', [], new Uint8Array(0)),
  S('text makes 1 and "1" one value', ['text'], '1'),
  S('16 bits, the fewest', [], 'x', { bits: 16 }),
  S('17 bits: the last byte masked to its top bit', [], 'x', { bits: 17 }),
  S('256 bits, the whole digest', [], 'x', { bits: 256 }),
  S('bytes output', [], 'x', { output: 'bytes', bits: 44 }),
  S('index version 2', ALL, 'alice@example.com', { columns: ['email'], version: 2 }),
  S('another partition', ALL, 'alice@example.com', { columns: ['email'], partition: 'tenant-2' }),
  S('a partition in UTF-8', [], 'x', { partition: 'tenant-ü' }),
  S('another table', [], 'x', { table: 'customers' }),
  {
    ...S('the compound inputs of FORMAT.md §11.6 (another root key): casefold on one column', [], null, { columns: [{ name: 'last_name', normalize: ['casefold'] }, { name: 'birth_date', normalize: [] }] }),
    values: ['MÜLLER', new Date(Date.UTC(1990, 0, 2))],
  },
  { ...S('compound of three types', ['text'], null, { columns: ['a', 'b', 'c'], bits: 64 }), values: [7, 'x', Uint8Array.of(9)] },
  // Refused: nothing is indexed.
  S('refused: NaN', [], Number.NaN),
  S('refused: NaN under text (before any normaliser)', ['text'], Number.NaN),
  S('refused: invalid Date under text', ['text'], new Date(Number.NaN)),
  S('refused: digits of a string with none', ['digits'], 'abc'),
  S('refused: digits of the empty string', ['digits'], ''),
  S('refused: digits of Infinity', ['digits'], Number.POSITIVE_INFINITY),
  S('refused: digits of bytes', ['digits'], Uint8Array.of(0x31)),
  S('refused: a lone surrogate', [], 'a\ud800'),
  S('refused: NULL', [], null),
  { ...S('refused: compound with a NULL part', [], null, { columns: ['last_name', 'birth_date'] }), values: ['Müller', null] },
];

const isRefused = (s: Spec): boolean => s.name.startsWith('refused');

function hierarchyFor(backend: BackendName = 'node') {
  return createKeyHierarchy({ store: new MemoryKeyStore(), kms: new DerivedKms(), backend });
}

function indexFor(s: Spec | Case, hierarchy: ReturnType<typeof hierarchyFor>, backend?: BackendName) {
  const common = { hierarchy, table: s.table, bits: s.bits, output: s.output, version: s.version, partition: s.partition, ...(backend ? { backend } : {}) };
  const columns = s.columns.map((c) => (typeof c === 'string' ? { name: c, normalize: ('normalize' in s && s.normalize) || [] } : c));
  return columns.length === 1
    ? createBlindIndex({ ...common, column: columns[0]!.name, normalize: columns[0]!.normalize as BlindIndexNormalizer[] })
    : createBlindIndex({ ...common, columns: columns.map((c) => ({ name: c.name, normalize: c.normalize as BlindIndexNormalizer[] })) });
}

// --- an independent §11, from the file alone -----------------------------------------------

const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
function hkdfExpandSha512(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  let t = new Uint8Array(0);
  const out: number[] = [];
  for (let i = 1; out.length < length; i++) {
    t = new Uint8Array(createHmac('sha512', prk).update(t).update(info).update(Uint8Array.of(i)).digest());
    out.push(...t);
  }
  return Uint8Array.from(out.slice(0, length));
}
function independent(c: Case, rootKeys: VectorFile['rootKeys']) {
  const root = unhex(rootKeys[`${c.partition}#blind-index`]![String(c.version)]!);
  const prk = hkdfExpandSha512(root, utf8('kms-envelope/intermediate-key@v2+AEAD_AES_256_GCM\0'), 32);
  const field = (s: string): number[] => [...u16(utf8(s).length), ...utf8(s)];
  const info = Uint8Array.from([...utf8('kms-envelope/blind-index@v1\0'), ...field(c.table), ...field(c.columns.map((x) => x.name).join('\0')), ...field(c.partition)]);
  const columnKey = hkdfExpandSha512(prk, info, 32);
  const message: number[] = [];
  for (const v of c.normalized!) {
    const tag = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5, date: 6 }[v.type as 'string'];
    const body =
      v.type === 'string' ? utf8(v.value) : v.type === 'bytes' ? unhex(v.value) : v.type === 'number' ? unhex(v.value === '8000000000000000' ? '0000000000000000' : v.value) /* −0 as 0 */ : v.type === 'bigint' ? utf8(v.value) : v.type === 'boolean' ? [v.value ? 1 : 0] : unhex(f64((v as { value: number }).value));
    const n = 1 + body.length;
    message.push(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff, tag, ...body);
  }
  const digest = new Uint8Array(createHmac('sha256', columnKey).update(Uint8Array.from(message)).digest());
  const index = digest.slice(0, Math.ceil(c.bits / 8));
  if (c.bits % 8) index[index.length - 1]! &= (0xff << (8 - (c.bits % 8))) & 0xff;
  return { info: hex(info), columnKey: hex(columnKey), message: hex(Uint8Array.from(message)), hmac: hex(digest), index: hex(index) };
}

async function generate(): Promise<VectorFile> {
  const kms = new DerivedKms();
  const hierarchy = hierarchyFor();
  const cases: Case[] = [];
  const rootKeys: VectorFile['rootKeys'] = {};
  for (const s of SPECS) {
    const columns = s.columns.map((c) => (typeof c === 'string' ? { name: c, normalize: s.normalize ?? [] } : c));
    const base: Case = { name: s.name, table: s.table, columns, partition: s.partition, version: s.version, bits: s.bits, output: s.output, values: s.values.map(typed) };
    const index = indexFor(s, hierarchy);
    if (isRefused(s)) {
      const error = await index.compute((s.values.length === 1 ? s.values[0] : s.values) as never).then(() => undefined, (e: Error) => e);
      expect(error, s.name).toBeInstanceOf(Error);
      cases.push({ ...base, refused: { error: error!.name as 'TypeError', reason: /is NaN|invalid Date|no digit|bytes|not well-formed|NULL/.exec(error!.message)![0] } });
      continue;
    }
    const stored = await index.compute((s.values.length === 1 ? s.values[0] : s.values) as never);
    const p = `${s.partition}#blind-index`;
    rootKeys[p] ??= {};
    for (let v = 1; v <= s.version; v++) rootKeys[p][String(v)] = hex(kms.key(`{"kms-envelope":"intermediate-key","partition":${JSON.stringify(p)},"version":"${v}"}`));
    const { normalizeValue, normalizerChain } = await import('../src/records/blind-index-values.ts');
    const normalized = s.values.map((v, i) => typed(normalizeValue(v as BlindIndexValue, normalizerChain(columns[i]!.normalize as BlindIndexNormalizer[]))));
    const withNormalized = { ...base, normalized };
    const answers = independent(withNormalized, rootKeys);
    cases.push({ ...withNormalized, ...answers, stored: typeof stored === 'string' ? stored : hex(stored) });
  }
  return {
    comment:
      'kms-envelope FORMAT.md §11 blind-index vectors. rootKeys: the intermediate key (hex) of each key-hierarchy partition P + "#blind-index" and version, made here as SHA-256("blind-index vectors " + the KMS context JSON of FORMAT.md §10.4). Typed values: numbers as big-endian binary64 hex, bytes as hex, bigints as decimal strings, Dates as milliseconds (null: an invalid Date), {"type":"null"} for NULL. Positive cases give the values after the normalisers (`normalized`), the HKDF info, the column key, the HMAC message and digest, the index bytes and the stored form (base64url text, or hex for output "bytes"); refused cases give the error and a word of why.',
    rootKeys,
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('./vectors/blind-index.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('blind-index.json');
const positive = vectors.cases.filter((c) => !c.refused);
const refused = vectors.cases.filter((c) => c.refused);

describe('blind-index vectors (FORMAT.md §11)', () => {
  it('cover every normaliser, value type, compound indexes, versions, truncation, both outputs and refusals', () => {
    const normalisers = new Set(positive.flatMap((c) => c.columns.flatMap((x) => x.normalize)));
    expect([...normalisers].sort()).toEqual(['casefold', 'digits', 'nfc', 'text', 'trim']);
    expect(new Set(positive.flatMap((c) => c.values.map((v) => v.type)))).toEqual(new Set(['string', 'bytes', 'number', 'bigint', 'boolean', 'date']));
    expect(positive.some((c) => c.columns.length > 1) && positive.some((c) => c.version > 1) && positive.some((c) => c.output === 'bytes')).toBe(true);
    expect(new Set(positive.map((c) => c.bits))).toEqual(new Set([16, 17, 30, 32, 44, 64, 256]));
    expect(refused.length).toBeGreaterThanOrEqual(10);
    expect(vectors.cases.map((c) => c.name)).toEqual(SPECS.map((s) => s.name));
  });

  it.each(positive)('an independent implementation gives "$name" from the file alone', (c) => {
    const answers = independent(c, vectors.rootKeys);
    expect(answers).toEqual({ info: c.info, columnKey: c.columnKey, message: c.message, hmac: c.hmac, index: c.index });
    expect(c.stored).toBe(c.output === 'bytes' ? c.index : Buffer.from(unhex(c.index!)).toString('base64url'));
  });

  for (const backend of [...BACKENDS.map((b) => b.name as BackendName), 'webcrypto' as const]) {
    it(`the library computes every case byte for byte, and refuses every refused one (${backend})`, async () => {
      const hierarchy = hierarchyFor(backend);
      for (const c of vectors.cases) {
        const index = indexFor(c, hierarchy, backend);
        const values = c.values.map(untyped);
        const input = (values.length === 1 ? values[0] : values) as never;
        if (c.refused) {
          const error = await index.compute(input).then(() => undefined, (e: Error) => e);
          expect(error?.name, c.name).toBe(c.refused.error);
          expect(error?.message, c.name).toContain(c.refused.reason);
          continue;
        }
        const out = await index.compute(input);
        expect(typeof out === 'string' ? out : hex(out), c.name).toBe(c.stored);
        expect(index.computeSync(input), c.name).toEqual(out);
        expect(index.matches(input, c.normalized!.length === 1 ? (untyped(c.normalized![0]!) as never) : (c.normalized!.map(untyped) as never)), c.name).toBe(true);
      }
    });
  }
});
