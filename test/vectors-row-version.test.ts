/**
 * Row-version vectors (test/vectors/row-version.json, FORMAT.md §12.4): fields of tables that bind
 * a row version, as a second implementation must write and read them. Each case gives the row's
 * version as the database driver returns it (a number, a bigint as its decimal text, a string, or
 * NULL), the table's migration mode, the binding (§12.2's pairs and `version`) and its canonical
 * encoding, and the sealed field; the intermediate key is in the file, so no KMS is needed. Positive
 * cases are sealed again byte for byte and opened on every backend and through the record API;
 * refused cases fail with their code (ERR_ROW_VERSION before any key, ERR_DECRYPTION_FAILED at the
 * commitment). UPDATE_VECTORS=1 rewrites the file.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalContext } from '../src/core/context.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import { MemoryKeyStore, type StoredKey } from '../src/hierarchy/key-store.ts';
import { type BackendName, createEnvelope, LocalKms } from '../src/index.ts';
import { encodeFieldValue, fieldToText, rowKeyJson } from '../src/records/field-value.ts';
import { createRecords, defineTable } from '../src/records/records.ts';
import { BACKENDS, hex, readVectors, seededRandom, unhex } from './helpers.ts';

/** A row version as a driver returns it: a JSON number, a bigint (decimal text), a string, or NULL. */
type Version = { type: 'number'; value: number } | { type: 'bigint' | 'string'; value: string } | null;
interface Case {
  name: string;
  table: string;
  column: string;
  columnName: string;
  schema: number;
  partition: string;
  /** The key columns in declared order, with their values (strings and numbers). */
  primaryKey: { column: string; value: string | number }[];
  /** The row-version column's name, and its value in the row read. */
  rowVersionColumn: string;
  rowVersion: Version;
  /** Whether the table opens unversioned rows (NULL) without the binding (migration mode). */
  legacyUnversioned: boolean;
  value: string;
  plaintext: string;
  /** The binding the reader opens under (absent when it refuses the row before any key). */
  context?: Record<string, string>;
  contextEncoding?: string;
  sealed: string;
  text: string;
  expect: 'ok' | string;
}
interface VectorFile {
  comment: string;
  masterKey: string;
  keyId: string;
  store: Omit<StoredKey, 'createdAt'>[];
  intermediateKeys: Record<string, Record<string, string>>;
  cases: Case[];
}

const MASTER_KEY = hex(Uint8Array.from({ length: 32 }, (_, i) => 0x70 + i));
const KEY_ID = 'vectors-row-version';

interface Spec {
  name: string;
  /** The version the value is sealed under (null: §12.2's binding without it, a value sealed before the table had the column). */
  sealedAt: string | null;
  /** The version in the row read (default: as sealed, as a number when it is safe). */
  read?: Version;
  legacy?: boolean;
  key?: [string, string | number][];
  schema?: number;
  column?: string;
  columnName?: string;
  value?: string;
  expect?: string;
}
const num = (value: number): Version => ({ type: 'number', value });
const SPECS: Spec[] = [
  { name: 'version 1', sealedAt: '1' },
  { name: 'version 0 (the one a sweep gives an unversioned row)', sealedAt: '0' },
  { name: 'version 41, read as a decimal string (PostgreSQL BIGINT)', sealedAt: '41', read: { type: 'string', value: '41' } },
  { name: 'version 2^53 + 1, read as a bigint', sealedAt: '9007199254740993', read: { type: 'bigint', value: '9007199254740993' } },
  { name: 'version 2^63 - 1, the largest', sealedAt: '9223372036854775807', read: { type: 'string', value: '9223372036854775807' } },
  { name: 'three key columns, schema 3, a column id', sealedAt: '7', key: [['org', 'acme'], ['n', 3], ['id', 'u1']], schema: 3, column: 'e1', columnName: 'email' },
  { name: 'unversioned row (NULL), migration mode: the binding of §12.2', sealedAt: null, read: null, legacy: true },
  // Refused.
  { name: 'refused: unversioned row (NULL) outside migration mode', sealedAt: null, read: null, expect: 'ERR_ROW_VERSION' },
  { name: 'refused: a value of version 1 in a row of version 2', sealedAt: '1', read: num(2), expect: 'ERR_DECRYPTION_FAILED' },
  { name: 'refused: a value of version 2 in a row of version 1', sealedAt: '2', read: num(1), expect: 'ERR_DECRYPTION_FAILED' },
  { name: 'refused: a value of version 1 in an unversioned row (NULL), migration mode', sealedAt: '1', read: null, legacy: true, expect: 'ERR_DECRYPTION_FAILED' },
  { name: 'refused: a value without the binding in a row of version 0', sealedAt: null, read: num(0), legacy: true, expect: 'ERR_DECRYPTION_FAILED' },
  { name: 'refused: version 10 read as 1 (no prefix of the decimal text)', sealedAt: '10', read: num(1), expect: 'ERR_DECRYPTION_FAILED' },
  { name: 'refused: a version with a leading zero', sealedAt: '1', read: { type: 'string', value: '01' }, expect: 'ERR_ROW_VERSION' },
  { name: 'refused: a negative version', sealedAt: '1', read: num(-1), expect: 'ERR_ROW_VERSION' },
  { name: 'refused: a fractional version', sealedAt: '1', read: num(1.5), expect: 'ERR_ROW_VERSION' },
  { name: 'refused: version 2^63', sealedAt: '1', read: { type: 'string', value: '9223372036854775808' }, expect: 'ERR_ROW_VERSION' },
];

