/**
 * Record-value vectors (test/vectors/record-values.json, FORMAT.md §12): database fields as a
 * second implementation must write and read them. Each case gives the typed value, its plaintext
 * (tag and value bytes), the binding (table, column id, schema version, the row's key as JSON) and
 * its canonical encoding, and the sealed field (a version-2 compact message under a key hierarchy,
 * bytes and text form); the intermediate key is in the file, so no KMS is needed to open them.
 * Positive cases are sealed again byte for byte and opened on every backend and through the
 * record API; refused cases fail with their code. UPDATE_VECTORS=1 rewrites the file.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalContext } from '../src/core/context.ts';
import { MemoryKeyStore, type StoredKey } from '../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import { type BackendName, createEnvelope, LocalKms } from '../src/index.ts';
import { encodeFieldValue, fieldToText, type FieldType, rowKeyJson } from '../src/records/field-value.ts';
import { createRecords, defineTable } from '../src/records/records.ts';
import { BACKENDS, hex, readVectors, seededRandom, unhex } from './helpers.ts';

type Typed =
  | { type: 'string'; value: string }
  | { type: 'bytes' | 'number'; value: string }
  | { type: 'bigint'; value: string }
  | { type: 'boolean'; value: boolean }
  | { type: 'date'; value: number }
  | { type: 'json'; value: unknown };
interface Case {
  name: string;
  table: string;
  /** The column's logical id (bound), and its name in the row. */
  column: string;
  columnName: string;
  schema: number;
  partition: string;
  /** The key columns in declared order, with typed values (none: the table binds no row). */
  primaryKey: { column: string; value: Typed }[];
  type: FieldType;
  /** A decimal column's scale. */
  scale?: number;
  value?: Typed;
  plaintext: string;
  context: Record<string, string>;
  contextEncoding: string;
  sealed: string;
  text: string;
  expect: 'ok' | string;
}
interface VectorFile {
  comment: string;
  masterKey: string;
  keyId: string;
  store: Omit<StoredKey, 'createdAt'>[];
  /** partition -> version -> the intermediate key, hex (what the KMS unwraps from `store`). */
  intermediateKeys: Record<string, Record<string, string>>;
  cases: Case[];
}

const MASTER_KEY = hex(Uint8Array.from({ length: 32 }, (_, i) => 0x60 + i));
const KEY_ID = 'vectors-records';
const f64 = (x: number): string => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x);
  return hex(out);
};
const typed = (type: FieldType | 'key', v: unknown): Typed => {
  if (type === 'json') return { type, value: v };
  if (typeof v === 'string') return { type: 'string', value: v };
  if (v instanceof Uint8Array) return { type: 'bytes', value: hex(v) };
  if (typeof v === 'number') return { type: 'number', value: f64(v) };
  if (typeof v === 'bigint') return { type: 'bigint', value: v.toString() };
  if (typeof v === 'boolean') return { type: 'boolean', value: v };
  return { type: 'date', value: (v as Date).getTime() };
};
const untyped = (t: Typed): unknown => {
  switch (t.type) {
    case 'bytes':
      return unhex(t.value);
    case 'number':
      return new DataView(unhex(t.value).buffer).getFloat64(0);
    case 'bigint':
      return BigInt(t.value);
    case 'date':
      return new Date(t.value);
    default:
      return t.value;
  }
};

