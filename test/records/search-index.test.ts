/**
 * Range and prefix indexes without a database (FORMAT.md §11a): the cover of a range is exact and
 * bounded (property tests over random levels, keys and ranges), the exact filter agrees with a
 * plaintext comparison, prefix tokens are a fixed number per value, the acknowledgement and the
 * refusals; and what the README's leakage table says a snapshot of tokens reveals, reproduced.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { defineTable } from '../../src/records/records.ts';
import { bucketsOf, rangeCover } from '../../src/records/search-cover.ts';
import { createSearchIndex, type SearchIndex } from '../../src/records/search-index.ts';
import { domainBounds, float64Key, rangeKey, resolveLevels } from '../../src/records/search-levels.ts';
import type { SearchIndexOptions } from '../../src/records/search-options.ts';
import { hmacSm3Tokens } from '../../src/sm4/search-mac.ts';

const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const index = (options: Partial<SearchIndexOptions> & Pick<SearchIndexOptions, 'kind'>): SearchIndex =>
  createSearchIndex({ hierarchy, table: 't', column: 'c', partition: 'acme', acknowledgeLeakage: options.kind, ...options } as SearchIndexOptions);

const widths = fc.uniqueArray(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 4 }).map((a) => a.sort((x, y) => x - y));

describe('range cover (FORMAT.md §11a.3)', () => {
  it("A query's cover MUST hold every key from lo to hi: only buckets that meet it, and at most maxQueryTokens of them (property)", () => {
    fc.assert(
      fc.property(widths, fc.bigInt({ min: 0n, max: 1n << 24n }), fc.bigInt({ min: 0n, max: 1n << 22n }), fc.integer({ min: 4, max: 80 }), (w, lo, span, max) => {
        const levels = resolveLevels('integer', w, 0);
        const hi = lo + span;
        let cover;
        try {
          cover = rangeCover(levels, lo, hi, max);
        } catch (error) {
          // Refused only when even the coarsest level needs more buckets than allowed.
          expect(levels.at(-1)!.bucket(hi) - levels.at(-1)!.bucket(lo) + 1n).toBeGreaterThan(BigInt(max));
          expect(error).toBeInstanceOf(RangeError);
          return;
        }
        expect(cover.length).toBeLessThanOrEqual(max);
        const spans = cover.map((b) => [levels[b.level]!.first(b.bucket), levels[b.level]!.last(b.bucket)] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));
        // Disjoint, contiguous, and together from at most lo to at least hi.
        expect(spans[0]![0] <= lo && spans.at(-1)![1] >= hi).toBe(true);
        for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBe(spans[i - 1]![1] + 1n);
        for (const [a, z] of spans) expect(z >= lo && a <= hi).toBe(true);
        // A cover that uses the finest level used it at both edges: with a finest level of one value, it is exact.
        if (w[0] === 0 && cover.some((b) => b.level === 0)) expect([spans[0]![0], spans.at(-1)![1]]).toEqual([lo, hi]);
      }),
      { numRuns: 300 },
    );
  });

  it('states its maximum: for levels w0 < … < wk, 2·Σ(2^(w(i+1)−wi) − 1) buckets plus the top-level buckets, when that fits', () => {
    const levels = resolveLevels('integer', [0, 4, 8], 0);
    let most = 0;
    for (let lo = 0n; lo < 300n; lo += 7n) for (let hi = lo; hi < lo + 1200n; hi += 13n) most = Math.max(most, rangeCover(levels, lo, hi, 4096).length);
    const top = 1200 / 256 + 2;
    expect(most).toBeLessThanOrEqual(2 * 15 + 2 * 15 + top);
    expect(most).toBeGreaterThan(2 * 15 + 2 * 15 - 4); // the bound is nearly reached
  });

  it('date levels nest: day in month in year, in UTC, for years 0-99 too', () => {
    const levels = resolveLevels('date', ['day', 'month', 'year'], 0);
    fc.assert(
      fc.property(fc.integer({ min: -62_000_000_000_000, max: 4_000_000_000_000 }), (ms) => {
        const key = BigInt(ms);
        for (const level of levels) {
          const b = level.bucket(key);
          expect(level.first(b) <= key && key <= level.last(b)).toBe(true);
          expect(level.bucket(level.first(b))).toBe(b);
          expect(level.bucket(level.last(b) + 1n)).toBe(b + 1n);
        }
        expect(new Date(Number(levels[1]!.first(levels[1]!.bucket(key)))).getUTCDate()).toBe(1);
      }),
      { numRuns: 300 },
    );
  });
});

describe('range keys (FORMAT.md §11a.2)', () => {
  it('keep the order of integers, bigints, decimals, Dates and float64 (property)', () => {
    const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
    fc.assert(
      fc.property(fc.double({ noNaN: true }), fc.double({ noNaN: true }), (a, b) => {
        expect(cmp(float64Key(a), float64Key(b))).toBe(a < b ? -1 : a > b ? 1 : 0);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (a, b) => {
        expect(cmp(rangeKey('integer', a, 0, 'v'), rangeKey('integer', b, 0, 'v'))).toBe(cmp(a, b));
        const da = `${a / 100n}.${String((a < 0n ? -a : a) % 100n).padStart(2, '0')}`;
        const unscaledA = rangeKey('decimal', a < 0n && a > -100n ? `-${da.replace('-', '')}` : da, 2, 'v');
        expect(unscaledA).toBe(rangeKey('integer', a, 0, 'v'));
      }),
      { numRuns: 300 },
    );
    expect(() => rangeKey('integer', 2n ** 63n, 0, 'v')).toThrow(RangeError);
    expect(() => rangeKey('integer', 1.5, 0, 'v')).toThrow(TypeError);
    expect(() => rangeKey('decimal', '1.005', 2, 'v')).toThrow(RangeError);
    expect(() => rangeKey('float64', Number.NaN, 0, 'v')).toThrow(TypeError);
    expect(domainBounds('integer')).toEqual([0n, 2n ** 64n - 1n]);
  });
});

describe('range and prefix indexes', () => {
  it('a query and the exact filter agree with a plaintext comparison, boundaries included (property)', async () => {
    const range = index({ kind: 'range', domain: 'integer', levels: [1, 4, 8], bits: 16 });
    await range.warm(['acme']);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -600, max: 600 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: -700, max: 700 }), fc.integer({ min: 0, max: 400 }), fc.boolean(), fc.boolean(), (values, lo, span, gt, lt) => {
        const condition = { [gt ? 'gt' : 'gte']: lo, [lt ? 'lt' : 'lte']: lo + span };
        const q = range.querySync(condition);
        const tokens = new Set(q.tokens);
        for (const v of values) {
          const expected = (gt ? v > lo : v >= lo) && (lt ? v < lo + span : v <= lo + span);
          const candidate = range.tokensSync(v).some((t) => tokens.has(t));
          if (expected) expect(candidate, `${v} in ${JSON.stringify(condition)}`).toBe(true); // never a false negative
          expect(q.matches(v)).toBe(expected);
          expect(range.matches(v, condition)).toBe(expected);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('An implementation MUST write exactly maxLength − minLength + 1 tokens for every value: whatever its length, and finds every value that starts with the term (property)', async () => {
    const prefix = index({ kind: 'prefix', minLength: 1, maxLength: 4, normalize: ['casefold'], bits: 20 });
    await prefix.warm(['acme']);
    fc.assert(
      fc.property(fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'B', 'é', '😀'), maxLength: 7 }), { minLength: 1, maxLength: 20 }), fc.string({ unit: fc.constantFrom('a', 'b', 'é', '😀'), minLength: 1, maxLength: 6 }), (values, term) => {
        const q = prefix.querySync({ startsWith: term });
        expect(q.tokens).toHaveLength(1);
        for (const v of values) {
          const tokens = prefix.tokensSync(v);
          expect(tokens).toHaveLength(4);
          const expected = v.toLowerCase().startsWith(term.toLowerCase());
          if (expected) expect(tokens).toContain(q.tokens[0]);
          expect(q.matches(v)).toBe(expected);
        }
      }),
      { numRuns: 150 },
    );
    expect(() => prefix.querySync({ startsWith: '' })).toThrow(RangeError);
  });

  it('HMAC-SM3 tokens differ from HMAC-SHA-256 tokens of the same index, and a new version changes every token', async () => {
    const sha = index({ kind: 'range', domain: 'integer', levels: [0, 8] });
    const sm3 = index({ kind: 'range', domain: 'integer', levels: [0, 8], mac: hmacSm3Tokens });
    const v2 = index({ kind: 'range', domain: 'integer', levels: [0, 8], version: 2 });
    const [a, b, c] = [await sha.tokens(42), await sm3.tokens(42), await v2.tokens(42)];
    expect(a.filter((t) => b.includes(t) || c.includes(t))).toEqual([]);
    expect(sm3.mac).toBe('HMAC-SM3');
  });

  it('a day token never equals the blind index or another kind of the same value: table, column, kind and level are in the derivation', async () => {
    const day = index({ kind: 'range', domain: 'date', levels: ['day'] });
    const other = createSearchIndex({ hierarchy, table: 't2', column: 'c', partition: 'acme', kind: 'range', acknowledgeLeakage: 'range', domain: 'date', levels: ['day'] });
    const d = new Date(Date.UTC(2024, 0, 1));
    expect(await day.tokens(d)).not.toEqual(await other.tokens(d));
    const month = index({ kind: 'range', domain: 'date', levels: ['month'] });
    expect(await day.tokens(d)).not.toEqual(await month.tokens(d));
  });
});

describe('acknowledgement, refusals and warnings', () => {
  it('An implementation MUST refuse a value outside its domain: a fraction or 2^63 for integer, more places than the scale, NaN, an invalid Date', async () => {
    const integer = index({ kind: 'range', domain: 'integer', levels: [4] });
    const decimal = index({ kind: 'range', domain: 'decimal', scale: 2, levels: [4] });
    const float = index({ kind: 'range', domain: 'float64', levels: [40] });
    const date = index({ kind: 'range', domain: 'date', levels: ['day'] });
    await expect(integer.tokens(1.5)).rejects.toThrow(TypeError);
    await expect(integer.tokens(2n ** 63n)).rejects.toThrow(RangeError);
    await expect(integer.tokens('1')).rejects.toThrow(TypeError);
    await expect(decimal.tokens('1.005')).rejects.toThrow(RangeError);
    await expect(decimal.tokens('1e3')).rejects.toThrow(TypeError);
    await expect(float.tokens(Number.NaN)).rejects.toThrow(TypeError);
    await expect(date.tokens(new Date(Number.NaN))).rejects.toThrow(TypeError);
    expect(await integer.tokens(2n ** 63n - 1n)).toHaveLength(1);
  });

  it('an index without acknowledgeLeakage naming its kind is refused', () => {
    expect(() => createSearchIndex({ hierarchy, table: 't', column: 'c', kind: 'range', domain: 'integer', levels: [0] } as never)).toThrow(/acknowledgeLeakage: "range"/);
    expect(() => createSearchIndex({ hierarchy, table: 't', column: 'c', kind: 'prefix', acknowledgeLeakage: 'range', minLength: 1, maxLength: 3 } as never)).toThrow(/acknowledgeLeakage: "prefix"/);
    const spec = { name: 't', partition: 'p', columns: { amount: { type: 'bigint', search: { kind: 'range', column: 'x', levels: [0] } } } };
    expect(() => defineTable(spec as never)).toThrow(/acknowledgeLeakage/);
  });

  it.each([
    ['ope', /order-preserving encryption/],
    ['ORE', /order-revealing/],
    ['deterministic', /deterministic field encryption/],
    ['sha256', /unkeyed hash/],
  ])('kind %s is refused, saying why', (kind, why) => {
    expect(() => createSearchIndex({ hierarchy, table: 't', column: 'c', kind, acknowledgeLeakage: kind } as never)).toThrow(why);
    expect(() => defineTable({ name: 't', partition: 'p', columns: { a: { type: 'bigint', search: { kind, column: 'x', acknowledgeLeakage: kind } } } } as never)).toThrow(/refused/);
  });

  it('a MAC given as a hash name is refused as an unkeyed hash', () => {
    expect(() => index({ kind: 'range', domain: 'integer', levels: [0], mac: 'sha256' as never })).toThrow(/unkeyed hash/);
  });

  it('warns of a dictionary: a finest level of one value, a maxLength as long as the values', () => {
    const seen: string[] = [];
    index({ kind: 'range', domain: 'integer', levels: [0, 8], onWarning: (w) => seen.push(w.code) });
    expect(index({ kind: 'range', domain: 'integer', levels: [4, 8] }).warnings).toEqual([]);
    expect(seen).toEqual(['dictionary']);
    expect(index({ kind: 'prefix', minLength: 1, maxLength: 8 }).warnings.map((w) => w.code)).toEqual(['dictionary']);
    expect(index({ kind: 'prefix', minLength: 1, maxLength: 4, expectedValueLength: 20 }).warnings).toEqual([]);
  });
});

describe('leakage of a snapshot (README "Range and prefix search")', () => {
  it('range: rows share the token of a level exactly when their values share its bucket, so the coarse tokens sort rows into ordered groups', async () => {
    const range = index({ kind: 'range', domain: 'integer', levels: [4, 8], bits: 32 });
    const levels = resolveLevels('integer', [4, 8], 0);
    const values = Array.from({ length: 200 }, (_, i) => (i * 37) % 1000);
    const stored = await Promise.all(values.map((v) => range.tokens(v)));
    // The attacker groups rows by shared tokens, knowing nothing else.
    for (let i = 0; i < values.length; i += 11) {
      for (let j = 0; j < values.length; j += 7) {
        const shared = stored[i]!.filter((t) => stored[j]!.includes(t)).length;
        const buckets = bucketsOf(levels, rangeKey('integer', values[i], 0, 'v')).filter((b, k) => b.bucket === bucketsOf(levels, rangeKey('integer', values[j], 0, 'v'))[k]!.bucket).length;
        expect(shared).toBe(buckets);
      }
    }
    // And a query reveals which groups it covers: the rows it finds are the rows of its buckets.
    const q = await range.query({ gte: 256, lte: 511 });
    const found = values.filter((_, i) => stored[i]!.some((t) => q.tokens.includes(t)));
    expect(new Set(found.map((v) => v >> 8))).toEqual(new Set([1]));
    expect(found.length).toBe(values.filter((v) => v >= 256 && v <= 511).length);
  });

  it('prefix: two rows share exactly as many tokens as their common prefix has lengths from minLength to maxLength, and every row has the same number of tokens', async () => {
    const prefix = index({ kind: 'prefix', minLength: 2, maxLength: 5, bits: 32 });
    const words = ['alice', 'alicia', 'alfred', 'al', 'bob', 'albert', 'ali'];
    const stored = await Promise.all(words.map((w) => prefix.tokens(w)));
    expect(new Set(stored.map((s) => s.length))).toEqual(new Set([4]));
    const common = (a: string, b: string) => {
      let n = 0;
      while (n < a.length && a[n] === b[n]) n++;
      return n;
    };
    for (const [i, a] of words.entries()) {
      for (const [j, b] of words.entries()) {
        const shared = stored[i]!.filter((t) => stored[j]!.includes(t)).length;
        expect(shared, `${a} ${b}`).toBe(a === b ? 4 : Math.max(0, Math.min(common(a, b), 5) - 1));
      }
    }
  });
});
