/**
 * Search-token vectors (test/vectors/search-tokens.json, FORMAT.md §11a), for a second
 * implementation with no KMS and no key hierarchy: each case names its root key (the intermediate
 * key of P + "#search", version V) and gives the HKDF info, the column key, the MAC messages (one
 * per level or prefix length, or per bucket of a query's cover), the MACs and the tokens. Checked
 * by an independent implementation here (node:crypto's HMACs, SHA-256 and SM3, from the file
 * alone), and by the library on every backend. UPDATE_VECTORS=1 rewrites the file.
 */
import { createHash, createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import type { BackendName } from '../src/index.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from '../src/kms/key-provider.ts';
import { createSearchIndex, type SearchCondition } from '../src/records/search-index.ts';
import type { SearchIndexOptions } from '../src/records/search-options.ts';
import { hmacSm3Tokens } from '../src/sm4/search-mac.ts';
import { BACKENDS, hex, readVectors, unhex } from './helpers.ts';

type Typed = { type: 'number'; value: string } | { type: 'bigint'; value: string } | { type: 'decimal'; value: string } | { type: 'date'; value: number } | { type: 'string'; value: string };
interface IndexSpec {
  kind: 'range' | 'prefix' | 'contains';
  table: string;
  column: string;
  partition: string;
  version: number;
  bits: number;
  mac: 'HMAC-SHA-256' | 'HMAC-SM3';
  domain?: 'integer' | 'decimal' | 'date' | 'float64';
  levels?: (number | string)[];
  scale?: number;
  maxQueryTokens?: number;
  /** The index's declared bounds (FORMAT.md §11a.3), as typed values. */
  bounds?: { min?: Typed; max?: Typed };
  minLength?: number;
  maxLength?: number;
  normalize?: string[];
}
interface Case {
  name: string;
  index: IndexSpec;
  /** A stored value's tokens, or a query's. */
  value?: Typed;
  query?: Record<string, Typed>;
  /** Range: the key of the value as 8 bytes hex (u64, or for dates the milliseconds in two's complement). */
  key?: string;
  info: string;
  columnKey: string;
  /** For each message: the level (range) or the prefix length (prefix), the bucket (range), the message, the MAC and the token. */
  steps: { level: string; bucket?: string; message: string; mac: string; token: number }[];
  /** What the library returns: tokens sorted ascending (a query's without repeats). */
  tokens: number[];
}
interface VectorFile {
  comment: string;
  rootKeys: Record<string, Record<string, string>>;
  cases: Case[];
}

class DerivedKms implements KeyProvider {
  readonly id = 'derived';
  key(json: string): Uint8Array {
    return new Uint8Array(createHash('sha256').update(`search vectors ${json}`).digest());
  }
  async generateDataKey(r: GenerateDataKeyRequest): Promise<DataKey> {
    return { keyId: 'k', plaintextKey: this.key(r.context.json), ciphertextBlob: Buffer.from(r.context.json).toString('base64') };
  }
  async decryptDataKey(r: DecryptDataKeyRequest): Promise<Uint8Array> {
    return this.key(Buffer.from(r.ciphertextBlob, 'base64').toString());
  }
}

const f64 = (x: number): string => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x);
  return hex(out);
};
const typed = (v: unknown, decimal = false): Typed => {
  if (typeof v === 'string') return decimal ? { type: 'decimal', value: v } : { type: 'string', value: v };
  if (typeof v === 'number') return { type: 'number', value: f64(v) };
  if (typeof v === 'bigint') return { type: 'bigint', value: v.toString() };
  return { type: 'date', value: (v as Date).getTime() };
};
const untyped = (t: Typed): unknown => {
  if (t.type === 'number') return new DataView(unhex(t.value).buffer).getFloat64(0);
  if (t.type === 'bigint') return BigInt(t.value);
  if (t.type === 'date') return new Date(t.value);
  return t.value;
};

