/**
 * Open-ended range queries (README "Range and prefix search", FORMAT.md §11a.3): a query with one
 * bound runs to the index's declared bounds, with a cover of at most maxQueryTokens tokens, and
 * agrees with a plaintext comparison (property); values outside the bounds are refused; without
 * bounds an open end whose cover does not fit is refused with ERR_UNSUPPORTED_QUERY.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createSearchIndex, type SearchIndex } from '../../src/records/search-index.ts';
import type { RangeIndexOptions } from '../../src/records/search-options.ts';
import { UnsupportedQueryError } from '../../src/records/unsupported-query.ts';

const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const range = (options: Partial<RangeIndexOptions>): SearchIndex =>
  createSearchIndex({ hierarchy, table: 't', column: 'c', partition: 'acme', kind: 'range', acknowledgeLeakage: 'range', domain: 'integer', levels: [2, 5, 8], ...options } as RangeIndexOptions);

describe('open-ended range queries', () => {
  it('run to the declared bounds: at most maxQueryTokens tokens, never a false negative, the exact filter agrees with plaintext (property)', async () => {
    const index = range({ bounds: { min: -1000, max: 1000 }, maxQueryTokens: 24, bits: 16 });
    await index.warm(['acme']);
    const side = fc.constantFrom('gte', 'gt', 'lte', 'lt', 'none');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 30 }), side, fc.integer({ min: -1100, max: 1100 }), (values, op, at) => {
        const condition = op === 'none' ? {} : { [op]: at };
        const q = index.querySync(condition);
        expect(q.tokens.length).toBeLessThanOrEqual(24);
        const tokens = new Set(q.tokens);
        const meets = (v: number) => (op === 'gte' ? v >= at : op === 'gt' ? v > at : op === 'lte' ? v <= at : op === 'lt' ? v < at : true);
        for (const v of [...values, -1000, 1000]) {
          if (meets(v)) expect(index.tokensSync(v).some((t) => tokens.has(t)), `${v} ${op} ${at}`).toBe(true);
          expect(q.matches(v)).toBe(meets(v));
        }
      }),
      { numRuns: 150 },
    );
    await expect(index.tokens(1001)).rejects.toThrow(/outside the index's bounds/);
    await expect(index.tokens(-1001)).rejects.toThrow(RangeError);
  });

  it('without bounds an open end whose cover does not fit is refused with ERR_UNSUPPORTED_QUERY, naming the missing bound', async () => {
    const index = range({});
    const error = await index.query({ gte: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedQueryError);
    expect(error).toMatchObject({ code: 'ERR_UNSUPPORTED_QUERY', operator: 'a range with no upper bound' });
    expect((error as Error).message).toMatch(/declare the column's bounds/);
    await expect(index.query({ lt: 5 })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_QUERY', operator: 'a range with no lower bound' });
    await expect(index.query({ gte: 0, lte: 2 ** 20 })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_QUERY', operator: 'a range this wide' });
    expect((await index.query({ gte: 0, lte: 2000 })).tokens.length).toBeLessThanOrEqual(64);
  });

  it('dates: after a day, up to the declared last date, in months and years', async () => {
    const index = range({ domain: 'date', levels: ['day', 'month', 'year'], bounds: { min: new Date(Date.UTC(2000, 0, 1)), max: new Date(Date.UTC(2039, 11, 31)) } });
    const q = await index.query({ gte: new Date(Date.UTC(2024, 2, 15)) });
    expect(q.tokens.length).toBeLessThanOrEqual(64);
    expect(q.matches(new Date(Date.UTC(2030, 0, 1)))).toBe(true);
    await expect(range({ domain: 'date', levels: ['day', 'month', 'year'] }).query({ gte: new Date(Date.UTC(2024, 2, 15)) })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_QUERY' });
    expect(() => range({ bounds: { min: 5, max: 4 } })).toThrow(/greater than/);
    expect(() => range({ bounds: { min: 1.5 } })).toThrow(TypeError);
  });
});