const asRead = (v: string | null): Version => (v === null ? null : Number.isSafeInteger(Number(v)) ? num(Number(v)) : { type: 'string', value: v });
const untyped = (v: Version): unknown => (v === null ? null : v.type === 'bigint' ? BigInt(v.value) : v.value);

/** The binding of a value sealed at `version` (null: §12.2's four pairs). */
function bindingFor(s: Spec, version: string | null): Record<string, string> {
  const key = s.key ?? [['id', 'u1']];
  const table = 'customers';
  const context: Record<string, string> = { table, column: s.column ?? 'email', schema: String(s.schema ?? 1) };
  context.row = rowKeyJson(key.map(([, v]) => v), key.map(([c]) => c), table);
  if (version !== null) context.version = version;
  return context;
}

async function sealAll() {
  const store = new MemoryKeyStore();
  const kms = new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) }, { randomBytes: seededRandom('kms-envelope vectors row-version: hierarchy') });
  const hierarchy = createKeyHierarchy({ store, kms });
  const cases: Case[] = [];
  for (const s of SPECS) {
    const envelope = createEnvelope({ hierarchy, compact: true, randomBytes: seededRandom(`kms-envelope vectors row-version: ${s.name}`) });
    const value = s.value ?? 'alice@example.com';
    const plaintext = encodeFieldValue('string', value, s.name);
    const sealed = await envelope.seal(plaintext, { context: bindingFor(s, s.sealedAt), detachedContext: true, partition: 'tenant-1' });
    const read = s.read === undefined ? asRead(s.sealedAt) : s.read;
    const refusedBeforeKey = s.expect === 'ERR_ROW_VERSION';
    // The reader's binding: the row's version read, or §12.2's for an unversioned row.
    const context = refusedBeforeKey ? undefined : bindingFor(s, read === null ? null : String(untyped(read)));
    cases.push({
      name: s.name,
      table: 'customers',
      column: s.column ?? 'email',
      columnName: s.columnName ?? s.column ?? 'email',
      schema: s.schema ?? 1,
      partition: 'tenant-1',
      primaryKey: (s.key ?? [['id', 'u1']]).map(([column, v]) => ({ column, value: v })),
      rowVersionColumn: 'row_version',
      rowVersion: read,
      legacyUnversioned: s.legacy === true,
      value,
      plaintext: hex(plaintext),
      ...(context ? { context, contextEncoding: hex(canonicalContext(context).encoded) } : {}),
      sealed: hex(sealed),
      text: fieldToText(sealed),
      expect: s.expect ?? 'ok',
    });
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
      'kms-envelope FORMAT.md §12.4 row-version vectors. Every field is a version-2 compact message (suite 01, key source 1) under partition "tenant-1", its context detached, of a string column of table "customers" whose row version is in column `rowVersionColumn`. `rowVersion` is the value in the row read, as a driver returns it: {"type":"number"} a JSON number, {"type":"bigint"} a bigint given as its decimal text, {"type":"string"} a string, null for NULL. `legacyUnversioned` is the table\'s migration mode. `context` is the binding the reader opens under (§12.2\'s pairs plus `version`, or without it for an unversioned row), `contextEncoding` its canonical encoding (FORMAT.md §3); a case refused with ERR_ROW_VERSION has none (the reader refuses the row before any key). `intermediateKeys` gives the intermediate key so that no KMS is needed; `store` holds it wrapped by LocalKms under `masterKey` (FORMAT.md §9). Randomness: HMAC-SHA-512(seed, counter) (test/helpers.ts seededRandom), seed "kms-envelope vectors row-version: <name>".',
    masterKey: MASTER_KEY,
    keyId: KEY_ID,
    store: records.map(({ createdAt: _, ...r }) => r),
    intermediateKeys,
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('./vectors/row-version.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('row-version.json');

async function hierarchyFor(backend?: BackendName) {
  const store = new MemoryKeyStore();
  for (const r of vectors.store) await store.createVersion({ ...r, createdAt: 0 });
  const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }, backend ? { backend } : {});
  return createKeyHierarchy({ store, kms, ...(backend ? { backend } : {}) });
}

