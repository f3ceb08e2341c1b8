import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFieldValue, encodeFieldValue, type FieldType, isFieldValue } from '../../src/records/field-value.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { createRecords, defineTable, RecordFieldError, sealedFieldLength } from '../../src/records/records.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const users = defineTable({
  name: 'users',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: {
    email: { type: 'string' },
    card: { type: 'string', id: 'c2' },
    photo: { type: 'bytes', encoding: 'bytes' },
    score: { type: 'number' },
    balance: { type: 'bigint' },
    active: { type: 'boolean' },
    born: { type: 'date' },
    profile: { type: 'json' },
  },
});

function setup() {
  const kms = new InstrumentedProvider();
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
  return { kms, hierarchy, records: createRecords({ hierarchy }) };
}

const row = {
  id: '0190a1b2-0000-7000-8000-000000000001',
  tenant: 'acme',
  name: 'not encrypted',
  email: 'alice@example.com',
  card: '4111 1111 1111 1111',
  photo: Uint8Array.of(1, 2, 3),
  score: 3.5,
  balance: -12345678901234567890n,
  active: true,
  born: new Date('1990-02-03T04:05:06.789Z'),
  profile: { tags: ['a', 'b'], n: 1 },
};

describe('records (FORMAT.md §12)', () => {
  it('seals every declared column, in its type, and reads each back as the same type; other columns pass through', async () => {
    const { records } = setup();
    const sealed = await records.seal(users, row);
    expect(sealed.name).toBe('not encrypted');
    expect(sealed.email).toMatch(/^kme\.[A-Za-z0-9_-]+$/);
    expect(sealed.photo).toBeInstanceOf(Uint8Array);
    expect(JSON.stringify(sealed)).not.toContain('alice');
    const opened = await records.open(users, sealed);
    expect(opened).toEqual(row);
    expect(typeof opened.balance).toBe('bigint');
    expect(opened.born).toBeInstanceOf(Date);
  });

  it('passes null and undefined through unencrypted and unchanged', async () => {
    const { records } = setup();
    const sealed = await records.seal(users, { id: 'x', tenant: 'acme', email: null, card: undefined });
    expect(sealed.email).toBeNull();
    expect('card' in sealed && sealed.card === undefined).toBe(true);
    expect(await records.open(users, sealed)).toEqual({ id: 'x', tenant: 'acme', email: null, card: undefined });
  });

  it('a value copied to another row, column or table, or swapped, fails with a typed error naming the column and the row', async () => {
    const { records } = setup();
    const a = await records.seal(users, { ...row, id: 'row-a', email: 'a@example.com' });
    const b = await records.seal(users, { ...row, id: 'row-b', email: 'b@example.com' });
    const cases = [
      { ...b, email: a.email }, // copied to another row
      { ...a, card: a.email }, // copied to another column
      { ...a, email: b.email, id: 'row-a' }, // swapped
    ];
    for (const tampered of cases) {
      const error = await records.open(users, tampered).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RecordFieldError);
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'users' });
      expect((error as Error).message).toMatch(/users\.(email|card) of row \["row-[ab]"\] does not open/);
      expect((error as Error).message).not.toMatch(/example\.com/);
    }
    const orders = defineTable({ name: 'orders', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
    await expect(records.open(orders, { id: 'row-a', tenant: 'acme', email: a.email })).rejects.toMatchObject({ table: 'orders', column: 'email' });
  });

  it('opens at once with warm keys, and through the KMS otherwise, counting each legacy value once either way', async () => {
    const store = new MemoryKeyStore();
    const kms = new InstrumentedProvider();
    const table = defineTable({
      name: 'mixed',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { old: { type: 'string', legacyPlaintext: true }, fresh: { type: 'string' } },
    });
    const writer = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
    const sealed = await writer.seal(table, { id: '1', tenant: 'acme', old: 'x', fresh: 'secret' });
    // Another process: its key is cold, so the synchronous attempt gives way to a KMS load.
    const reader = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
    const opened = await reader.open(table, { ...sealed, old: 'legacy text' });
    expect(opened).toMatchObject({ old: 'legacy text', fresh: 'secret' });
    expect(reader.stats.legacyValuesRead).toEqual({ 'mixed.old': 1 });
    expect(kms.calls.decrypt).toBe(1);
    // Warm now: the same row opens without another KMS call, and counts one more.
    await reader.open(table, { ...sealed, old: 'legacy text' });
    expect(reader.stats.legacyValuesRead).toEqual({ 'mixed.old': 2 });
    expect(kms.calls.decrypt).toBe(1);
  });

  it('binds the logical column id, so a renamed column keeps opening', async () => {
    const { records } = setup();
    const before = defineTable({ name: 't', primaryKey: 'id', partition: 'p', columns: { card: { type: 'string', id: 'c2' } } });
    const after = defineTable({ name: 't', primaryKey: 'id', partition: 'p', columns: { cardNumber: { type: 'string', id: 'c2' } } });
    const sealed = await records.seal(before, { id: '1', card: '4111' });
    expect((await records.open(after, { id: '1', cardNumber: sealed.card })).cardNumber).toBe('4111');
  });

  it('fails closed: an unsealed value is an error unless its column is in migration mode, which counts what it read', async () => {
    const { records } = setup();
    await expect(records.open(users, { id: '1', tenant: 'acme', email: 'plain@example.com' })).rejects.toBeInstanceOf(RecordFieldError);
    const legacy = defineTable({ name: 'users', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string', legacyPlaintext: true } } });
    expect((await records.open(legacy, { id: '1', tenant: 'acme', email: 'plain@example.com' })).email).toBe('plain@example.com');
    expect(records.stats.legacyValuesRead).toEqual({ 'users.email': 1 });
    // Sealed values still must open: migration mode does not accept a wrong sealed value.
    const other = await records.seal(legacy, { id: '2', tenant: 'acme', email: 'x@example.com' });
    await expect(records.open(legacy, { ...other, id: '1' })).rejects.toBeInstanceOf(RecordFieldError);
  });

  it('refuses a value of the wrong type, and a row without its primary key or partition', async () => {
    const { records } = setup();
    await expect(records.seal(users, { ...row, score: '3.5' as unknown as number })).rejects.toThrow(/users\.score expected a number, got string/);
    await expect(records.seal(users, { ...row, id: undefined })).rejects.toThrow(/primary key column id is missing/);
    await expect(records.seal(users, { ...row, tenant: undefined })).rejects.toThrow(/no partition/);
  });

  it('seals a batch with one key load per partition, and returns a result per row (or fails the batch when asked)', async () => {
    const { records, kms } = setup();
    const rows = Array.from({ length: 300 }, (_, i) => ({ id: String(i), tenant: i % 2 ? 'a' : 'b', email: `${i}@example.com` }));
    const sealed = await records.sealMany(users, rows);
    expect(sealed.every((r) => r.ok)).toBe(true);
    expect(kms.calls).toEqual({ generate: 2, decrypt: 0 }); // the partition's key and its blind-index key, used as generated
    const stored = sealed.map((r) => (r.ok ? r.value : undefined)!);
    stored[7] = { ...stored[7]!, email: stored[8]!.email };
    const opened = await records.openMany(users, stored);
    expect(opened.filter((r) => !r.ok).map((r) => !r.ok && (r.error as RecordFieldError).row)).toEqual([['7']]);
    await expect(records.openMany(users, stored, { failFast: true })).rejects.toBeInstanceOf(RecordFieldError);
  });

  it('a batch mixes rows done at once (warm keys) with rows that wait for a key, in order; failFast throws at a bad row, leaving no rejection unhandled', async () => {
    const { records } = setup();
    await records.seal(users, { id: 'w0', tenant: 'warm', email: 'w0@example.com' });
    const tenants = ['cold', 'warm', 'cold', 'warm'];
    const rows = tenants.map((tenant, i) => ({ id: `m${i}`, tenant, email: `${i}@example.com` }));
    const sealed = await records.sealMany(users, rows);
    expect(sealed.map((r) => r.ok && r.value.id)).toEqual(['m0', 'm1', 'm2', 'm3']);
    const stored = sealed.map((r) => (r.ok ? r.value : undefined)!);
    const opened = await records.openMany(users, [...stored, { ...stored[1]!, id: 'm9' }]);
    expect(opened.map((r) => (r.ok ? r.value.email : (r.error as RecordFieldError).row))).toEqual(['0@example.com', '1@example.com', '2@example.com', '3@example.com', ['m9']]);
    // A row waiting for a key (another cold partition), then a bad row: the batch fails with the bad row's error.
    await expect(records.sealMany(users, [{ id: 'c', tenant: 'colder', email: 'c@example.com' }, { id: undefined as unknown as string, tenant: 'warm', email: 'x' }], { failFast: true })).rejects.toThrow(/primary key column id is missing/);
    await expect(records.openMany(users, [{ ...stored[1]!, id: 'm9' }, stored[0]!], { failFast: true })).rejects.toBeInstanceOf(RecordFieldError);
  });

  it('sealedFieldLength gives the length of what seal() writes', async () => {
    const { records } = setup();
    const t = defineTable({ name: 't', partition: 'tenant-1', columns: { v: { type: 'bytes' }, b: { type: 'bytes', encoding: 'bytes' } } });
    for (const n of [0, 1, 16, 100, 16382, 16383, 20000]) {
      const sealed = await records.seal(t, { v: new Uint8Array(n), b: new Uint8Array(n) });
      expect((sealed.v as string).length).toBe(sealedFieldLength(n, { partitionBytes: 8 }));
      expect((sealed.b as Uint8Array).length).toBe(sealedFieldLength(n, { partitionBytes: 8, encoding: 'bytes' }));
    }
    expect(sealedFieldLength(16, { partitionBytes: 8 })).toBeLessThanOrEqual(120);
  });

  it('encodes every type so that it decodes to the same value, and never as another type (property)', () => {
    const arbitraries: [FieldType, fc.Arbitrary<unknown>][] = [
      ['string', fc.string({ unit: 'grapheme' })],
      ['bytes', fc.uint8Array()],
      ['number', fc.double()],
      ['bigint', fc.bigInt()],
      ['boolean', fc.boolean()],
      ['date', fc.date({ noInvalidDate: true })],
      ['json', fc.jsonValue().filter((v) => v !== null)],
    ];
    for (const [type, arbitrary] of arbitraries) {
      fc.assert(
        fc.property(arbitrary, (value) => {
          const encoded = encodeFieldValue(type, value, 'v');
          const back = decodeFieldValue(type, encoded);
          if (type === 'json') expect(back).toEqual(JSON.parse(JSON.stringify(value)));
          else if (type === 'number') expect(Object.is(back, value)).toBe(true);
          else expect(back).toEqual(value);
          for (const [other] of arbitraries) if (other !== type) expect(decodeFieldValue(other, encoded)).toBeUndefined();
        }),
        { numRuns: 200 },
      );
    }
  });
  it('isFieldValue says what decodeFieldValue does, for any tag and bytes and for encoded values (property)', () => {
    const types: FieldType[] = ['string', 'bytes', 'number', 'bigint', 'boolean', 'date', 'json'];
    const valid = fc.oneof(
      fc.string({ unit: 'grapheme' }).map((v) => encodeFieldValue('string', v, 'v')),
      fc.bigInt().map((v) => encodeFieldValue('bigint', v, 'v')),
      fc.jsonValue().filter((v) => v !== null).map((v) => encodeFieldValue('json', v, 'v')),
      fc.double().map((v) => encodeFieldValue('number', v, 'v')),
    );
    const asciiDigits = fc.array(fc.constantFrom(0x2d, 0x30, 0x31, 0x39, 0x20, 0x7b, 0x7d, 0x22), { maxLength: 6 }).map((b) => Uint8Array.from(b));
    const plaintext = fc.oneof(
      valid,
      fc.tuple(fc.integer({ min: 0, max: 9 }), fc.oneof(fc.uint8Array({ maxLength: 10 }), asciiDigits)).map(([tag, body]) => Uint8Array.of(tag, ...body)),
    );
    fc.assert(
      fc.property(plaintext, (bytes) => {
        for (const type of types) expect(isFieldValue(type, bytes), type).toBe(decodeFieldValue(type, bytes) !== undefined);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('FORMAT.md §12', () => {
  it("A reader MUST reject a field whose tag is not the column's declared type, or whose value bytes are not a valid value of it, as a failed field (the error names the column and the row)", async () => {
    const { records } = setup();
    const asString = defineTable({ name: 'users', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
    const asNumber = defineTable({ name: 'users', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'number' } } });
    const sealed = await records.seal(asString, { id: '1', tenant: 'acme', email: 'a@example.com' });
    await expect(records.open(asNumber, sealed)).rejects.toMatchObject({ column: 'email', row: ['1'], message: expect.stringContaining('not a number') });
    expect(decodeFieldValue('boolean', Uint8Array.of(5, 2))).toBeUndefined();
    expect(decodeFieldValue('bigint', Uint8Array.of(4, 0x30, 0x31))).toBeUndefined(); // "01": a leading zero
    expect(decodeFieldValue('number', Uint8Array.of(3, 0))).toBeUndefined();
  });
});

describe('records: the synchronous path', () => {
  for (const backend of ['node', 'noble'] as const) {
    it(`refuses while the key is cold (ERR_KEY_NOT_WARM, nothing returned), then seals and opens synchronously once warm (${backend})`, async () => {
      const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider(), backend });
      const records = createRecords({ hierarchy });
      const t = defineTable({ name: 'users', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' }, n: { type: 'number' } } });
      const row = { id: '1', tenant: 'acme', email: 'a@example.com', n: 7 };
      expect(() => records.sealSync(t, row)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
      await records.warm(['acme']);
      const sealed = records.sealSync(t, row);
      expect(sealed.email).toMatch(/^kme\./);
      expect(records.openSync(t, sealed)).toEqual(row);
      expect(await records.open(t, sealed)).toEqual(row); // the async path reads what the sync one wrote
      // One field, as a hook that sees only the value: bound to table and column.
      const bare = defineTable({ name: 'users', partition: 'acme', columns: { email: { type: 'string' } } });
      const field = records.sealFieldSync(bare, 'email', 'b@example.com');
      expect(records.openFieldSync(bare, 'email', field)).toBe('b@example.com');
      expect(records.sealFieldSync(bare, 'email', null)).toBeNull();
      expect(() => records.openFieldSync(t, 'email', sealed.email, { id: '2', tenant: 'acme' })).toThrow(RecordFieldError);
    });
  }

  it('sealSync/openSync: with the encryption caches, synchronous after the first call', async () => {
    const { createEnvelope, decryptCache, encryptionCache, LocalKms, openSync, sealSync } = await import('../../src/index.ts');
    const envelope = createEnvelope({ kms: LocalKms.generate(), cache: encryptionCache(), decryptCache: decryptCache() });
    expect(() => sealSync(envelope, 'x', { context: { t: '1' } })).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
    const sealed = await envelope.seal('warm', { context: { t: '1' } });
    expect(() => openSync(envelope, sealSync(envelope, 'cold'))).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' })); // another context
    const now = sealSync(envelope, 'now', { context: { t: '1' } }); // the cached data key of the first seal
    expect(() => openSync(envelope, sealed)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' })); // no Decrypt yet
    await envelope.open(sealed); // the decrypt cache now holds that data key
    expect(new TextDecoder().decode(openSync(envelope, now))).toBe('now');
    await envelope.close();
    expect(() => sealSync(envelope, 'x', { context: { t: '1' } })).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }));
  });
});

describe('records.matches', () => {
  it('compares two values under the column index\'s normalisation, and refuses a column without an index', async () => {
    const { records } = setup();
    const people = defineTable({ name: 'people', partition: 'acme', columns: { email: { type: 'string', index: { column: 'email_idx', bits: 16, normalize: ['trim', 'casefold'] } }, note: { type: 'string' } } });
    expect(records.matches(people, 'email', ' Alice@Example.COM', 'alice@example.com')).toBe(true);
    expect(records.matches(people, 'email', 'alice@example.com', 'alice@example.org')).toBe(false);
    expect(() => records.matches(people, 'note', 'a', 'a')).toThrow(/has no blind index/);
  });
});
