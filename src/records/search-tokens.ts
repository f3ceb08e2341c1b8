/**
 * The bytes of search tokens (FORMAT.md §11a): the HKDF info of a column key, the MAC messages of
 * range buckets, prefixes, n-grams and the dummy tokens that pad a value's prefixes or grams to a
 * fixed count, and a token
 * from a MAC (its first `bits` bits, an unsigned integer below 2^52).
 */
import { utf8 } from '../core/bytes.ts';
import { lengthPrefixed } from './blind-index-keys.ts';

const INFO_LABEL = 'kms-envelope/search-token@v1+';
const U64 = (1n << 64n) - 1n;

export type SearchKind = 'range' | 'prefix' | 'contains';

const u32 = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** label || MAC name || 0x00 || table || column || kind || partition, the last four u16-length-prefixed. */
export function searchInfo(macName: string, table: string, column: string, kind: SearchKind, partition: string): Uint8Array {
  return concat([utf8(`${INFO_LABEL}${macName}\0`, 'info'), lengthPrefixed(table, 'table'), lengthPrefixed(column, 'column'), lengthPrefixed(kind, 'kind'), lengthPrefixed(partition, 'partition')]);
}

/** A range token's message: the level's name, then the bucket mod 2^64 as 8 bytes big-endian. */
export function rangeMessage(levelName: string, bucket: bigint): Uint8Array {
  const out = new Uint8Array(2 + levelName.length + 8);
  out.set(lengthPrefixed(levelName, 'level'));
  new DataView(out.buffer).setBigUint64(2 + levelName.length, bucket & U64);
  return out;
}

/** A prefix token's message: "prefix", then the prefix's UTF-8. */
export function prefixMessage(prefix: string): Uint8Array {
  return concat([lengthPrefixed('prefix', 'level'), utf8(prefix, 'prefix')]);
}

/** A dummy token's message, for a prefix length `n` longer than the value: "prefix-pad", u32 n, the whole value's UTF-8. */
export function padMessage(n: number, value: string): Uint8Array {
  return concat([lengthPrefixed('prefix-pad', 'level'), u32(n), utf8(value, 'value')]);
}

/** A contains token's message (§11a.7): "contains/n", then the n-gram's UTF-8. */
export function gramMessage(n: number, gram: string): Uint8Array {
  return concat([lengthPrefixed(`contains/${n}`, 'level'), utf8(gram, 'gram')]);
}

/** A contains dummy's message, for slot `i` past a value's distinct grams: "contains-pad/n", u32 i, the whole value's UTF-8. */
export function gramPadMessage(n: number, i: number, value: string): Uint8Array {
  return concat([lengthPrefixed(`contains-pad/${n}`, 'level'), u32(i), utf8(value, 'value')]);
}

/** The first `bits` bits (16 to 52) of a MAC, as an unsigned integer. */
export function tokenOf(digest: Uint8Array, bits: number): number {
  const view = new DataView(digest.buffer, digest.byteOffset, 8);
  const hi = view.getUint32(0);
  if (bits <= 32) return hi >>> (32 - bits);
  return hi * 2 ** (bits - 32) + (view.getUint32(4) >>> (64 - bits));
}
