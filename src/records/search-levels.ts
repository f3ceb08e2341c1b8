/**
 * The ordered domains of range indexes (FORMAT.md §11a.2) and their levels: a value becomes a key
 * (a bigint whose order is the value's), and each level cuts keys into buckets that nest in the
 * next level's. Integers, decimals and float64 keys are u64 (the value + 2^63, or the float's
 * bits in an order-preserving map); Dates are milliseconds, cut into UTC days, months and years.
 */
import { describe, isBytes } from '../core/bytes.ts';
import { isDate } from './blind-index-values.ts';

export type RangeDomain = 'integer' | 'decimal' | 'date' | 'float64';
export type DateLevel = 'day' | 'month' | 'year';
/** A value a range index takes: an integer (number or bigint), a decimal string, a Date, or a float64 number. */
export type RangeValue = number | bigint | string | Date;

export interface Level {
  /** Bound into every token of the level: `integer/2^8`, `decimal(2)/2^0`, `float64/2^40`, `date/day`. */
  readonly name: string;
  bucket(key: bigint): bigint;
  first(bucket: bigint): bigint;
  last(bucket: bigint): bigint;
}

const TWO_63 = 1n << 63n;
const U64 = (1n << 64n) - 1n;
const DAY_MS = 86_400_000n;
const MAX_DATE_MS = 8_640_000_000_000_000n;

const floorDiv = (a: bigint, b: bigint): bigint => (a >= 0n ? a / b : -((-a + b - 1n) / b));

function widthLevel(domain: string, width: number): Level {
  const w = BigInt(width);
  return Object.freeze({
    name: `${domain}/2^${width}`,
    bucket: (key: bigint) => key >> w,
    first: (b: bigint) => b << w,
    last: (b: bigint) => ((b + 1n) << w) - 1n,
  });
}

/** ms of the first instant of UTC month `m` (0-11) of year `y`, for any year a Date holds. */
function monthStart(y: bigint, m: bigint): bigint {
  const d = new Date(0);
  d.setUTCFullYear(Number(y), Number(m), 1); // Date.UTC would read years 0-99 as 1900-1999
  return BigInt(d.getTime());
}

function utcYearMonth(ms: bigint): [bigint, bigint] {
  const d = new Date(Number(ms));
  return [BigInt(d.getUTCFullYear()), BigInt(d.getUTCMonth())];
}

const DATE_LEVELS: Record<DateLevel, Level> = {
  day: Object.freeze({ name: 'date/day', bucket: (ms: bigint) => floorDiv(ms, DAY_MS), first: (b: bigint) => b * DAY_MS, last: (b: bigint) => (b + 1n) * DAY_MS - 1n }),
  month: Object.freeze({
    name: 'date/month',
    bucket: (ms: bigint) => {
      const [y, m] = utcYearMonth(ms);
      return y * 12n + m;
    },
    first: (b: bigint) => monthStart(floorDiv(b, 12n), b - floorDiv(b, 12n) * 12n),
    last: (b: bigint) => monthStart(floorDiv(b + 1n, 12n), b + 1n - floorDiv(b + 1n, 12n) * 12n) - 1n,
  }),
  year: Object.freeze({ name: 'date/year', bucket: (ms: bigint) => utcYearMonth(ms)[0], first: (y: bigint) => monthStart(y, 0n), last: (y: bigint) => monthStart(y + 1n, 0n) - 1n }),
};
const DATE_ORDER: readonly DateLevel[] = ['day', 'month', 'year'];

/** The domain's name in level names: `integer`, `decimal(s)`, `float64`, `date`. */
function domainLabel(domain: RangeDomain, scale: number): string {
  return domain === 'decimal' ? `decimal(${scale})` : domain;
}

/** The levels of an index, checked: finest first, each nesting in the next. */
export function resolveLevels(domain: RangeDomain, levels: unknown, scale: number): readonly Level[] {
  if (!Array.isArray(levels) || levels.length < 1 || levels.length > 8) throw new TypeError(`"levels" expected 1 to 8 levels, finest first, got ${describe(levels)}`);
  if (domain === 'date') {
    let at = -1;
    return Object.freeze(
      levels.map((l: unknown) => {
        const i = DATE_ORDER.indexOf(l as DateLevel);
        if (i <= at) throw new TypeError(`"levels" of a date index are "day", "month", "year" (each at most once, finest first), got ${describe(levels)}`);
        at = i;
        return DATE_LEVELS[l as DateLevel];
      }),
    );
  }
  let previous = -1;
  return Object.freeze(
    levels.map((w: unknown) => {
      if (typeof w !== 'number' || !Number.isInteger(w) || w <= previous || w > 63) {
        throw new TypeError(`"levels" of a ${domain} index are bucket widths as powers of two (0 to 63, increasing: [0, 8, 16] is 1, 256 and 65536 values), got ${describe(levels)}`);
      }
      previous = w;
      return widthLevel(domainLabel(domain, scale), w);
    }),
  );
}

const DECIMAL = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;

/** The unscaled integer of a decimal string at `scale`, or a RangeError (more digits than the scale, or not a decimal). */
export function unscaled(value: string, scale: number, where: string): bigint {
  const m = DECIMAL.exec(value);
  if (!m) throw new TypeError(`${where} expected a decimal string such as "-12.50", got ${JSON.stringify(value.slice(0, 40))}`);
  const fraction = m[3] ?? '';
  if (fraction.length > scale) throw new RangeError(`${where} has ${fraction.length} decimal places; the column's scale is ${scale}`);
  const n = BigInt(m[2]! + fraction.padEnd(scale, '0'));
  return m[1] ? -n : n;
}

function signedKey(n: bigint, where: string): bigint {
  if (n < -TWO_63 || n >= TWO_63) throw new RangeError(`${where} is outside the signed 64-bit range of a range index`);
  return n + TWO_63;
}

/** The u64 of a float64 whose unsigned order is the numbers' order (−0 as 0; NaN refused). */
export function float64Key(x: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x === 0 ? 0 : x);
  const bits = view.getBigUint64(0);
  return bits & TWO_63 ? ~bits & U64 : bits | TWO_63;
}

/** The key of a value in a domain: its order is the values' order. A TypeError or RangeError for a value the domain does not hold. */
export function rangeKey(domain: RangeDomain, value: unknown, scale: number, where: string): bigint {
  switch (domain) {
    case 'integer':
      if (typeof value === 'bigint') return signedKey(value, where);
      if (typeof value === 'number' && Number.isSafeInteger(value)) return signedKey(BigInt(value), where);
      throw new TypeError(`${where} expected a safe integer or a bigint, got ${typeof value === 'number' ? String(value) : describe(value)}`);
    case 'decimal':
      if (typeof value !== 'string') throw new TypeError(`${where} expected a decimal string, got ${describe(value)}`);
      return signedKey(unscaled(value, scale, where), where);
    case 'float64':
      if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${where} expected a number other than NaN, got ${describe(value)}`);
      return float64Key(value);
    case 'date': {
      const ms = isDate(value) ? Date.prototype.getTime.call(value) : Number.NaN;
      if (!Number.isInteger(ms) || isBytes(value)) throw new TypeError(`${where} expected a valid Date, got ${describe(value)}`);
      return BigInt(ms);
    }
  }
}

/** The smallest and largest key of a domain (the bounds of an open-ended query). */
export function domainBounds(domain: RangeDomain): [bigint, bigint] {
  return domain === 'date' ? [-MAX_DATE_MS, MAX_DATE_MS] : [0n, U64];
}
