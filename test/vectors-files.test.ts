/**
 * The vector files are read by other implementations' strict parsers: every hex string in them is
 * of even length and lowercase, and the HMAC-SM3 case 6 key is RFC 4231's 131 bytes of 0xaa (its
 * MAC checked here by an RFC 2104 HMAC built by hand over node:crypto's SM3, not the library's).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readVectors } from './helpers.ts';

/** Hex as a strict parser reads it: an odd length or a non-hex digit throws (Buffer.from drops them silently). */
export function strictUnhex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-f]*$/.test(text)) throw new TypeError(`not hex: ${text.length} characters`);
  return Uint8Array.from({ length: text.length / 2 }, (_, i) => Number.parseInt(text.slice(2 * i, 2 * i + 2), 16));
}

/** Strings of a parsed JSON value under keys that hold hex, with their paths. */
function hexFields(value: unknown, path: string, out: [string, string][]): [string, string][] {
  if (Array.isArray(value)) value.forEach((v, i) => hexFields(v, `${path}[${i}]`, out));
  else if (value && typeof value === 'object') {
    // A typed value of text (blind-index.json, record-values.json) may look like hex: it is not.
    const text = ['string', 'bigint', 'json'].includes((value as { type?: unknown }).type as string);
    // A binding (`context`) holds text too: a row version of 16 or more digits is a decimal number.
    for (const [k, v] of Object.entries(value)) if (!(text && k === 'value') && k !== 'context') hexFields(v, `${path}.${k}`, out);
  }
  else if (typeof value === 'string' && value.length >= 16 && /^[0-9a-fA-F]+$/.test(value)) out.push([path, value]);
  return out;
}

describe('vector files', () => {
  const files = readdirSync(new URL('./vectors/', import.meta.url)).filter((f) => f.endsWith('.json'));

  it.each(files)('%s: every hex string has an even length and lowercase digits', (file) => {
    const fields = hexFields(JSON.parse(readFileSync(new URL(`./vectors/${file}`, import.meta.url), 'utf8')), file, []);
    expect(fields.length).toBeGreaterThan(0);
    for (const [path, value] of fields) expect(() => strictUnhex(value), path).not.toThrow();
  });

  it('HMAC-SM3 "RFC 4231 case 6": 131 bytes of 0xaa, and the MAC of RFC 2104 over SM3 by hand', () => {
    const c = readVectors<{ hmacSm3: { cases: { name: string; key: string; message: string; mac: string }[] } }>('sm-primitives.json').hmacSm3.cases.find((x) => x.name.startsWith('RFC 4231 case 6'))!;
    const key = strictUnhex(c.key);
    expect(key).toEqual(new Uint8Array(131).fill(0xaa));
    const sm3 = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(parts.reduce((h, p) => h.update(p), createHash('sm3')).digest());
    const block = new Uint8Array(64);
    block.set(sm3(key)); // a key longer than the block is hashed first
    const inner = sm3(block.map((b) => b ^ 0x36), strictUnhex(c.message));
    expect(Buffer.from(sm3(block.map((b) => b ^ 0x5c), inner)).toString('hex')).toBe(c.mac);
  });
});
