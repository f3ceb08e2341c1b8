/**
 * The opt-in n-gram index for `contains` (FORMAT.md §11a.7) without a database: a query and its
 * candidates agree with a plaintext `includes` (property), every value has the same number of
 * tokens, the acknowledgement, the limits and the warning; and the length a snapshot still
 * reveals (README "Range and prefix search"), reproduced.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { defineTable } from '../../src/records/records.ts';
import { distinctGrams } from '../../src/records/search-grams.ts';
import { createSearchIndex, type SearchIndex } from '../../src/records/search-index.ts';
import type { ContainsIndexOptions } from '../../src/records/search-options.ts';

const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const contains = (options: Partial<ContainsIndexOptions> = {}): SearchIndex =>
  createSearchIndex({ hierarchy, table: 't', column: 'note', partition: 'acme', kind: 'contains', acknowledgeLeakage: 'contains', minLength: 3, maxLength: 12, ...options });

describe('contains index (FORMAT.md §11a.7)', () => {
  it('An implementation MUST write exactly M − n + 1 tokens for every value, every distinct gram once and pad messages for the rest, and MUST refuse a value of more than M code points: a value holds every token of a term it includes, and the exact filter is includes (property)', async () => {
    const index = contains({ minLength: 2, maxLength: 9, normalize: ['casefold'], bits: 20 });
    await index.warm(['acme']);
    const text = (min: number, max: number) => fc.string({ unit: fc.constantFrom('a', 'b', 'B', 'é', '😀'), minLength: min, maxLength: max });
    fc.assert(
      fc.property(fc.array(text(0, 9), { minLength: 1, maxLength: 15 }), text(2, 6), (values, term) => {
        const q = index.querySync({ contains: term });
        expect(q.match).toBe('all');
        for (const v of values) {
          const tokens = index.tokensSync(v);
          expect(tokens).toHaveLength(8);
          const expected = v.toLowerCase().includes(term.toLowerCase());
          if (expected) for (const t of q.tokens) expect(tokens, `${v} ⊇ ${term}`).toContain(t); // never a false negative
          expect(q.matches(v)).toBe(expected);
        }
      }),
      { numRuns: 120 },
    );
    expect(() => index.tokensSync('a'.repeat(10))).toThrow(RangeError);
  });

  it('a query is the distinct grams of its term; a term shorter than the gram, or a value longer than maxLength, is refused', async () => {
    const index = contains();
    expect((await index.query({ contains: 'abcabc' })).tokens).toHaveLength(3); // abc, bca, cab
    expect(index.tokensPerValue).toBe(10);
    await expect(index.query({ contains: 'ab' })).rejects.toThrow(/at least 3 characters/);
    await expect(index.tokens('x'.repeat(13))).rejects.toThrow(/at most 12 \(maxLength\)/);
    expect(await index.tokens('x'.repeat(12))).toHaveLength(10);
    expect(await index.tokens('')).toHaveLength(10); // dummies only
    await expect(index.query({ contains: 'abc', startsWith: 'a' } as never)).rejects.toThrow(TypeError);
  });

  it('needs acknowledgeLeakage: "contains", warns of a dictionary, and is its own key: no token equals a prefix token', async () => {
    expect(() => createSearchIndex({ hierarchy, table: 't', column: 'note', kind: 'contains', acknowledgeLeakage: 'prefix', minLength: 3, maxLength: 8 } as never)).toThrow(/acknowledgeLeakage: "contains"/);
    expect(() => defineTable({ name: 't', partition: 'p', columns: { n: { type: 'string', search: { kind: 'contains', column: 'x', minLength: 3, maxLength: 9 } } } } as never)).toThrow(/acknowledgeLeakage/);
    expect(() => defineTable({ name: 't', partition: 'p', columns: { n: { type: 'number', search: { kind: 'contains', acknowledgeLeakage: 'contains', column: 'x', minLength: 3, maxLength: 9 } } } } as never)).toThrow(/string columns/);
    expect(() => contains({ minLength: 1 })).toThrow(RangeError);
    expect(() => contains({ minLength: 3, maxLength: 259 })).toThrow(RangeError);
    expect(contains({ minLength: 5 }).warnings.map((w) => w.code)).toEqual(['dictionary']);
    expect(contains({ minLength: 3, expectedValueLength: 30 }).warnings).toEqual([]);
    const prefix = createSearchIndex({ hierarchy, table: 't', column: 'note', partition: 'acme', kind: 'prefix', acknowledgeLeakage: 'prefix', minLength: 3, maxLength: 3 });
    expect((await contains().tokens('abc')).filter((t) => t === (prefix.querySync({ startsWith: 'abc' }).tokens[0]))).toEqual([]);
  });
});

describe('leakage of a contains snapshot (README "Range and prefix search")', () => {
  it("every row has the same number of tokens, yet counting a row's tokens that other rows share estimates its number of distinct grams, and so its length", async () => {
    const index = contains({ minLength: 3, maxLength: 16, bits: 32 });
    const words = ['banana', 'bandana', 'cabana', 'nab', 'ananas', 'canal', 'panama', 'analog', 'lana', 'anal', 'banal', 'canada'];
    const stored = await Promise.all(words.map((w) => index.tokens(w)));
    expect(new Set(stored.map((s) => s.length))).toEqual(new Set([14]));
    const count = new Map<number, number>();
    for (const s of stored) for (const t of new Set(s)) count.set(t, (count.get(t) ?? 0) + 1);
    // The attacker's estimate: tokens seen in another row are grams (dummies are one row's own).
    for (const [i, w] of words.entries()) {
      const grams = distinctGrams(Array.from(w), 3);
      const shared = stored[i]!.filter((t) => count.get(t)! > 1).length;
      const gramsShared = grams.filter((g) => words.some((o, j) => j !== i && o.includes(g))).length;
      expect(shared, w).toBe(gramsShared);
      expect(shared, w).toBeLessThanOrEqual(grams.length);
    }
    // And two rows share exactly their common grams: "banana" and "cabana" share "ban", "ana".
    const common = stored[0]!.filter((t) => stored[2]!.includes(t));
    expect(common).toHaveLength(2);
  });
});
