/**
 * FORMAT.md §12.1 and §12.2 as a second implementation reads them: the writer's refusals, the one
 * NaN, the reader refusing every value bytes no writer writes (ERR_FIELD_MALFORMED, never
 * ERR_DECRYPTION_FAILED), and the binding's row array and key types. The central property: a
 * plaintext the reader accepts is exactly the bytes the writer writes for the value it reads.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FieldMalformedError, isEnvelopeError } from '../../src/core/errors.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { decodeFieldValue, encodeFieldValue, fieldFromText, fieldMalformed, fieldToText, type FieldType, isFieldValue, MAX_DATE_MS, rowKeyJson, testing as fieldValueTesting } from '../../src/records/field-value.ts';
import { createRecords, defineTable, RecordFieldError } from '../../src/records/records.ts';
import { hex, unhex } from '../helpers.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const TYPES: FieldType[] = ['string', 'bytes', 'number', 'bigint', 'boolean', 'date', 'json'];
const f64 = (bytes: string): Uint8Array => Uint8Array.of(3, ...unhex(bytes));
const date = (bytes: string): Uint8Array => Uint8Array.of(6, ...unhex(bytes));
const be64 = (x: number): string => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x);
  return hex(out);
};
const ascii = (tag: number, text: string): Uint8Array => Uint8Array.of(tag, ...new TextEncoder().encode(text));

/** Plaintexts no writer writes, each with its column type. */
const MALFORMED: [string, FieldType, Uint8Array][] = [
  ['a NaN with payload bits', 'number', f64('7ff8000000000001')],
  ['a signalling NaN', 'number', f64('7ff4000000000000')],
  ['a negative NaN', 'number', f64('fff8000000000000')],
  ['a number of 7 bytes', 'number', f64('3ff00000000000')],
  ['a bigint -0', 'bigint', ascii(4, '-0')],
  ['a bigint with a leading zero', 'bigint', ascii(4, '012')],
  ['a bigint with a plus sign', 'bigint', ascii(4, '+1')],
  ['an empty bigint', 'bigint', ascii(4, '')],
  ['a bigint in Arabic-Indic digits', 'bigint', ascii(4, '٣')],
  ['a Date that is NaN', 'date', date('7ff8000000000000')],
  ['a Date of 0.5 ms', 'date', date(be64(0.5))],
  ['a Date beyond 8.64e15 ms', 'date', date(be64(MAX_DATE_MS + 1))],
  ['a Date before -8.64e15 ms', 'date', date(be64(-MAX_DATE_MS - 1))],
  ['a Date of -0', 'date', date('8000000000000000')],
  ['a boolean 02', 'boolean', Uint8Array.of(5, 2)],
  ['a boolean of two bytes', 'boolean', Uint8Array.of(5, 1, 0)],
  ['a string with a CESU-8 surrogate', 'string', Uint8Array.of(1, 0xed, 0xa0, 0x80)],
  ['a string with an overlong slash', 'string', Uint8Array.of(1, 0xc0, 0xaf)],
  ['JSON with white space', 'json', ascii(7, '{"a": 1}')],
  ['JSON with a repeated key', 'json', ascii(7, '{"a":1,"a":2}')],
  ['JSON with an integer key after another', 'json', ascii(7, '{"b":1,"1":2}')],
  ['JSON with a number written otherwise', 'json', ascii(7, '1.0')],
  ['JSON with an escaped slash', 'json', ascii(7, '"a\\/b"')],
  ['JSON null', 'json', ascii(7, 'null')],
  ['not JSON', 'json', ascii(7, '{')],
  ['another type tag', 'number', ascii(1, 'x')],
  ['an unknown type tag', 'string', ascii(9, 'x')],
  ['an empty plaintext', 'string', new Uint8Array(0)],
];

function setup() {
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider() });
  return createRecords({ hierarchy });
}

