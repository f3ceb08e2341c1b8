/**
 * replaceWrappedKeys (src/core/wrapped-section.ts): the new header keeps the authenticated bytes as
 * they were and parses back to exactly the wrapped keys given; version 1 takes exactly one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { encodeAuthenticated, encodeAuthenticatedV2, encodeWrappedKey, encodeWrappedKeys, parseHeader, type WrappedKey } from '../../src/core/header.ts';
import { DEFAULT_SUITE } from '../../src/core/suites.ts';
import { replaceWrappedKeys } from '../../src/core/wrapped-section.ts';

const wrappedKey = fc.record({
  provider: fc.stringMatching(/^[a-z0-9._-]{1,32}$/),
  keyId: fc.string({ minLength: 1, maxLength: 60 }).filter((s) => s.isWellFormed()),
  ciphertextBlob: fc.string({ minLength: 1, maxLength: 300 }).filter((s) => s.isWellFormed()),
});
const context = fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 20 }).filter((s) => s.isWellFormed()), { maxKeys: 4 });

function header(version: 1 | 2, ctx: Record<string, string>, detached: boolean, wrapped: WrappedKey[]): Uint8Array {
  const c = canonicalContext(ctx);
  const authenticated = version === 1 ? encodeAuthenticated(DEFAULT_SUITE, c, detached) : encodeAuthenticatedV2(DEFAULT_SUITE, c, detached, false, undefined);
  const section = version === 1 ? encodeWrappedKey(wrapped[0]!) : encodeWrappedKeys(wrapped);
  return new Uint8Array([...authenticated, ...section, 1, 2, 3]); // and a payload's first bytes
}

describe('replaceWrappedKeys', () => {
  it('keeps the authenticated bytes and parses back to the new wrapped keys (versions 1 and 2, any fields)', () => {
    fc.assert(
      fc.property(fc.constantFrom<1 | 2>(1, 2), context, fc.boolean(), fc.array(wrappedKey, { minLength: 1, maxLength: 8 }), fc.array(wrappedKey, { minLength: 1, maxLength: 8 }), (version, ctx, detached, before, after) => {
        const old = parseHeader(header(version, ctx, detached, before));
        const next = version === 1 ? after.slice(0, 1) : after;
        const replaced = replaceWrappedKeys(old, next);
        const parsed = parseHeader(replaced);
        expect(parsed.length).toBe(replaced.length);
        expect(Buffer.from(parsed.authenticated).equals(Buffer.from(old.authenticated))).toBe(true);
        expect(parsed.wrappedKeys).toEqual(next);
        expect(parsed.version).toBe(version);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a version-1 message with other than one wrapped key, more than 8, and a hierarchy header', () => {
    const w = { provider: 'local', keyId: 'k', ciphertextBlob: 'b' };
    const v1 = parseHeader(header(1, {}, false, [w]));
    expect(() => replaceWrappedKeys(v1, [w, w])).toThrow(RangeError);
    const v2 = parseHeader(header(2, {}, false, [w]));
    expect(() => replaceWrappedKeys(v2, Array(9).fill(w))).toThrow(RangeError);
    expect(() => replaceWrappedKeys(v2, [])).toThrow(RangeError);
    const hierarchy = parseHeader(encodeAuthenticatedV2(DEFAULT_SUITE, canonicalContext({}), false, true, { partition: 'p', version: 1 }));
    expect(() => replaceWrappedKeys(hierarchy, [w])).toThrow(expect.objectContaining({ code: 'ERR_HEADER_MALFORMED' }));
  });
});
