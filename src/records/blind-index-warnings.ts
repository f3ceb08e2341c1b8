/**
 * The warnings a blind index's sizes deserve (README "Blind indexes"): a dictionary of the values,
 * false positives per lookup, false conflicts of a UNIQUE constraint.
 */
import { describe } from '../core/bytes.ts';

/** Sizes the index warnings are computed from (blindIndexWarnings). */
export interface BlindIndexSizing {
  /** Index length in bits, 16 to 256. */
  bits: number;
  /** About how many distinct values the column holds per partition: warns when the index would be a dictionary of them. */
  expectedDistinctValues?: number;
  /** About how many rows per partition: warns when a lookup is expected to match more than one other row. */
  expectedRows?: number;
  /** Whether a UNIQUE constraint will sit on the index column: warns that truncated indexes give false conflicts. */
  unique?: boolean;
}

export interface BlindIndexWarning {
  /**
   * `dictionary`: so few distinct values for the bits that almost none share an index value (the
   * index maps one to one onto the values); `false-positives`: a lookup is expected to match more
   * than one row of another value; `unique-conflicts`: a UNIQUE constraint may refuse distinct values.
   */
  readonly code: 'dictionary' | 'false-positives' | 'unique-conflicts';
  readonly message: string;
}

const MIN_BITS = 16;
const MAX_BITS = 256;

/** Expected rows of another value that match one lookup in a partition of `rows` rows: (rows − 1) / 2^bits. */
export function expectedFalsePositives(bits: number, rows: number): number {
  return Math.max(0, rows - 1) / 2 ** bits;
}

/** The warnings an index of these sizes deserves (the same as createBlindIndex reports). */
export function blindIndexWarnings(sizing: BlindIndexSizing, label = 'blind index'): BlindIndexWarning[] {
  const bits = checkBits(sizing.bits);
  const warnings: BlindIndexWarning[] = [];
  const distinct = sizing.expectedDistinctValues;
  if (distinct !== undefined) {
    checkCount(distinct, 'expectedDistinctValues');
    if (distinct < 2 ** (bits / 2)) {
      const most = Math.floor(2 * Math.log2(Math.max(distinct, 1)));
      warnings.push({
        code: 'dictionary',
        message:
          `${label}: ${bits} bits for about ${distinct} distinct values: below 2^${bits / 2} distinct values almost no two share an ` +
          'index value, so the index column maps one to one onto the values (a dictionary: its frequencies are theirs, and one ' +
          `known row names every row of the same value); ${most >= MIN_BITS ? `at most ${most} bits` : 'no blind index'} would ` +
          'blur it, at the price of more false positives per lookup, and a column this small may be better left unindexed',
      });
    }
  }
  const rows = sizing.expectedRows;
  if (rows !== undefined) {
    checkCount(rows, 'expectedRows');
    const falsePositives = expectedFalsePositives(bits, rows);
    if (falsePositives > 1) {
      warnings.push({
        code: 'false-positives',
        message:
          `${label}: ${bits} bits for about ${rows} rows: each lookup is expected to match about ${round(falsePositives)} rows ` +
          `of other values, each opened and dropped; ${Math.ceil(Math.log2(rows))} bits or more keep it below one`,
      });
    }
  }
  if (sizing.unique) {
    // The chance that two of n distinct values share an index value: 1 - exp(-n(n-1) / 2^(bits+1)).
    const n = rows;
    const conflict = n === undefined ? undefined : -Math.expm1(-(n * (n - 1)) / 2 ** (bits + 1));
    if (conflict === undefined || conflict > 1e-9) {
      warnings.push({
        code: 'unique-conflicts',
        message:
          `${label}: a UNIQUE constraint on a ${bits}-bit index refuses distinct values whose indexes collide (false conflicts` +
          `${conflict === undefined ? '' : `: about ${round(conflict)} chance over ${n} rows`}); enforce uniqueness on a 256-bit ` +
          'index, or treat a conflict as "maybe": open the rows and compare',
      });
    }
  }
  return warnings;
}

function round(x: number): string {
  return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(2)));
}

export function checkBits(bits: unknown): number {
  if (typeof bits !== 'number' || !Number.isInteger(bits) || bits < MIN_BITS || bits > MAX_BITS) {
    throw new RangeError(`"bits" must be an integer from ${MIN_BITS} to ${MAX_BITS}, got ${typeof bits === 'number' ? bits : describe(bits)}`);
  }
  return bits;
}

function checkCount(n: unknown, title: string): void {
  if (typeof n !== 'number' || !(n >= 0) || !Number.isFinite(n)) throw new RangeError(`"${title}" must be a number >= 0`);
}
