/**
 * What the README's leakage table says a snapshot and a query reveal of a range index, reproduced
 * as an attacker would: frequency analysis of a finest level of one value, the linking of repeated
 * queries, shared days, months and years; and the warning of an index close to a dictionary.
 */
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createSearchIndex, type SearchIndex } from '../../src/records/search-index.ts';
import type { RangeIndexOptions } from '../../src/records/search-options.ts';

const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const range = (options: Partial<RangeIndexOptions>): SearchIndex =>
  createSearchIndex({ hierarchy, table: 't', column: 'c', partition: 'acme', kind: 'range', acknowledgeLeakage: 'range', domain: 'integer', levels: [0, 8], bits: 32, ...options } as RangeIndexOptions);

const histogram = <T>(items: readonly T[]): Map<T, number> => {
  const out = new Map<T, number>();
  for (const x of items) out.set(x, (out.get(x) ?? 0) + 1);
  return out;
};

describe('leakage of a range index (README "Range and prefix search")', () => {
  it('a finest level of one value: an attacker who knows the distribution maps the most frequent finest token to the most frequent value', async () => {
    const index = range({});
    // Ages with a known, skewed distribution: 30 many times, 41 fewer, 65 rarely.
    const values = [...Array(40).fill(30), ...Array(25).fill(41), ...Array(9).fill(65), 17, 88];
    const stored = await Promise.all(values.map((v) => index.tokens(v)));
    // The attacker sees token sets only; the token every row holds alone is the finest one.
    const counts = histogram(stored.flat());
    const finest = stored.map((s) => s.reduce((best, t) => (counts.get(t)! < counts.get(best)! ? t : best)));
    const ranked = [...histogram(finest).entries()].sort((a, b) => b[1] - a[1]);
    expect(ranked.map(([, n]) => n)).toEqual([40, 25, 9, 1, 1]);
    // Guessing "the most frequent token is 30" names every row holding 30, and only those.
    const guessed = values.filter((_, i) => finest[i] === ranked[0]![0]);
    expect(guessed).toEqual(Array(40).fill(30));
  });

  it('a query is linkable: the same range, or one whose bounds differ within a finest bucket, gives the same tokens', async () => {
    const index = range({ levels: [4, 8] });
    const [a, b, c] = [await index.query({ gte: 100, lt: 300 }), await index.query({ gte: 100, lt: 300 }), await index.query({ gte: 101, lt: 300 })];
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).toEqual(a.tokens); // a bound moved within a finest bucket: the same query to the database
    expect((await index.query({ gte: 100, lt: 400 })).tokens).not.toEqual(a.tokens);
  });

  it('dates: rows share the day, month and year tokens exactly when they share the day, month or year', async () => {
    const index = range({ domain: 'date', levels: ['day', 'month', 'year'] });
    const at = (y: number, m: number, d: number, h = 0) => new Date(Date.UTC(y, m, d, h));
    const [x, sameDay, sameMonth, sameYear, other] = await Promise.all([at(2024, 4, 3, 1), at(2024, 4, 3, 23), at(2024, 4, 20), at(2024, 0, 1), at(2025, 4, 3)].map((d) => index.tokens(d)));
    const shared = (p: number[], q: number[]) => p.filter((t) => q.includes(t)).length;
    expect([shared(x!, sameDay!), shared(x!, sameMonth!), shared(x!, sameYear!), shared(x!, other!)]).toEqual([3, 2, 1, 0]);
  });

  it('warns of a dictionary when fewer than two expected distinct values fall in each finest bucket between the bounds', () => {
    const bounds = { min: 0, max: 4095 };
    expect(range({ levels: [4, 8], bounds, expectedDistinctValues: 300 }).warnings.map((w) => w.code)).toEqual(['dictionary']); // 256 buckets
    expect(range({ levels: [4, 8], bounds, expectedDistinctValues: 600 }).warnings).toEqual([]);
    expect(range({ levels: [4, 8], expectedDistinctValues: 300 }).warnings).toEqual([]); // no bounds: the spread is unknown
    const dates = range({ domain: 'date', levels: ['day', 'year'], bounds: { min: new Date(Date.UTC(2024, 0, 1)), max: new Date(Date.UTC(2024, 11, 31)) }, expectedDistinctValues: 500 });
    expect(dates.warnings[0]?.message).toMatch(/366 buckets of the finest level \(date\/day\)/);
    expect(() => range({ expectedDistinctValues: 0 })).toThrow(RangeError);
  });
});