describe('FORMAT.md §12.1 typed values', () => {
  it('A writer MUST refuse a string with a lone surrogate, an invalid Date, and a JSON value whose form is absent or null, before any key is used', async () => {
    const kms = new InstrumentedProvider();
    const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });
    const t = defineTable({ name: 't', partition: 'p', columns: { s: { type: 'string' }, d: { type: 'date' }, j: { type: 'json' } } });
    for (const row of [{ s: 'a\ud800' }, { s: '\udc00b' }, { d: new Date(Number.NaN) }, { d: new Date(9e15) }, { j: () => 1 }, { j: { toJSON: () => null } }]) {
      await expect(records.seal(t, row as never)).rejects.toBeInstanceOf(TypeError);
    }
    expect(kms.calls).toEqual({ generate: 0, decrypt: 0 });
    expect(() => encodeFieldValue('json', null, 'v')).toThrow(/null/);
    expect(() => encodeFieldValue('json', Symbol('x'), 'v')).toThrow(/no JSON form/);
  });

  it('writes a string or JSON value as its tag and UTF-8 bytes, ASCII or not, wherever the first non-ASCII character falls (property)', () => {
    const char = fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 1 }), fc.string({ unit: 'grapheme', maxLength: 1 }), fc.constantFrom('é', '€', '😀', '\u007f', '\u0080'));
    const text = fc.array(char, { maxLength: 300 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, (value) => {
        expect(hex(encodeFieldValue('string', value, 't.c'))).toBe(hex(ascii(1, value)));
        expect(hex(encodeFieldValue('json', { value }, 't.c'))).toBe(hex(ascii(7, JSON.stringify({ value }))));
      }),
    );
    expect(() => encodeFieldValue('string', 'ab\ud800', 't.c')).toThrow(/lone surrogate/);
  });

  it('A writer MUST write every NaN as 7F F8 00 00 00 00 00 00', () => {
    const view = new DataView(new ArrayBuffer(8));
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: (1n << 52n) - 1n }), fc.boolean(), (payload, negative) => {
        view.setBigUint64(0, (negative ? 0xfff0000000000000n : 0x7ff0000000000000n) | payload);
        const nan = view.getFloat64(0); // a NaN with these bits, as far as the engine keeps them
        expect(hex(encodeFieldValue('number', nan, 'v'))).toBe('037ff8000000000000');
      }),
    );
    expect(hex(encodeFieldValue('number', -0, 'v'))).toBe('038000000000000000');
    expect(Object.is(decodeFieldValue('number', encodeFieldValue('number', -0, 'v')), -0)).toBe(true);
  });

  it.each(MALFORMED)('refuses %s as ERR_FIELD_MALFORMED', (_, type, plaintext) => {
    expect(decodeFieldValue(type, plaintext)).toBeUndefined();
    expect(isFieldValue(type, plaintext)).toBe(false);
    const error = fieldMalformed(type, plaintext)!;
    expect(error).toBeInstanceOf(FieldMalformedError);
    expect(error).toMatchObject({ code: 'ERR_FIELD_MALFORMED', type, tag: plaintext[0] });
    expect(isEnvelopeError(error)).toBe(true);
  });

  it('opens what it reads only if the writer writes exactly those bytes for it (property: decode then encode gives the bytes back)', () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 12 }),
      fc.double().map((x) => unhex(be64(x))),
      fc.integer({ min: -1e16, max: 1e16 }).map((x) => unhex(be64(x))),
      fc.bigInt().map((n) => new TextEncoder().encode(n.toString())),
      fc.array(fc.constantFrom(...'-+0129 {}[]":,.e'), { maxLength: 8 }).map((c) => new TextEncoder().encode(c.join(''))),
      fc.jsonValue().map((v) => new TextEncoder().encode(JSON.stringify(v, null, Math.random() < 0.5 ? 1 : 0) ?? '')),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), body, (tag, bytes) => {
        const plaintext = Uint8Array.of(tag, ...bytes);
        for (const type of TYPES) {
          const value = decodeFieldValue(type, plaintext);
          expect(isFieldValue(type, plaintext), type).toBe(value !== undefined);
          expect(fieldMalformed(type, plaintext) === undefined, type).toBe(value !== undefined);
          if (value !== undefined) expect(hex(encodeFieldValue(type, value, 'v')), type).toBe(hex(plaintext));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('reads back every value it writes, as the same type (property)', () => {
    const values: [FieldType, fc.Arbitrary<unknown>][] = [
      ['string', fc.string({ unit: 'binary' }).filter((s) => s.isWellFormed())],
      ['number', fc.double()],
      ['bigint', fc.bigInt()],
      ['date', fc.integer({ min: -MAX_DATE_MS, max: MAX_DATE_MS }).map((t) => new Date(t))],
      ['json', fc.jsonValue().filter((v) => v !== null)],
    ];
    for (const [type, arbitrary] of values) {
      fc.assert(
        fc.property(arbitrary, (value) => {
          const back = decodeFieldValue(type, encodeFieldValue(type, value, 'v'));
          if (type === 'number') expect(Object.is(back, value) || (Number.isNaN(back) && Number.isNaN(value))).toBe(true);
          else if (type === 'json') expect(back).toEqual(JSON.parse(JSON.stringify(value)));
          else expect(back).toEqual(value);
        }),
      );
    }
  });

  it('a sealed field of bytes no writer writes fails to open with ERR_FIELD_MALFORMED naming the column and the row, not ERR_DECRYPTION_FAILED', async () => {
    const records = setup();
    const t = defineTable({ name: 'people', primaryKey: 'id', partition: { column: 'tenant' }, columns: { n: { type: 'number' }, d: { type: 'date' }, j: { type: 'json' }, b: { type: 'bigint' } } });
    await records.warm(['acme']);
    for (const [name, type, plaintext] of MALFORMED) {
      const column = ({ number: 'n', date: 'd', json: 'j', bigint: 'b' } as Record<string, string>)[type];
      if (!column) continue;
      const context = ({ table: 'people', column, schema: '1', row: '["7"]' });
      const sealed = fieldToText(await records.envelope.seal(plaintext, { context, detachedContext: true, partition: 'acme' }));
      const row = { id: '7', tenant: 'acme', [column]: sealed };
      const error = await records.open(t, row).then(() => undefined, (e: unknown) => e);
      expect(error, name).toBeInstanceOf(RecordFieldError);
      expect(error, name).toMatchObject({ code: 'ERR_FIELD_MALFORMED', table: 'people', column, row: ['7'] });
      expect((error as RecordFieldError).cause, name).toBeInstanceOf(FieldMalformedError);
      expect(() => records.openSync(t, row), name).toThrow(expect.objectContaining({ code: 'ERR_FIELD_MALFORMED' }));
      expect(() => records.resealSync(t, row), name).toThrow(expect.objectContaining({ code: 'ERR_FIELD_MALFORMED' }));
    }
    // The same bytes under another row are an authentication failure, as before.
    const context = ({ table: 'people', column: 'n', schema: '1', row: '["8"]' });
    const sealed = fieldToText(await records.envelope.seal(f64('7ff8000000000001'), { context, detachedContext: true, partition: 'acme' }));
    await expect(records.open(t, { id: '7', tenant: 'acme', n: sealed })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });
});

describe('FORMAT.md §12 text form: Node\'s native base64url and the portable coder agree', () => {
  const { portableText, portableBytes } = fieldValueTesting;
  const same = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean => (a === undefined || b === undefined ? a === b : hex(a) === hex(b));

  it('writes the same text as the portable encoder for any bytes, and reads it back (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const text = fieldToText(bytes);
        expect(text).toBe(portableText(bytes));
        expect(hex(fieldFromText(text)!)).toBe(hex(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a string field natively exactly as the strict TextDecoder does: invalid UTF-8 refused, a leading BOM kept (property)', () => {
    const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    const expected = (body: Uint8Array): string | undefined => {
      try {
        return strict.decode(body);
      } catch {
        return undefined;
      }
    };
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.string({ unit: 'binary' }).map((t) => new TextEncoder().encode(t)), fc.constant(Uint8Array.of(0xef, 0xbb, 0xbf, 0x41)), fc.constant(Uint8Array.of(0xed, 0xa0, 0x80)), fc.constant(Uint8Array.of(0xc0, 0xaf)));
    fc.assert(
      fc.property(bytes, (body) => {
        expect(decodeFieldValue('string', Uint8Array.of(1, ...body))).toBe(expected(body));
      }),
      { numRuns: 1000 },
    );
    expect(decodeFieldValue('string', Uint8Array.of(1, 0xef, 0xbb, 0xbf, 0x41))).toBe('\ufeffA');
  });

  it('refuses exactly what the portable decoder refuses: other characters, padding, the standard alphabet, a length of 1 mod 4, bits left over (property)', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const near = fc.constantFrom(...alphabet.split(''), '=', '+', '/', ' ', '\n', '.', 'é', '\u0000');
    fc.assert(
      fc.property(fc.array(near, { maxLength: 40 }).map((chars) => `kme.${chars.join('')}`), (text) => {
        expect(same(fieldFromText(text), portableBytes(text))).toBe(true);
      }),
      { numRuns: 2000 },
    );
    // The edges, each refused by both: bits left over in the last character, padding, a lone character, the standard alphabet.
    for (const text of ['kme.AB', 'kme.AAB', 'kme.AA==', 'kme.A', 'kme.AA+/', 'kme.AA/A', 'kme.AA A']) {
      expect(fieldFromText(text)).toBeUndefined();
      expect(portableBytes(text)).toBeUndefined();
    }
    expect(hex(fieldFromText('kme.AQ')!)).toBe('01');
    expect(hex(fieldFromText('kme.AQI')!)).toBe('0102');
  });
});