interface Spec {
  name: string;
  index: Partial<IndexSpec> & Pick<IndexSpec, 'kind'>;
  value?: unknown;
  query?: Record<string, unknown>;
}
const R = (name: string, index: Partial<IndexSpec>, value: unknown, query?: Record<string, unknown>): Spec => ({ name, index: { kind: 'range', ...index }, ...(query ? { query } : { value }) });
const P = (name: string, index: Partial<IndexSpec>, value: unknown, query?: Record<string, unknown>): Spec => ({ name, index: { kind: 'prefix', minLength: 2, maxLength: 5, ...index }, ...(query ? { query } : { value }) });
const C = (name: string, index: Partial<IndexSpec>, value: unknown, query?: Record<string, unknown>): Spec => ({ name, index: { kind: 'contains', minLength: 3, maxLength: 8, ...index }, ...(query ? { query } : { value }) });
const INT = { domain: 'integer' as const, levels: [0, 4, 8] };
const DATES = { domain: 'date' as const, levels: ['day', 'month', 'year'] };
const SPECS: Spec[] = [
  R('integer 1000, levels 2^0, 2^4, 2^8', INT, 1000),
  R('integer -1 (keys are value + 2^63)', INT, -1),
  R('integer 0', INT, 0),
  R('bigint at the top of the signed 64-bit range', { domain: 'integer', levels: [0, 32, 63] }, 2n ** 63n - 1n),
  R('bigint at the bottom of the signed 64-bit range', { domain: 'integer', levels: [0, 32, 63] }, -(2n ** 63n)),
  R('integer, 16 bits', { ...INT, bits: 16 }, 7),
  R('integer, 52 bits', { ...INT, bits: 52 }, 7),
  R('integer, index version 2', { ...INT, version: 2 }, 7),
  R('integer, another partition', { ...INT, partition: 'tenant-2' }, 7),
  R('integer, another table', { ...INT, table: 'invoices' }, 7),
  R('integer, HMAC-SM3', { ...INT, mac: 'HMAC-SM3' }, 1000),
  R('decimal(2) "12.50"', { domain: 'decimal', scale: 2, levels: [0, 8] }, '12.50'),
  R('decimal(2) "-0.05"', { domain: 'decimal', scale: 2, levels: [0, 8] }, '-0.05'),
  R('decimal(2) "7" (written with fewer places)', { domain: 'decimal', scale: 2, levels: [0, 8] }, '7'),
  R('float64 1.5', { domain: 'float64', levels: [32, 48] }, 1.5),
  R('float64 -1.5 (bits inverted)', { domain: 'float64', levels: [32, 48] }, -1.5),
  R('float64 -0 as 0', { domain: 'float64', levels: [32, 48] }, -0),
  R('date 2024-02-29T12:00Z: day, month, year', DATES, new Date(Date.UTC(2024, 1, 29, 12))),
  R('date before the epoch', DATES, new Date(-1)),
  R('date in the year 50 (no 1900 offset)', DATES, new Date(Date.UTC(2000, 0, 1) - 1950 * 365.2425 * 86_400_000 - ((Date.UTC(2000, 0, 1) - 1950 * 365.2425 * 86_400_000) % 86_400_000))),
  R('date, HMAC-SM3', { ...DATES, mac: 'HMAC-SM3' }, new Date(Date.UTC(2024, 1, 29, 12))),
  R('query: integers 3 to 1000 (exact cover)', INT, undefined, { gte: 3, lte: 1000 }),
  R('query: integers -20 to 20, exclusive bounds', INT, undefined, { gt: -20, lt: 20 }),
  R('query: integers 0 to 2000, at most 8 tokens (the finer levels left out)', { ...INT, maxQueryTokens: 8 }, undefined, { gte: 0, lte: 2000 }),
  R('query: dates 2024-01-30 to 2024-03-01 (days and a month)', DATES, undefined, { gte: new Date(Date.UTC(2024, 0, 30)), lt: new Date(Date.UTC(2024, 2, 2)) }),
  R('query: decimals 9.99 to 10.01', { domain: 'decimal', scale: 2, levels: [0, 8] }, undefined, { gte: '9.99', lte: '10.01' }),
  R('query: empty range', INT, undefined, { gt: 5, lt: 6 }),
  R('query: integers from 100 up, to the declared bounds (max 5000)', { ...INT, bounds: { min: typed(-5000), max: typed(5000) } }, undefined, { gte: 100 }),
  R('query: integers below -10, from the declared bounds (min -300), clamped', { ...INT, bounds: { min: typed(-300), max: typed(5000) } }, undefined, { lt: -10 }),
  P('prefix: "Alice" with trim, casefold, nfc (lengths 2 to 5, one token each)', { normalize: ['trim', 'casefold', 'nfc'] }, '  ALICE '),
  P('prefix: "Al" (padded with dummies for lengths 3 to 5)', {}, 'Al'),
  P('prefix: "Alexander" (longer than maxLength)', {}, 'Alexander'),
  P('prefix: code points, not UTF-16 units', {}, '😀é😀x'),
  P('prefix: HMAC-SM3', { mac: 'HMAC-SM3' }, 'Alice'),
  P('prefix query: "al" under casefold', { normalize: ['casefold'] }, undefined, { startsWith: 'AL' }),
  P('prefix query: longer than maxLength uses the maxLength prefix', {}, undefined, { startsWith: 'Alexander' }),
  C('contains: "banana" (distinct grams ban, ana, nan, then dummies 4 to 6)', {}, 'banana'),
  C('contains: "Zoë" under casefold, nfc (one gram, five dummies)', { normalize: ['casefold', 'nfc'] }, 'Zoe\u0308'),
  C('contains: "ab" (shorter than a gram: dummies only)', {}, 'ab'),
  C('contains: code points, grams of 2', { minLength: 2, maxLength: 5 }, '😀é😀x'),
  C('contains: HMAC-SM3', { mac: 'HMAC-SM3' }, 'banana'),
  C('contains query: "NANA" under casefold (every distinct gram)', { normalize: ['casefold'] }, undefined, { contains: 'NANA' }),
  C('contains query: repeated grams once', {}, undefined, { contains: 'aaaaa' }),
];

