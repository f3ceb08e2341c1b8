/**
 * The cover of a range query (FORMAT.md §11a.3): the buckets whose union holds every key from
 * `lo` to `hi`, the coarsest that fit inside the range and the finest level's at its edges, at
 * most `max` of them. When the exact cover needs more, the finest level is left out (the next
 * level's buckets cover the edges: more candidates, each opened and dropped), and so on; when even
 * the top level's buckets are more than `max`, the query is refused.
 */
import type { Level } from './search-levels.ts';

export interface Bucket {
  /** The level's index in the index's levels, finest first. */
  readonly level: number;
  readonly bucket: bigint;
}

/** Buckets covering [lo, hi] with levels `finest` and above, or undefined past `max`. */
function coverFrom(levels: readonly Level[], finest: number, lo: bigint, hi: bigint, max: number): Bucket[] | undefined {
  const out: Bucket[] = [];
  const visit = (i: number, a: bigint, z: bigint): boolean => {
    const level = levels[i]!;
    const from = level.bucket(a);
    const to = level.bucket(z);
    if (to - from + 1n > BigInt(max - out.length)) return false;
    for (let b = from; b <= to; b++) {
      const first = level.first(b);
      const last = level.last(b);
      const whole = first >= a && last <= z;
      if (whole || i === finest) {
        if (out.length === max) return false;
        out.push({ level: i, bucket: b });
      } else if (!visit(i - 1, first > a ? first : a, last < z ? last : z)) {
        return false;
      }
    }
    return true;
  };
  return visit(levels.length - 1, lo, hi) ? out : undefined;
}

/** The cover of [lo, hi] in at most `max` buckets; empty when lo > hi. A RangeError when none fits. */
export function rangeCover(levels: readonly Level[], lo: bigint, hi: bigint, max: number): Bucket[] {
  if (lo > hi) return [];
  for (let finest = 0; finest < levels.length; finest++) {
    const cover = coverFrom(levels, finest, lo, hi, max);
    if (cover) return cover;
  }
  throw new RangeError(`the range spans more than ${max} buckets of the coarsest level (${levels[levels.length - 1]!.name}): narrow it, raise "maxQueryTokens", or add a coarser level`);
}

/** The buckets of one key, one per level, finest first (a stored value's). */
export function bucketsOf(levels: readonly Level[], key: bigint): Bucket[] {
  return levels.map((level, i) => ({ level: i, bucket: level.bucket(key) }));
}
