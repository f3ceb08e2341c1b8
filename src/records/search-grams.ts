/**
 * The n-grams of a contains index (FORMAT.md §11a.7): a value's distinct substrings of n code
 * points, then dummies up to a fixed count, so that the number of tokens does not tell how many
 * distinct grams (or code points) a value has; a query is every distinct gram of its term, and a
 * candidate must hold all of them.
 */
import { gramMessage, gramPadMessage } from './search-tokens.ts';

/** The distinct n-grams of a string's code points, in order of first occurrence. */
export function distinctGrams(points: readonly string[], n: number): string[] {
  const grams = new Set<string>();
  for (let i = 0; i + n <= points.length; i++) grams.add(points.slice(i, i + n).join(''));
  return [...grams];
}

/** A value's messages: its distinct grams, then dummies for slots k+1 … count. A RangeError past maxLength code points. */
export function containsValueMessages(text: string, n: number, maxLength: number, where: string): Uint8Array[] {
  const points = Array.from(text);
  if (points.length > maxLength) throw new RangeError(`${where} has ${points.length} characters (after normalisation); its contains index takes values of at most ${maxLength} (maxLength)`);
  const count = maxLength - n + 1;
  const messages = distinctGrams(points, n).map((g) => gramMessage(n, g));
  for (let i = messages.length + 1; i <= count; i++) messages.push(gramPadMessage(n, i, text));
  return messages;
}

/**
 * A query's messages: the distinct grams of the term's first maxLength code points (a longer term
 * is in no value; its first maxLength keep the query at most maxLength − n + 1 tokens). A
 * RangeError when the term is shorter than n.
 */
export function containsQueryMessages(term: string, n: number, maxLength: number, where: string): Uint8Array[] {
  const points = Array.from(term);
  if (points.length < n) throw new RangeError(`a contains query of ${where} needs at least ${n} characters (after normalisation), got ${points.length}`);
  return distinctGrams(points.slice(0, maxLength), n).map((g) => gramMessage(n, g));
}