const defaults = (s: Spec): IndexSpec => ({ table: 'orders', column: s.index.kind === 'range' ? 'amount' : s.index.kind === 'contains' ? 'note' : 'name', partition: 'tenant-1', version: 1, bits: 32, mac: 'HMAC-SHA-256', ...s.index }) as IndexSpec;

function hierarchyFor(backend: BackendName = 'node') {
  return createKeyHierarchy({ store: new MemoryKeyStore(), kms: new DerivedKms(), backend });
}

function indexFor(spec: IndexSpec, hierarchy: ReturnType<typeof hierarchyFor>, backend?: BackendName) {
  const { mac, kind, bounds, ...rest } = spec;
  const raw = bounds && Object.fromEntries(Object.entries(bounds).map(([k, v]) => [k, untyped(v)]));
  return createSearchIndex({ ...rest, ...(raw ? { bounds: raw } : {}), kind, acknowledgeLeakage: kind, hierarchy, ...(mac === 'HMAC-SM3' ? { mac: hmacSm3Tokens } : {}), ...(backend ? { backend } : {}) } as unknown as SearchIndexOptions);
}

// --- an independent §11a, from the file alone ----------------------------------------------

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const field = (s: string): number[] => [...u16(utf8(s).length), ...utf8(s)];
function hkdfExpand(hash: string, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  let t = new Uint8Array(0);
  const out: number[] = [];
  for (let i = 1; out.length < length; i++) {
    t = new Uint8Array(createHmac(hash, prk).update(t).update(info).update(Uint8Array.of(i)).digest());
    out.push(...t);
  }
  return Uint8Array.from(out.slice(0, length));
}
const u64hex = (n: bigint): string => BigInt.asUintN(64, n).toString(16).padStart(16, '0');
const u64 = (n: bigint): number[] => [...Array(8)].map((_, i) => Number((BigInt.asUintN(64, n) >> BigInt(56 - 8 * i)) & 0xffn));

