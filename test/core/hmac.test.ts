/**
 * The backends' HMAC-SHA-256 (blind indexes): RFC 4231 vectors on both, identical bytes on both
 * for any key and message, and a plain Uint8Array whose slice() copies (node's digest is a Buffer).
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hmacSha256 } from '../../src/core/hashes.ts';
import { BACKENDS, hex } from '../helpers.ts';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** RFC 4231 §4, test cases 1, 2, 3 and 6 (a key longer than the block). */
const RFC4231: { key: Uint8Array; data: Uint8Array; mac: string }[] = [
  { key: new Uint8Array(20).fill(0x0b), data: text('Hi There'), mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7' },
  { key: text('Jefe'), data: text('what do ya want for nothing?'), mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' },
  { key: new Uint8Array(20).fill(0xaa), data: new Uint8Array(50).fill(0xdd), mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe' },
  {
    key: new Uint8Array(131).fill(0xaa),
    data: text('Test Using Larger Than Block-Size Key - Hash Key First'),
    mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  },
];

describe('backend hmacSha256', () => {
  it.each(BACKENDS)('RFC 4231 vectors ($name)', (backend) => {
    for (const { key, data, mac } of RFC4231) expect(hex(backend.hmacSha256!(key, data))).toBe(mac);
  });

  it('both backends, @noble/hashes and node:crypto give identical bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 300 }), (key, data) => {
        const expected = createHmac('sha256', key).update(data).digest('hex');
        for (const backend of BACKENDS) expect(hex(backend.hmacSha256!(key, data))).toBe(expected);
        expect(hex(hmacSha256(key, data))).toBe(expected);
      }),
    );
  });

  it.each(BACKENDS)('returns a plain Uint8Array of 32 bytes, whose slice() is a copy ($name)', (backend) => {
    const mac = backend.hmacSha256!(new Uint8Array(32), new Uint8Array(0));
    expect(mac.constructor).toBe(Uint8Array);
    expect(mac.length).toBe(32);
    const copy = mac.slice(0, 4);
    mac.fill(0);
    expect(copy.some((b) => b !== 0)).toBe(true);
  });
});