interface Spec {
  name: string;
  type: FieldType;
  value?: unknown;
  /** A plaintext no writer writes (refused cases), hex. */
  raw?: string;
  table?: string;
  column?: string;
  columnName?: string;
  schema?: number;
  key?: [string, unknown][];
  expect?: string;
  scale?: number;
}
const K: [string, unknown][] = [['id', '42']];
const SPECS: Spec[] = [
  { name: 'string', type: 'string', value: 'alice@example.com' },
  { name: 'string, empty', type: 'string', value: '' },
  { name: 'string, non-ASCII and astral', type: 'string', value: '名前 🔐 é' },
  { name: 'string, a leading BOM kept', type: 'string', value: '\ufeffx' },
  { name: 'bytes', type: 'bytes', value: Uint8Array.of(0, 255, 16) },
  { name: 'bytes, empty', type: 'bytes', value: new Uint8Array(0) },
  { name: 'number', type: 'number', value: 1.5 },
  { name: 'number -0', type: 'number', value: -0 },
  { name: 'number NaN (the one NaN)', type: 'number', value: Number.NaN },
  { name: 'number Infinity', type: 'number', value: Number.POSITIVE_INFINITY },
  { name: 'number -Infinity', type: 'number', value: Number.NEGATIVE_INFINITY },
  { name: 'number, smallest subnormal', type: 'number', value: 5e-324 },
  { name: 'number, largest', type: 'number', value: Number.MAX_VALUE },
  { name: 'bigint 0', type: 'bigint', value: 0n },
  { name: 'bigint -1', type: 'bigint', value: -1n },
  { name: 'bigint 2^64', type: 'bigint', value: 2n ** 64n },
  { name: 'boolean true', type: 'boolean', value: true },
  { name: 'boolean false', type: 'boolean', value: false },
  { name: 'Date, the epoch', type: 'date', value: new Date(0) },
  { name: 'Date, the earliest', type: 'date', value: new Date(-8.64e15) },
  { name: 'Date, the latest', type: 'date', value: new Date(8.64e15) },
  { name: 'Date, 1990-01-02', type: 'date', value: new Date(Date.UTC(1990, 0, 2)) },
  { name: 'JSON object', type: 'json', value: { b: 1, a: [true, null, 'x'] } },
  { name: 'JSON, integer keys first', type: 'json', value: { b: 2, 1: 1 } },
  { name: 'JSON number 1e21', type: 'json', value: 1e21 },
  { name: 'JSON string with a lone surrogate, escaped', type: 'json', value: 'a\ud800' },
  { name: 'JSON string with controls and U+2028', type: 'json', value: '\u0001\n"\\\u2028' },
  // The binding.
  { name: 'binding: no primary key', type: 'string', value: 'x', key: [] },
  { name: 'binding: a number key', type: 'string', value: 'x', key: [['id', 7]] },
  { name: 'binding: a bigint key (as its decimal string)', type: 'string', value: 'x', key: [['id', 5n]] },
  { name: 'binding: a Date key (as its ISO string)', type: 'string', value: 'x', key: [['day', new Date(Date.UTC(2024, 1, 29))]] },
  { name: 'binding: three key columns of three types', type: 'string', value: 'x', key: [['org', 'acme'], ['n', 3], ['big', 12345678901234567890n]] },
  { name: 'binding: schema version 2', type: 'string', value: 'x', schema: 2 },
  { name: 'binding: a column id other than its name', type: 'string', value: 'x', column: 'e1', columnName: 'email' },
  { name: 'binding: a table and column in UTF-8', type: 'string', value: 'x', table: 'クライアント', column: 'ü' },
  // Refused: sealed under the right binding, the plaintext no writer writes.
  { name: 'refused: a NaN with payload bits', type: 'number', raw: '037ff8000000000001', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a bigint -0', type: 'bigint', raw: '042d30', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a bigint with a leading zero', type: 'bigint', raw: '043031', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a Date of 0.5 ms', type: 'date', raw: `06${f64(0.5)}`, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a Date beyond 8.64e15 ms', type: 'date', raw: `06${f64(8.64e15 + 1)}`, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a Date of -0', type: 'date', raw: '068000000000000000', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a boolean 02', type: 'boolean', raw: '0502', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: JSON with white space', type: 'json', raw: `07${hex(new TextEncoder().encode('{"a": 1}'))}`, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: JSON with a repeated key', type: 'json', raw: `07${hex(new TextEncoder().encode('{"a":1,"a":2}'))}`, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: JSON null', type: 'json', raw: `07${hex(new TextEncoder().encode('null'))}`, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: a string not UTF-8', type: 'string', raw: '01eda080', expect: 'ERR_FIELD_MALFORMED' },
  { name: 'decimal 12.50 at scale 2', type: 'decimal', value: '12.50', scale: 2 },
  { name: 'decimal -0.05 at scale 2', type: 'decimal', value: '-0.05', scale: 2 },
  { name: 'decimal 7 at scale 0', type: 'decimal', value: '7', scale: 0 },
  { name: 'decimal beyond 2^64 at scale 4', type: 'decimal', value: '123456789012345678901.0001', scale: 4 },
  { name: 'refused: decimal with another scale byte', type: 'decimal', raw: '08033132', scale: 2, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: decimal -0', type: 'decimal', raw: '08022d30', scale: 2, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: decimal with a leading zero', type: 'decimal', raw: '08023031', scale: 2, expect: 'ERR_FIELD_MALFORMED' },
  { name: 'refused: the tag of another type', type: 'number', raw: '0178', expect: 'ERR_FIELD_MALFORMED' },
];

