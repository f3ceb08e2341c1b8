import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64, base64url, equalPublicBytes, startsWithPublicBytes } from '../../src/core/bytes.ts';

describe('base64 and base64url', () => {
  it('encode as Node does and decode back, for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const std = base64.encode(bytes);
        const url = base64url.encode(bytes);
        expect(std).toBe(Buffer.from(bytes).toString('base64'));
        expect(url).toBe(Buffer.from(bytes).toString('base64url'));
        expect(Buffer.from(base64.decode(std)!).equals(Buffer.from(bytes))).toBe(true);
        expect(Buffer.from(base64url.decode(url)!).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('refuse characters outside the alphabet (non-ASCII too), bad padding and non-zero trailing bits', () => {
    for (const bad of ['QQ', 'QQ=', 'Q===', 'QR==', 'QQ==\n', 'Q\u00c1==', '\u0141Q==', 'QQ-_', 'QQ+/'.replace('+', '-')]) {
      expect(base64.decode(bad), JSON.stringify(bad)).toBeUndefined();
    }
    for (const bad of ['Q', 'QQ=', 'QR', 'QQ+/', 'Q\u00c1', '\u00ff\u00ff']) expect(base64url.decode(bad), JSON.stringify(bad)).toBeUndefined();
    expect(base64url.decode('QQ')).toEqual(Uint8Array.of(0x41));
  });
});

describe('public-bytes comparisons', () => {
  it('equalPublicBytes and startsWithPublicBytes agree with a plain comparison', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), fc.nat({ max: 4 }), (a, b, at) => {
        expect(equalPublicBytes(a, b)).toBe(Buffer.from(a).equals(Buffer.from(b)));
        const expected = a.length - at >= b.length && Buffer.from(a.subarray(at, at + b.length)).equals(Buffer.from(b));
        expect(startsWithPublicBytes(a, b, at)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });
});
