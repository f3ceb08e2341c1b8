/**
 * FORMAT.md §11's rules that issue 25 settled: NaN refused before any normaliser, `digits`
 * refusing bytes and values without digits, a compound index refusing a NULL part.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBlindIndex } from '../../src/records/blind-index.ts';
import { normalizeValue, normalizerChain } from '../../src/records/blind-index-values.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const hierarchy = () => createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider() });

describe('FORMAT.md §11 rules', () => {
  it('An implementation MUST refuse NaN and invalid Dates rather than index them, before any normaliser runs (so that text never makes "NaN" of NaN) and again after the last (a caller\'s normaliser may return one)', async () => {
    for (const chain of [[], ['text'], ['digits'], ['text', 'trim', 'casefold', 'nfc'], [() => 'x']] as const) {
      const fns = normalizerChain(chain as never);
      expect(() => normalizeValue(Number.NaN, fns), JSON.stringify(chain)).toThrow(/NaN/);
      expect(() => normalizeValue(new Date(Number.NaN), fns), JSON.stringify(chain)).toThrow(/invalid Date/);
    }
    const index = createBlindIndex({ hierarchy: hierarchy(), table: 't', column: 'n', bits: 32, normalize: [() => Number.NaN], partition: 'p' });
    await expect(index.compute(1)).rejects.toThrow(/NaN/);
    const text = createBlindIndex({ hierarchy: hierarchy(), table: 't', column: 'n', bits: 32, normalize: 'text', partition: 'p' });
    await expect(text.compute(Number.NaN)).rejects.toThrow(RangeError);
    expect(await text.compute(Number.POSITIVE_INFINITY)).toBe(await text.compute('Infinity')); // ±Infinity is a number like any other
  });

  it('An implementation MUST refuse, under digits, bytes and a value with no ASCII digit, rather than index it as the empty string', () => {
    const digits = normalizerChain('digits');
    for (const value of ['', 'abc', Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, true, false, '٣٤']) expect(() => normalizeValue(value, digits), String(value)).toThrow(RangeError);
    expect(() => normalizeValue(Uint8Array.of(0x31), digits)).toThrow(TypeError);
    fc.assert(
      fc.property(fc.string(), (s) => {
        const has = /[0-9]/.test(s);
        if (has) expect(normalizeValue(s, digits)).toMatch(/^[0-9]+$/);
        else expect(() => normalizeValue(s, digits)).toThrow(/no digit/);
      }),
    );
    expect(normalizeValue(-1.5e-7, digits)).toBe('157'); // String(-1.5e-7) is "-1.5e-7"
    expect(normalizeValue(new Date(0), digits)).toBe('19700101000000000');
  });

  it('A compound index MUST refuse a value with any NULL part rather than index the other parts alone', async () => {
    const index = createBlindIndex({ hierarchy: hierarchy(), table: 'users', columns: ['last_name', 'birth_date'], bits: 32, partition: 'p' });
    for (const value of [['Müller', null], [null, new Date(0)], { last_name: 'Müller' }, { last_name: 'Müller', birth_date: undefined }]) {
      await expect(index.compute(value as never), JSON.stringify(value)).rejects.toThrow(/NULL value has no index/);
    }
    expect(await index.compute(['Müller', new Date(0)])).toMatch(/^[A-Za-z0-9_-]{6}$/);
  });
});