/** The bucket of a key at a level, from the level's name (FORMAT.md §11a.2). */
function bucketAt(level: string, raw: bigint): bigint {
  const width = /\/2\^(\d+)$/.exec(level);
  if (width) return raw >> BigInt(width[1]!);
  const key = BigInt.asIntN(64, raw); // dates: signed milliseconds
  const d = new Date(Number(key));
  if (level === 'date/day') return BigInt(Math.floor(Number(key) / 86_400_000));
  if (level === 'date/month') return BigInt(d.getUTCFullYear() * 12 + d.getUTCMonth());
  return BigInt(d.getUTCFullYear());
}

function independent(c: Case, rootKeys: VectorFile['rootKeys']) {
  const x = c.index;
  const root = unhex(rootKeys[`${x.partition}#search`]![String(x.version)]!);
  const prk = hkdfExpand('sha512', root, utf8('kms-envelope/intermediate-key@v2+AEAD_AES_256_GCM\0'), 32);
  const info = Uint8Array.from([...utf8(`kms-envelope/search-token@v1+${x.mac}\0`), ...field(x.table), ...field(x.column), ...field(x.kind), ...field(x.partition)]);
  const hash = x.mac === 'HMAC-SM3' ? 'sm3' : 'sha256';
  const columnKey = hkdfExpand(x.mac === 'HMAC-SM3' ? 'sm3' : 'sha512', prk, info, 32);
  const steps = c.steps.map((step) => {
    let message: Uint8Array;
    if (x.kind === 'range') {
      if (c.key !== undefined) expect(BigInt(`0x${step.bucket!}`), c.name).toBe(BigInt.asUintN(64, bucketAt(step.level, BigInt(`0x${c.key}`))));
      message = Uint8Array.from([...field(step.level), ...u64(BigInt(`0x${step.bucket!}`))]);
    } else if (x.kind === 'contains') {
      const pad = /^contains-pad\/(\d+) (\d+)$/.exec(step.level);
      message = pad
        ? Uint8Array.from([...field(`contains-pad/${pad[1]}`), 0, 0, 0, Number(pad[2]), ...utf8(step.bucket!)])
        : Uint8Array.from([...field(step.level), ...utf8(step.bucket!)]);
    } else {
      const m = /^prefix-pad (\d+)$/.exec(step.level);
      message = m
        ? Uint8Array.from([...field('prefix-pad'), 0, 0, 0, Number(m[1]), ...utf8(step.bucket!)])
        : Uint8Array.from([...field('prefix'), ...utf8(step.bucket!)]);
    }
    const mac = new Uint8Array(createHmac(hash, columnKey).update(message).digest());
    const first = new DataView(mac.buffer).getBigUint64(0);
    return { ...step, message: hex(message), mac: hex(mac), token: Number(first >> BigInt(64 - x.bits)) };
  });
  return { info: hex(info), columnKey: hex(columnKey), steps };
}

// --- generation ----------------------------------------------------------------------------

async function stepsOf(s: Spec, spec: IndexSpec): Promise<{ key?: string; steps: Case['steps'] }> {
  const { testing } = await import('../src/records/search-index.ts');
  const { resolveLevels, rangeKey, domainBounds } = await import('../src/records/search-levels.ts');
  const { normalizeValue, normalizerChain } = await import('../src/records/blind-index-values.ts');
  if (spec.kind === 'range') {
    const levels = resolveLevels(spec.domain!, spec.levels, spec.scale ?? 0);
    const keyOf = (v: unknown) => rangeKey(spec.domain!, v, spec.scale ?? 0, 'v');
    if (s.query) {
      const q = s.query;
      let [lo, hi] = domainBounds(spec.domain!);
      const [min, max] = [spec.bounds?.min ? keyOf(untyped(spec.bounds.min)) : lo, spec.bounds?.max ? keyOf(untyped(spec.bounds.max)) : hi];
      if (q.gte !== undefined) lo = keyOf(q.gte);
      if (q.gt !== undefined) lo = keyOf(q.gt) + 1n;
      if (q.lte !== undefined) hi = keyOf(q.lte);
      if (q.lt !== undefined) hi = keyOf(q.lt) - 1n;
      const cover = testing.rangeCover(levels, lo > min ? lo : min, hi < max ? hi : max, spec.maxQueryTokens ?? 64);
      return { steps: cover.map((b) => ({ level: levels[b.level]!.name, bucket: u64hex(b.bucket), message: '', mac: '', token: 0 })) };
    }
    const key = keyOf(s.value);
    return { key: u64hex(key), steps: levels.map((l) => ({ level: l.name, bucket: u64hex(l.bucket(key)), message: '', mac: '', token: 0 })) };
  }
  const chain = normalizerChain((spec.normalize ?? []) as never);
  const text = normalizeValue((s.query ? (s.query.startsWith ?? s.query.contains) : s.value) as string, chain) as string;
  const points = Array.from(text);
  if (spec.kind === 'contains') return { steps: gramSteps(spec, points, text, s.query !== undefined) };
  if (s.query) return { steps: [{ level: 'prefix', bucket: points.slice(0, Math.min(points.length, spec.maxLength!)).join(''), message: '', mac: '', token: 0 }] };
  const steps: Case['steps'] = [];
  for (let n = spec.minLength!; n <= spec.maxLength!; n++) {
    steps.push(n <= points.length ? { level: 'prefix', bucket: points.slice(0, n).join(''), message: '', mac: '', token: 0 } : { level: `prefix-pad ${n}`, bucket: text, message: '', mac: '', token: 0 });
  }
  return { steps };
}