describe('FORMAT.md §12.2 binding', () => {
  it('A writer and a reader MUST write the row as an array, even for one key column, and MUST refuse a key value of any other type', async () => {
    expect(rowKeyJson(['42'], ['id'], 't')).toBe('["42"]');
    expect(rowKeyJson([42, 5n, new Date(0), -0, 1e21], ['a', 'b', 'c', 'd', 'e'], 't')).toBe('[42,"5","1970-01-01T00:00:00.000Z",0,1e+21]');
    expect(rowKeyJson([5n], ['id'], 't')).toBe(rowKeyJson(['5'], ['id'], 't')); // the type is not bound, only the JSON
    expect(rowKeyJson([5], ['id'], 't')).not.toBe(rowKeyJson(['5'], ['id'], 't'));
    for (const bad of [true, Number.NaN, Number.POSITIVE_INFINITY, new Date(Number.NaN), Uint8Array.of(1), { a: 1 }, ['x'], 'a\ud800', Symbol('s')]) {
      expect(() => rowKeyJson(['ok', bad], ['id', 'part'], 't'), String(typeof bad)).toThrow(/primary key column part/);
    }
    const kms = new InstrumentedProvider();
    const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });
    const t = defineTable({ name: 't', primaryKey: 'id', partition: 'p', columns: { v: { type: 'string' } } });
    const sealed = await records.seal(t, { id: '42', v: 'x' });
    // The bare value "42" as the row binds nothing the reader makes: only the array opens.
    const arrayContext = ({ table: 't', column: 'v', schema: '1', row: '["42"]' });
    const { fieldFromText } = await import('../../src/records/field-value.ts');
    expect(new TextDecoder().decode(await records.envelope.open(fieldFromText(sealed.v as string)!, { context: arrayContext, partition: 'p' }))).toBe('\u0001x');
    await expect(records.envelope.open(fieldFromText(sealed.v as string)!, { context: ({ table: 't', column: 'v', schema: '1', row: '"42"' }), partition: 'p' })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    const calls = { ...kms.calls };
    await expect(records.seal(t, { id: true as unknown as string, v: 'x' })).rejects.toThrow(/primary key column id/);
    await expect(records.open(t, { ...sealed, id: { a: 1 } as unknown as string })).rejects.toThrow(/primary key column id/);
    expect(kms.calls).toEqual(calls);
  });

  it('binds the default schema version 1 and the column id, and names the index by the column id', async () => {
    const t = defineTable({ name: 'users', primaryKey: ['org', 'id'], partition: 'p', columns: { mail: { type: 'string', id: 'email', index: { column: 'email_idx', bits: 32 } } } });
    expect(t.schemaVersion).toBe(1);
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider() });
    const records = createRecords({ hierarchy });
    const sealed = await records.seal(t, { org: 3n, id: 7, mail: 'a@example.com' });
    const { fieldFromText } = await import('../../src/records/field-value.ts');
    const context = ({ table: 'users', column: 'email', schema: '1', row: '["3",7]' });
    expect(await records.envelope.open(fieldFromText(sealed.mail as string)!, { context, partition: 'p' })).toEqual(ascii(1, 'a@example.com'));
    const { createBlindIndex } = await import('../../src/records/blind-index.ts');
    const index = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 32 });
    expect(sealed.email_idx).toBe(await index.compute('a@example.com', { partition: 'p' }));
  });
});

