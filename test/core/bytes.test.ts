import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64, base64url, equalPublicBytes, isWellFormedUtf8, slabBytes, startsWithPublicBytes } from '../../src/core/bytes.ts';

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

describe('slabBytes', () => {
  it('hands out zeroed regions that never overlap, 16-byte aligned, and a plain array for large lengths', () => {
    const views = Array.from({ length: 3000 }, (_, i) => slabBytes(1 + (i % 200)));
    for (const v of views) {
      expect(v.every((b) => b === 0)).toBe(true);
      expect(v.byteOffset % 16).toBe(0);
      v.fill(0xff);
    }
    // Writing every view did not touch another: count the bytes set per slab against the views' lengths.
    const perSlab = new Map<ArrayBufferLike, number>();
    for (const v of views) perSlab.set(v.buffer, (perSlab.get(v.buffer) ?? 0) + v.length);
    for (const [buffer, length] of perSlab) expect(new Uint8Array(buffer).reduce((n, b) => n + (b === 0xff ? 1 : 0), 0)).toBe(length);
    expect(slabBytes(10000).buffer.byteLength).toBe(10000);
  });

  it('base64url.decodeTransient decodes as decode does, and refuses what decode refuses', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => base64url.encode(b)), fc.string({ maxLength: 60 })), (text) => {
        expect(base64url.decodeTransient(text)).toEqual(base64url.decode(text));
      }),
      { numRuns: 500 },
    );
  });
});

describe('base64 decoding is strict', () => {
  it('decodes a string only when it is the canonical encoding of the bytes it gives (any string over the alphabets and "=")', () => {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=é';
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...chars), { maxLength: 40 }).map((a) => a.join('')), (text) => {
        const std = base64.decode(text);
        if (std !== undefined) expect(base64.encode(std)).toBe(text);
        else expect(text.length % 4 !== 0 || Buffer.from(text, 'base64').toString('base64') !== text).toBe(true);
        const url = base64url.decode(text);
        if (url !== undefined) expect(base64url.encode(url)).toBe(text);
        else expect(Buffer.from(text, 'base64url').toString('base64url') !== text).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('isWellFormedUtf8', () => {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  const decodes = (bytes: Uint8Array): boolean => {
    try {
      fatal.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };

  it('agrees with a fatal TextDecoder on known cases: overlong forms, surrogates, beyond U+10FFFF, cut sequences', () => {
    const cases: [number[], boolean][] = [
      [[], true],
      [[0x41, 0x7f], true],
      [[0xc2, 0x80], true],
      [[0xc0, 0x80], false], // overlong NUL
      [[0xc1, 0xbf], false],
      [[0xe0, 0xa0, 0x80], true],
      [[0xe0, 0x80, 0x80], false], // overlong
      [[0xed, 0x9f, 0xbf], true],
      [[0xed, 0xa0, 0x80], false], // a surrogate
      [[0xef, 0xbb, 0xbf], true], // a BOM is well formed
      [[0xf0, 0x90, 0x80, 0x80], true],
      [[0xf0, 0x80, 0x80, 0x80], false], // overlong
      [[0xf4, 0x8f, 0xbf, 0xbf], true], // U+10FFFF
      [[0xf4, 0x90, 0x80, 0x80], false], // beyond U+10FFFF
      [[0xf5, 0x80, 0x80, 0x80], false],
      [[0xe2, 0x82], false], // cut
      [[0x80], false], // a continuation byte alone
      [[0xe2, 0x28, 0xa1], false],
    ];
    for (const [bytes, ok] of cases) {
      expect(isWellFormedUtf8(Uint8Array.from(bytes)), bytes.join(' ')).toBe(ok);
      expect(decodes(Uint8Array.from(bytes)), bytes.join(' ')).toBe(ok);
    }
  });

  it('agrees with a fatal TextDecoder on any bytes, and on mutated UTF-8 text (property)', () => {
    const mutated = fc
      .tuple(fc.string({ unit: 'grapheme' }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat())
      .map(([text, edits, cut]) => {
        const bytes = new TextEncoder().encode(text);
        for (const [at, value] of edits) if (bytes.length > 0) bytes[at % bytes.length] = value;
        return bytes.subarray(0, bytes.length === 0 ? 0 : bytes.length - (cut % 2));
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), mutated), (bytes) => {
        expect(isWellFormedUtf8(bytes)).toBe(decodes(bytes));
      }),
      { numRuns: 3000 },
    );
  });
});