const tableOf = (c: Case) =>
  defineTable({
    name: c.table,
    schemaVersion: c.schema,
    primaryKey: c.primaryKey.map((k) => k.column),
    partition: { column: 'tenant' },
    columns: { [c.columnName]: { type: 'string', ...(c.columnName !== c.column ? { id: c.column } : {}) } },
    rowVersion: { column: c.rowVersionColumn, legacyUnversioned: c.legacyUnversioned },
  });
const rowOf = (c: Case, stored: unknown): Record<string, unknown> => ({
  tenant: c.partition,
  ...Object.fromEntries(c.primaryKey.map((k) => [k.column, k.value])),
  [c.rowVersionColumn]: untyped(c.rowVersion),
  [c.columnName]: stored,
});

describe('row-version vectors (FORMAT.md §12.4)', () => {
  it('cover versions from 0 to 2^63 - 1 in each spelling, unversioned rows in and out of migration mode, and refusals of both codes', () => {
    const ok = vectors.cases.filter((c) => c.expect === 'ok');
    expect(new Set(ok.map((c) => c.rowVersion?.type ?? null))).toEqual(new Set(['number', 'string', 'bigint', null]));
    expect(ok.map((c) => c.context?.version)).toEqual(expect.arrayContaining(['0', '9223372036854775807', undefined]));
    expect(new Set(vectors.cases.map((c) => c.expect))).toEqual(new Set(['ok', 'ERR_ROW_VERSION', 'ERR_DECRYPTION_FAILED']));
    expect(vectors.cases.map((c) => c.name)).toEqual(SPECS.map((s) => s.name));
  });

  it('seals every case again byte for byte; the record API binds what the file says', async () => {
    const { cases } = await sealAll();
    expect(cases).toEqual(vectors.cases);
    const records = createRecords({ hierarchy: await hierarchyFor() });
    for (const c of vectors.cases.filter((x) => x.expect === 'ok' && x.context?.version !== undefined)) {
      expect(hex(canonicalContext(c.context!).encoded), c.name).toBe(c.contextEncoding);
      const sealed = (await records.seal(tableOf(c), rowOf(c, c.value) as never))[c.columnName] as string;
      const { fieldFromText } = await import('../src/records/field-value.ts');
      expect(hex(await records.envelope.open(fieldFromText(sealed)!, { context: c.context!, partition: c.partition })), c.name).toBe(c.plaintext);
    }
  });

  for (const backend of [...BACKENDS.map((b) => b.name as BackendName), 'webcrypto' as const]) {
    it(`opens every case under the reader's binding as expected (${backend})`, async () => {
      const envelope = createEnvelope({ hierarchy: await hierarchyFor(backend), backend });
      for (const c of vectors.cases.filter((x) => x.context)) {
        const opening = envelope.open(unhex(c.sealed), { context: c.context!, partition: c.partition });
        if (c.expect === 'ok') expect(hex(await opening), c.name).toBe(c.plaintext);
        else await expect(opening, c.name).rejects.toMatchObject({ code: c.expect });
      }
    });
  }

  it('opens every case through the record API as expected (text form), the refusals with their code', async () => {
    const records = createRecords({ hierarchy: await hierarchyFor() });
    for (const c of vectors.cases) {
      expect(fieldToText(unhex(c.sealed)), c.name).toBe(c.text);
      const opening = records.open(tableOf(c), rowOf(c, c.text) as never);
      if (c.expect === 'ok') expect((await opening)[c.columnName], c.name).toBe(c.value);
      else await expect(opening, c.name).rejects.toMatchObject({ code: c.expect });
    }
  });
});
