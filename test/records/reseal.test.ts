/**
 * records.resealSync (issue 14 §3, the sweeps' rotation): a stored row sealed again under its
 * partition's active key version, the plaintext carried as bytes from open to seal.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeAuthenticatedV2, intermediateKeyVersion, parseHeader } from '../../src/core/header.ts';
import { canonicalContext } from '../../src/core/context.ts';
import { COBBLESTONE_128, COBBLESTONE_256, SM4_GCM_SM3 } from '../../src/core/suites.ts';
import { fieldFromText } from '../../src/records/field-value.ts';
import { type AuditRecord, createKeyHierarchy, MemoryKeyStore, type RowsOpenAuditRecord } from '../../src/hierarchy.ts';
import { createRecords, defineTable, RecordFieldError } from '../../src/records.ts';
import { LocalKms, sealSync } from '../../src/index.ts';

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'key_version',
  columns: {
    email: { type: 'string', index: { column: 'email_idx', bits: 16 } },
    photo: { type: 'bytes' },
    age: { type: 'number' },
    raw: { type: 'bytes', encoding: 'bytes' },
  },
});

async function setup() {
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
  const records = createRecords({ hierarchy });
  await records.warm(['acme', 'zeta'], [people]);
  return { hierarchy, records };
}

const versionOf = (stored: unknown): number | undefined =>
  parseHeader(typeof stored === 'string' ? fieldFromText(stored)! : (stored as Uint8Array)).intermediate?.version;

describe('records.resealSync', () => {
  it('moves every value to the active version; the row opens to the same values, with the same blind index and the key-version column moved on', async () => {
    const { hierarchy, records } = await setup();
    const row = { id: 'p1', tenant: 'acme', email: 'Ann@Example.com', photo: new Uint8Array([1, 2, 3]), age: 42, raw: new Uint8Array([9]), other: 'kept' };
    const sealed = records.sealSync(people, row);
    expect(sealed.key_version).toBe(1);
    await hierarchy.rotate('acme');
    await records.warm(['acme']);
    const resealed = records.resealSync(people, sealed);
    for (const column of ['email', 'photo', 'age', 'raw'] as const) {
      expect(versionOf(resealed[column])).toBe(2);
      expect(resealed[column]).not.toEqual(sealed[column]);
    }
    expect(resealed.key_version).toBe(2);
    expect(resealed.email_idx).toBe(sealed.email_idx);
    expect(resealed.other).toBe('kept');
    const opened = records.openSync(people, resealed);
    expect(opened).toMatchObject({ email: row.email, photo: row.photo, age: 42, raw: row.raw, other: 'kept' });
    // The same as opening and sealing again, value for value.
    const viaOpen = records.openSync(people, records.sealSync(people, records.openSync(people, sealed) as never));
    expect(records.openSync(people, resealed)).toEqual(viaOpen);
    await hierarchy.close();
  });

  it('keeps the binding: a value moved to another row or column, or altered, before the reseal fails with RecordFieldError naming it', async () => {
    const { hierarchy, records } = await setup();
    const a = records.sealSync(people, { id: 'a', tenant: 'acme', email: 'a@x', age: 1 });
    const b = records.sealSync(people, { id: 'b', tenant: 'acme', email: 'b@x', age: 2 });
    const swapped = { ...b, email: a.email };
    const error = (() => {
      try {
        records.resealSync(people, swapped);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(RecordFieldError);
    expect((error as RecordFieldError).column).toBe('email');
    expect((error as RecordFieldError).row).toEqual(['b']);
    expect(String((error as Error).message)).not.toContain('a@x');
    // A column whose type changed without a new schema version: the value's type tag is checked.
    const retyped = defineTable({ ...people, columns: { ...people.columns, age: { type: 'string' } } });
    expect(() => records.resealSync(retyped, a)).toThrow(/age .*not a string/);
    // A tampered value.
    const text = a.email as string;
    const flipped = text.slice(0, -2) + (text.at(-2) === 'A' ? 'B' : 'A') + text.at(-1);
    expect(() => records.resealSync(people, { ...a, email: flipped })).toThrow(RecordFieldError);
    await hierarchy.close();
  });

  it('refuses what open refuses: a value with the right type tag whose bytes are not a value of the type', async () => {
    const { hierarchy, records } = await setup();
    const binding = (column: string) => ({ context: { table: 'people', column, schema: '1', row: '["p1"]' }, detachedContext: true, partition: 'acme' });
    const stored = (plaintext: Uint8Array, column: string) => 'kme.' + Buffer.from(sealSync(records.envelope, plaintext, binding(column))).toString('base64url');
    const notes = defineTable({ ...people, columns: { ...people.columns, note: { type: 'string' } } });
    const good = records.sealSync(notes, { id: 'p1', tenant: 'acme', email: 'p@x', age: 7, note: 'n' });
    for (const [column, plaintext] of [
      ['age', Uint8Array.of(3, 1, 2, 3, 4)], // a number of 4 bytes, not 8
      ['note', Uint8Array.of(1, 0x61, 0xc0, 0x80)], // a string that is not UTF-8
      ['email', Uint8Array.of(1, 0xed, 0xa0, 0x80)], // the same, in a column with a blind index
    ] as const) {
      const row = { ...good, [column]: stored(plaintext, column) };
      expect(() => records.openSync(notes, row), column).toThrow(RecordFieldError);
      await expect(records.open(notes, row), column).rejects.toThrow(RecordFieldError);
      expect(() => records.resealSync(notes, row), column).toThrow(RecordFieldError);
    }
    expect(records.openSync(notes, records.resealSync(notes, good))).toMatchObject({ age: 7, note: 'n' });
    await hierarchy.close();
  });

  it('seals legacy plaintext in migration mode, and refuses it otherwise', async () => {
    const { hierarchy, records } = await setup();
    const legacy = defineTable({ name: 'legacy', primaryKey: 'id', partition: 'acme', columns: { note: { type: 'string', legacyPlaintext: true } } });
    const strict = defineTable({ name: 'legacy', primaryKey: 'id', partition: 'acme', columns: { note: { type: 'string' } } });
    const resealed = records.resealSync(legacy, { id: 1, note: 'plain text' });
    expect(String(resealed.note).startsWith('kme.')).toBe(true);
    expect(records.openSync(legacy, resealed).note).toBe('plain text');
    expect(() => records.resealSync(strict, { id: 1, note: 'plain text' })).toThrow(RecordFieldError);
    await hierarchy.close();
  });

  it('throws KeyNotWarmError (not a row failure) while the new version is loading', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const sealed = await records.seal(people, { id: 'p', tenant: 'acme', email: 'e@x' });
    const cold = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });
    expect(() => cold.resealSync(people, sealed)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
    await hierarchy.close();
  });

  it('round-trips any values (property)', async () => {
    const { hierarchy, records } = await setup();
    await fc.assert(
      fc.property(fc.string(), fc.uint8Array({ maxLength: 300 }), fc.double({ noNaN: true }), (email, photo, age) => {
        const row = { id: 'p', tenant: 'acme', email, photo, age };
        const opened = records.openSync(people, records.resealSync(people, records.sealSync(people, row)));
        expect(opened.email).toBe(email);
        expect(opened.photo).toEqual(photo);
        expect(Object.is(opened.age, age)).toBe(true);
      }),
      { numRuns: 200 },
    );
    await hierarchy.close();
  });
});

describe('intermediateKeyVersion', () => {
  it('reads the version parseHeader reads, for record fields of any partition and version, and falls back to the full parse otherwise', async () => {
    const { hierarchy, records } = await setup();
    for (let v = 1; v <= 3; v++) {
      const sealed = records.sealSync(people, { id: 'x', tenant: 'acme', raw: new Uint8Array([v]) }).raw as Uint8Array;
      expect(intermediateKeyVersion(sealed)).toBe(v);
      expect(intermediateKeyVersion(sealed)).toBe(parseHeader(sealed).intermediate?.version);
      await hierarchy.rotate('acme');
      await records.warm(['acme']);
    }
    // A message with a stored context takes the full parse.
    const stored = await records.envelope.seal('x', { partition: 'zeta', context: { a: 'b' } });
    expect(intermediateKeyVersion(stored)).toBe(parseHeader(stored).intermediate?.version);
    expect(() => intermediateKeyVersion(new Uint8Array([1, 2, 3]))).toThrow();
    await hierarchy.close();
  });
  it('agrees with parseHeader on any version-2 header, whatever its partition, version, suite, form and context mode, and refuses what parseHeader refuses (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 2 ** 32 - 1 }),
        fc.constantFrom(COBBLESTONE_256, COBBLESTONE_128, SM4_GCM_SM3),
        fc.boolean(),
        fc.boolean(),
        fc.uint8Array({ maxLength: 40 }),
        (partition, version, suite, detached, compact, payload) => {
          const header = encodeAuthenticatedV2(suite, canonicalContext({ a: partition }), detached, compact, { partition, version });
          const message = new Uint8Array(header.length + payload.length);
          message.set(header);
          message.set(payload, header.length);
          expect(intermediateKeyVersion(message)).toBe(version);
          expect(parseHeader(message).intermediate?.version).toBe(version);
          // Cut inside the key version: both refuse.
          const cut = message.subarray(0, header.length - 1);
          expect(() => parseHeader(cut)).toThrow();
          expect(() => intermediateKeyVersion(cut)).toThrow();
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('a batch under a cold key', () => {
  it('loads the key once and opens each row once: one audit record for the call, counting each field once, not once more for a discarded synchronous attempt', async () => {
    const store = new MemoryKeyStore();
    const kms = LocalKms.generate();
    const writer = createKeyHierarchy({ store, kms });
    const sealed = (await createRecords({ hierarchy: writer }).sealMany(people, Array.from({ length: 50 }, (_, i) => ({ id: `r${i}`, tenant: i % 2 ? 'acme' : 'zeta', email: `${i}@x` })), { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    const audits: AuditRecord[] = [];
    const reader = createKeyHierarchy({ store, kms, audit: (a) => audits.push(a) });
    const records = createRecords({ hierarchy: reader });
    const opened = await records.openMany(people, sealed, { failFast: true });
    expect(opened.map((r) => (r.ok ? r.value.email : undefined))).toEqual(sealed.map((_, i) => `${i}@x`));
    expect(audits).toHaveLength(1);
    const [batch] = audits as RowsOpenAuditRecord[];
    expect([batch!.operation, batch!.rows, batch!.failed, batch!.fields]).toEqual(['open-rows', 50, 0, 50]);
    expect(batch!.keys.map((k) => [k.partition, k.version, k.fields]).sort()).toEqual([['acme', 1, 25], ['zeta', 1, 25]]);
    // Sealing under cold keys: every row sealed once, each under its own partition.
    const cold = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
    const again = await cold.sealMany(people, sealed.map((_, i) => ({ id: `s${i}`, tenant: i % 2 ? 'acme' : 'zeta', email: 'e' })), { failFast: true });
    expect(again.map((r) => r.ok && parseHeader(fieldFromText(r.value.email as string)!).intermediate?.partition)).toEqual(sealed.map((_, i) => (i % 2 ? 'acme' : 'zeta')));
    await writer.close();
    await reader.close();
  });

  it('a cold old version, its load hung at the KMS, holds up no seal or open whose key is in memory', async () => {
    const store = new MemoryKeyStore();
    const local = LocalKms.generate();
    const writer = createKeyHierarchy({ store, kms: local });
    const w = createRecords({ hierarchy: writer });
    const oldRow = await w.seal(people, { id: 'old', tenant: 'acme', email: 'old@x' }); // version 1
    await writer.rotate('acme');
    const newRow = await w.seal(people, { id: 'new', tenant: 'acme', email: 'new@x' }); // version 2
    let hang = false;
    const hung: (() => void)[] = [];
    const reader = createKeyHierarchy({
      store,
      kms: {
        id: local.id,
        generateDataKey: (r) => local.generateDataKey(r),
        decryptDataKey: (r) => (hang ? new Promise<void>((resolve) => hung.push(resolve)).then(() => local.decryptDataKey(r)) : local.decryptDataKey(r)),
      },
    });
    const r = createRecords({ hierarchy: reader });
    await r.warm(['acme'], [people]);
    hang = true;
    const cold = r.open(people, oldRow); // version 1: waits for the KMS, which does not answer
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(hung).toHaveLength(1);
    // Were these held up by the cold load, they would never end: the test would time out.
    const [opened, sealed] = await Promise.all([r.open(people, newRow), r.seal(people, { id: 'n2', tenant: 'acme', email: 'n2@x' })]);
    expect(opened.email).toBe('new@x');
    expect(r.openSync(people, sealed).email).toBe('n2@x');
    // Rows that need the cold version wait for its one load, and open once it answers.
    const second = r.open(people, { ...oldRow });
    hung.forEach((resolve) => resolve());
    expect((await cold).email).toBe('old@x');
    expect((await second).email).toBe('old@x');
    expect(hung).toHaveLength(1);
    await writer.close();
    await reader.close();
  });
});