/** Refused bindings: the sealed bytes of the first case, read under another binding. */
const MOVED: [string, Partial<Spec>, string][] = [
  ['refused: another row', { key: [['id', '43']] }, 'ERR_DECRYPTION_FAILED'],
  ['refused: the row as a bare value, not an array', { key: [['id', '42']] }, 'ERR_DECRYPTION_FAILED'],
  ['refused: another column id', { column: 'email2' }, 'ERR_DECRYPTION_FAILED'],
  ['refused: another table', { table: 'customers' }, 'ERR_DECRYPTION_FAILED'],
  ['refused: another schema version', { schema: 2 }, 'ERR_DECRYPTION_FAILED'],
  ['refused: the key as a number, sealed as a string', { key: [['id', 42]] }, 'ERR_DECRYPTION_FAILED'],
  ['refused: another partition', {}, 'ERR_PARTITION_MISMATCH'],
];

function shape(s: Spec): Omit<Case, 'name' | 'value' | 'plaintext' | 'sealed' | 'text' | 'expect'> {
  const key = s.key ?? K;
  const table = s.table ?? 'users';
  const column = s.column ?? 'email';
  const schema = s.schema ?? 1;
  const context: Record<string, string> = { table, column, schema: String(schema) };
  if (key.length) context.row = rowKeyJson(key.map(([, v]) => v), key.map(([c]) => c), table);
  return {
    table,
    column,
    columnName: s.columnName ?? column,
    schema,
    partition: 'tenant-1',
    primaryKey: key.map(([c, v]) => ({ column: c, value: typed('key', v) })),
    type: s.type,
    ...(s.scale === undefined ? {} : { scale: s.scale }),
    context,
    contextEncoding: hex(canonicalContext(context).encoded),
  };
}

async function sealAll() {
  const store = new MemoryKeyStore();
  const kms = new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) }, { randomBytes: seededRandom('kms-envelope vectors records: hierarchy') });
  const hierarchy = createKeyHierarchy({ store, kms });
  const cases: Case[] = [];
  for (const s of SPECS) {
    const envelope = createEnvelope({ hierarchy, compact: true, randomBytes: seededRandom(`kms-envelope vectors records: ${s.name}`) });
    const sh = shape(s);
    const plaintext = s.raw ? unhex(s.raw) : encodeFieldValue(s.type, s.value, s.name, s.scale);
    const sealed = await envelope.seal(plaintext, { context: sh.context, detachedContext: true, partition: sh.partition });
    cases.push({ name: s.name, ...sh, ...(s.raw ? {} : { value: typed(s.type, s.value) }), plaintext: hex(plaintext), sealed: hex(sealed), text: fieldToText(sealed), expect: s.expect ?? 'ok' });
  }
  const first = cases[0]!;
  for (const [name, change, code] of MOVED) {
    const sh = shape({ ...SPECS[0]!, ...change });
    if (name.includes('bare value')) {
      sh.context.row = '"42"';
      sh.contextEncoding = hex(canonicalContext(sh.context).encoded);
    }
    if (code === 'ERR_PARTITION_MISMATCH') sh.partition = 'tenant-2';
    cases.push({ name, ...sh, plaintext: first.plaintext, sealed: first.sealed, text: first.text, expect: code });
  }
  return { cases, store, kms };
}

