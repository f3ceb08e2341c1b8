/**
 * The decimal field type (FORMAT.md §12.1 tag 08): a fixed-scale decimal string, written as its
 * scale and unscaled integer, read back with exactly the column's places.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFieldValue, encodeFieldValue, fieldMalformed } from '../../src/records/field-value.ts';
import { defineTable } from '../../src/records/records.ts';

const decimalText = (unscaled: bigint, scale: number): string => {
  const digits = (unscaled < 0n ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return unscaled < 0n ? `-${text}` : text;
};

describe('decimal fields (FORMAT.md §12.1, tag 08)', () => {
  it('round-trip any decimal at its scale, the value read back with exactly the scale\'s places (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }), fc.integer({ min: 0, max: 38 }), fc.integer({ min: 0, max: 38 }), (unscaled, scale, written) => {
        const places = Math.min(written, scale);
        const value = decimalText(unscaled, places);
        const plaintext = encodeFieldValue('decimal', value, 'v', scale);
        expect(plaintext[0]).toBe(8);
        expect(plaintext[1]).toBe(scale);
        expect(decodeFieldValue('decimal', plaintext, scale)).toBe(decimalText(unscaled * 10n ** BigInt(scale - places), scale));
        expect(decodeFieldValue('decimal', plaintext, scale === 0 ? 1 : scale - 1)).toBeUndefined(); // another column's scale
      }),
      { numRuns: 300 },
    );
    expect([...encodeFieldValue('decimal', '12.5', 'v', 2)]).toEqual([8, 2, 0x31, 0x32, 0x35, 0x30]);
    expect([...encodeFieldValue('decimal', '-0.00', 'v', 2)]).toEqual([8, 2, 0x30]);
  });

  it("A writer MUST refuse a decimal with more places than the column's scale: and anything not a decimal string", () => {
    expect(() => encodeFieldValue('decimal', '1.005', 'v', 2)).toThrow(/3 decimal places; the column's scale is 2/);
    for (const bad of ['1e3', '01', '+1', '1.', '.5', ' 1', 1.5, 15n]) expect(() => encodeFieldValue('decimal', bad, 'v', 2)).toThrow(TypeError);
    expect(fieldMalformed('decimal', Uint8Array.of(8, 2, 0x2d, 0x30), 2)?.code).toBe('ERR_FIELD_MALFORMED');
  });

  it('a decimal column needs a scale from 0 to 38, and only decimal columns take one', () => {
    expect(() => defineTable({ name: 't', partition: 'p', columns: { a: { type: 'decimal' } } })).toThrow(/scale/);
    expect(() => defineTable({ name: 't', partition: 'p', columns: { a: { type: 'decimal', scale: 39 } } })).toThrow(/scale/);
    expect(() => defineTable({ name: 't', partition: 'p', columns: { a: { type: 'string', scale: 2 } } })).toThrow(/decimal columns/);
    expect(defineTable({ name: 't', partition: 'p', columns: { a: { type: 'decimal', scale: 2 } } }).columns.a.scale).toBe(2);
  });
});