/** A contains value's steps: its distinct grams in order of first occurrence, then the dummies; a query's: its distinct grams. */
function gramSteps(spec: IndexSpec, points: string[], text: string, query: boolean): Case['steps'] {
  const n = spec.minLength!;
  const grams = [...new Set(points.map((_, i) => points.slice(i, i + n).join('')).filter((_, i) => i + n <= points.length))];
  const steps: Case['steps'] = grams.map((g) => ({ level: `contains/${n}`, bucket: g, message: '', mac: '', token: 0 }));
  if (query) return steps;
  for (let i = grams.length + 1; i <= spec.maxLength! - n + 1; i++) steps.push({ level: `contains-pad/${n} ${i}`, bucket: text, message: '', mac: '', token: 0 });
  return steps;
}

async function generate(): Promise<VectorFile> {
  const kms = new DerivedKms();
  const hierarchy = hierarchyFor();
  const cases: Case[] = [];
  const rootKeys: VectorFile['rootKeys'] = {};
  for (const s of SPECS) {
    const spec = defaults(s);
    const p = `${spec.partition}#search`;
    rootKeys[p] ??= {};
    for (let v = 1; v <= spec.version; v++) rootKeys[p][String(v)] = hex(kms.key(`{"kms-envelope":"intermediate-key","partition":${JSON.stringify(p)},"version":"${v}"}`));
    const { key, steps } = await stepsOf(s, spec);
    const decimal = spec.domain === 'decimal';
    const base: Case = {
      name: s.name,
      index: spec,
      ...(s.query ? { query: Object.fromEntries(Object.entries(s.query).map(([k, v]) => [k, typed(v, decimal)])) } : { value: typed(s.value, decimal) }),
      ...(key === undefined ? {} : { key }),
      info: '',
      columnKey: '',
      steps,
      tokens: [],
    };
    const answers = independent(base, rootKeys);
    const index = indexFor(spec, hierarchy);
    const tokens = s.query ? [...(await index.query(s.query as SearchCondition)).tokens] : await index.tokens(s.value);
    cases.push({ ...base, ...answers, tokens });
  }
  return {
    comment:
      'kms-envelope FORMAT.md §11a search-token vectors. rootKeys: the intermediate key (hex) of each key-hierarchy partition P + "#search" and version, made as SHA-256("search vectors " + the KMS context JSON of FORMAT.md §10.4). Values: numbers as big-endian binary64 hex, bigints and decimals as strings, Dates as milliseconds. key: the range key of the value (u64, or milliseconds for dates). key and range buckets: 8 bytes hex (mod 2^64). steps: per level (range), per prefix length (prefix: level "prefix" with the prefix as bucket, or "prefix-pad n" with the whole normalised value), per gram or dummy (contains: level "contains/n" with the gram as bucket, or "contains-pad/n i" with the whole normalised value), or per bucket of a query\'s cover: the MAC message, the MAC and the token (its first `bits` bits). tokens: what the library returns, sorted ascending. index.bounds: a range index\'s declared bounds, typed as values are; a query\'s missing bound is the declared one, and its range is clamped to them (FORMAT.md §11a.3).',
    rootKeys,
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('./vectors/search-tokens.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('search-tokens.json');

describe('search-token vectors (FORMAT.md §11a)', () => {
  it('cover every domain, every kind, both MACs, queries, versions, partitions, tables and truncations', () => {
    expect(new Set(vectors.cases.map((c) => c.index.domain ?? c.index.kind))).toEqual(new Set(['integer', 'decimal', 'float64', 'date', 'prefix', 'contains']));
    expect(new Set(vectors.cases.map((c) => c.index.mac))).toEqual(new Set(['HMAC-SHA-256', 'HMAC-SM3']));
    expect(new Set(vectors.cases.map((c) => c.index.bits))).toEqual(new Set([16, 32, 52]));
    expect(vectors.cases.filter((c) => c.query).length).toBeGreaterThanOrEqual(8);
    expect(vectors.cases.map((c) => c.name)).toEqual(SPECS.map((s) => s.name));
  });

  it.each(vectors.cases)('an independent implementation gives "$name" from the file alone', (c) => {
    const answers = independent(c, vectors.rootKeys);
    expect(answers).toEqual({ info: c.info, columnKey: c.columnKey, steps: c.steps });
    const tokens = c.steps.map((s) => s.token).sort((a, b) => a - b);
    expect(c.tokens).toEqual(c.query ? [...new Set(tokens)] : tokens);
  });

  it('a range query\'s cover holds every key of the range and no bucket outside it', () => {
    for (const c of vectors.cases.filter((x) => x.query && x.index.kind === 'range' && x.index.domain === 'integer')) {
      const q = Object.fromEntries(Object.entries(c.query!).map(([k, v]) => [k, BigInt(untyped(v) as number)]));
      const [min, max] = [BigInt((c.index.bounds?.min ? untyped(c.index.bounds.min) : Number.MIN_SAFE_INTEGER) as number), BigInt((c.index.bounds?.max ? untyped(c.index.bounds.max) : Number.MAX_SAFE_INTEGER) as number)];
      const lo = q.gte ?? (q.gt === undefined ? min : q.gt + 1n);
      const hi = q.lte ?? (q.lt === undefined ? max : q.lt - 1n);
      const width = (level: string) => 1n << BigInt(/\/2\^(\d+)$/.exec(level)![1]!);
      const spans = c.steps.map((s) => [BigInt(`0x${s.bucket!}`) * width(s.level) - 2n ** 63n, (BigInt(`0x${s.bucket!}`) + 1n) * width(s.level) - 1n - 2n ** 63n] as const);
      for (let k = lo - 3n; k <= hi + 3n && k <= lo + 5000n; k++) {
        const inCover = spans.some(([a, z]) => k >= a && k <= z);
        if (k >= lo && k <= hi) expect(inCover, `${c.name}: ${k}`).toBe(true);
      }
      for (const [a, z] of spans) expect(z >= lo && a <= hi, c.name).toBe(true);
      expect(c.steps.length).toBeLessThanOrEqual(c.index.maxQueryTokens ?? 64);
    }
  });

  for (const backend of [...BACKENDS.map((b) => b.name as BackendName), 'webcrypto' as const]) {
    it(`the library computes every case token for token (${backend})`, async () => {
      const hierarchy = hierarchyFor(backend);
      for (const c of vectors.cases) {
        const index = indexFor(c.index, hierarchy, backend);
        if (c.query) {
          const condition = Object.fromEntries(Object.entries(c.query).map(([k, v]) => [k, untyped(v)]));
          expect([...(await index.query(condition as SearchCondition)).tokens], c.name).toEqual(c.tokens);
          expect([...index.querySync(condition as SearchCondition).tokens], c.name).toEqual(c.tokens);
        } else {
          expect(await index.tokens(untyped(c.value!)), c.name).toEqual(c.tokens);
          expect(index.tokensSync(untyped(c.value!)), c.name).toEqual(c.tokens);
        }
      }
    });
  }
});