async function generate(): Promise<VectorFile> {
  const { cases, store, kms } = await sealAll();
  const records = await store.listVersions('tenant-1');
  const intermediateKeys: VectorFile['intermediateKeys'] = { 'tenant-1': {} };
  for (const r of records) {
    const context = canonicalContext({ 'kms-envelope': 'intermediate-key', partition: r.partition, version: String(r.version) });
    intermediateKeys['tenant-1']![String(r.version)] = hex(await kms.decryptDataKey({ keyId: r.keyId, ciphertextBlob: r.ciphertextBlob, keySpec: 'AES_256', context }));
  }
  return {
    comment:
      'kms-envelope FORMAT.md §12 record-value vectors. Every field is a version-2 compact message (suite 01, key source 1) under partition "tenant-1", its context detached: `context` is the binding, `contextEncoding` its canonical encoding (FORMAT.md §3). `intermediateKeys` gives the intermediate key so that no KMS is needed; `store` holds it wrapped by LocalKms under `masterKey` (FORMAT.md §9). Typed values: bytes and numbers as hex (numbers as big-endian binary64), bigints as decimal strings, Dates as milliseconds, JSON as itself. Refused cases: open `sealed` under the case\'s binding and partition and expect the code. Randomness: HMAC-SHA-512(seed, counter) (test/helpers.ts seededRandom), seed "kms-envelope vectors records: <name>".',
    masterKey: MASTER_KEY,
    keyId: KEY_ID,
    store: records.map(({ createdAt: _, ...r }) => r),
    intermediateKeys,
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('./vectors/record-values.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('record-values.json');

async function hierarchyFor(backend?: BackendName) {
  const store = new MemoryKeyStore();
  for (const r of vectors.store) await store.createVersion({ ...r, createdAt: 0 });
  const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }, backend ? { backend } : {});
  return createKeyHierarchy({ store, kms, ...(backend ? { backend } : {}) });
}

function tableOf(c: Case) {
  return defineTable({
    name: c.table,
    schemaVersion: c.schema,
    ...(c.primaryKey.length ? { primaryKey: c.primaryKey.map((k) => k.column) } : {}),
    partition: { column: 'tenant' },
    columns: { [c.columnName]: { type: c.type, ...(c.columnName !== c.column ? { id: c.column } : {}), ...(c.scale === undefined ? {} : { scale: c.scale }) } },
  });
}
const rowOf = (c: Case, stored: unknown): Record<string, unknown> => ({ tenant: c.partition, ...Object.fromEntries(c.primaryKey.map((k) => [k.column, untyped(k.value)])), [c.columnName]: stored });

describe('record-value vectors (FORMAT.md §12)', () => {
  it('cover every type tag, the binding of table, column, keys of each type and count, schema, and refusals', () => {
    const ok = vectors.cases.filter((c) => c.expect === 'ok');
    expect(new Set(ok.map((c) => c.type))).toEqual(new Set(['string', 'bytes', 'number', 'bigint', 'boolean', 'date', 'json', 'decimal']));
    expect(new Set(ok.map((c) => c.primaryKey.length))).toEqual(new Set([0, 1, 3]));
    expect(new Set(ok.flatMap((c) => c.primaryKey.map((k) => k.value.type)))).toEqual(new Set(['string', 'number', 'bigint', 'date']));
    expect(vectors.cases.filter((c) => c.expect !== 'ok').length).toBeGreaterThanOrEqual(15);
    expect(vectors.cases.map((c) => c.name)).toEqual([...SPECS.map((s) => s.name), ...MOVED.map(([n]) => n)]);
  });

  it('seals every case again byte for byte; the writer makes the recorded plaintext and binding', async () => {
    const { cases } = await sealAll();
    expect(cases).toEqual(vectors.cases);
    for (const c of vectors.cases.filter((x) => x.value)) {
      expect(hex(encodeFieldValue(c.type, untyped(c.value!), c.name, c.scale)), c.name).toBe(c.plaintext);
      expect(hex(canonicalContext(c.context).encoded), c.name).toBe(c.contextEncoding);
    }
    // The record API's own seal binds what the file says: its output opens under the file's context.
    const hierarchy = await hierarchyFor();
    const records = createRecords({ hierarchy });
    for (const c of vectors.cases.filter((x) => x.value)) {
      const sealed = (await records.seal(tableOf(c), rowOf(c, untyped(c.value!)) as never))[c.columnName] as string;
      const { fieldFromText } = await import('../src/records/field-value.ts');
      expect(hex(await records.envelope.open(fieldFromText(sealed)!, { context: c.context, partition: c.partition })), c.name).toBe(c.plaintext);
    }
  });

  for (const backend of [...BACKENDS.map((b) => b.name as BackendName), 'webcrypto' as const]) {
    it(`opens every case under its binding as expected (${backend})`, async () => {
      const envelope = createEnvelope({ hierarchy: await hierarchyFor(backend), backend });
      for (const c of vectors.cases) {
        const opening = envelope.open(unhex(c.sealed), { context: c.context, partition: c.partition });
        if (c.expect === 'ERR_FIELD_MALFORMED' || c.expect === 'ok') expect(hex(await opening), c.name).toBe(c.plaintext);
        else await expect(opening, c.name).rejects.toMatchObject({ code: c.expect });
      }
    });
  }

  it('opens every case through the record API as expected (text form)', async () => {
    const records = createRecords({ hierarchy: await hierarchyFor() });
    for (const c of vectors.cases) {
      expect(fieldToText(unhex(c.sealed)), c.name).toBe(c.text);
      const t = tableOf(c);
      const row = rowOf(c, c.text);
      if (c.name.includes('bare value')) continue; // no writer or reader of ours makes that binding (the envelope test above opens it)
      if (c.expect === 'ok') {
        const value = (await records.open(t, row as never))[c.columnName];
        if (c.type === 'number') expect(Object.is(value, untyped(c.value!)) || (Number.isNaN(value) && Number.isNaN(untyped(c.value!)))).toBe(true);
        else expect(value, c.name).toEqual(untyped(c.value!));
      } else {
        await expect(records.open(t, row as never), c.name).rejects.toMatchObject({ code: c.expect, table: c.table, column: c.columnName });
      }
    }
  });
});
