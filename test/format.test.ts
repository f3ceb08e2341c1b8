/**
 * FORMAT.md: every MUST has a test here (or in chunked.test.ts) whose name quotes it; the last test
 * checks that. Plus property tests for the header and context encoders and parsers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CryptoBackend } from '../src/core/backend.ts';
import { openPayload, sealedLength } from '../src/core/chunked.ts';
import { COBBLESTONE_256 } from '../src/core/suites.ts';
import { CONTEXT_LIMITS, canonicalContext, parseContext } from '../src/core/context.ts';
import { EnvelopeError, HeaderMalformedError, LimitExceededError } from '../src/core/errors.ts';
import { encodeAuthenticated, encodeWrappedKey, HEADER_LIMITS, MAX_HEADER_LENGTH, parseHeader, testing as headerTesting } from '../src/core/header.ts';
import { createEnvelope, isEnvelopeError, LocalKms } from '../src/index.ts';
import { BACKENDS, hex, sealPayload } from './helpers.ts';
import { InstrumentedProvider } from './instrumented.ts';
const { MAX_HEADER_LENGTH_V1, PREFIX_LENGTH } = headerTesting;

const kms = LocalKms.generate();
const envelope = createEnvelope({ kms });
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const PREFIX = [0x89, 0x4b, 0x4d, 0x45, 0x01, 0x01];

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('FORMAT.md §2 prefix', () => {
  it('A reader MUST reject a version other than 1 or 2 with ERR_UNSUPPORTED_VERSION, naming the version found', async () => {
    const sealed = await envelope.seal('v');
    for (const version of [0, 3, 0x7f, 0xff]) {
      const bad = sealed.slice();
      bad[4] = version;
      await expect(envelope.open(bad)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_VERSION', version, message: expect.stringContaining(`version ${version}`) });
    }
  });

  it('A reader MUST reject a suite it does not implement with ERR_UNSUPPORTED_SUITE, naming the suite found', async () => {
    const sealed = await envelope.seal('s');
    for (const [suite, hex] of [[0, '0x00'], [4, '0x04'], [0x0f, '0x0f'], [0x10, '0x10'], [0xff, '0xff']] as const) {
      const bad = sealed.slice();
      bad[5] = suite;
      await expect(envelope.open(bad)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_SUITE', suite, message: expect.stringContaining(hex) });
    }
    const reserved = sealed.slice();
    reserved[5] = 4;
    await expect(envelope.open(reserved)).rejects.toThrow(/reserved for a later suite/);
  });

  it('A reader MUST reject a context mode other than 00 or 01 with ERR_HEADER_MALFORMED', async () => {
    const sealed = await envelope.seal('m');
    for (const mode of [2, 3, 0x80, 0xff]) {
      const bad = sealed.slice();
      bad[6] = mode;
      await expect(envelope.open(bad)).rejects.toMatchObject({ code: 'ERR_HEADER_MALFORMED' });
    }
  });
});

describe('FORMAT.md §3 encryption context', () => {
  it('Pairs MUST be sorted by key, comparing the UTF-8 bytes, with no key repeated', () => {
    // UTF-16 order puts U+10000 (a surrogate pair) before U+FFFF; UTF-8 byte order does not.
    const ctx = canonicalContext({ '\u{10000}': 'astral', '\uffff': 'bmp', a: '1' });
    expect(Object.keys(ctx.pairs)).toEqual(['a', '\uffff', '\u{10000}']);
    expect(ctx.json).toBe('{"a":"1","\uffff":"bmp","\u{10000}":"astral"}');
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 8 }), (record) => {
        const entries = Object.entries(record);
        const reversed = Object.fromEntries([...entries].reverse());
        expect(Buffer.from(canonicalContext(reversed).encoded).equals(Buffer.from(canonicalContext(record).encoded))).toBe(true);
      }),
    );
  });

  it('a reader MUST reject any other order as ERR_HEADER_MALFORMED', () => {
    const pair = (k: string, v: string): number[] => [...u16(k.length), ...Buffer.from(k), ...u16(v.length), ...Buffer.from(v)];
    const unsorted = new Uint8Array([...u16(2), ...pair('b', '1'), ...pair('a', '2')]);
    const repeated = new Uint8Array([...u16(2), ...pair('a', '1'), ...pair('a', '2')]);
    for (const bytes of [unsorted, repeated]) expect(errorOf(() => parseContext(bytes, 0))).toBeInstanceOf(HeaderMalformedError);
    expect(parseContext(new Uint8Array([...u16(2), ...pair('a', '2'), ...pair('b', '1')]), 0).context.pairs).toEqual({ a: '2', b: '1' });
  });

  it('parses a context seen before (the memo) exactly as a new one, at any offset', () => {
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }), { minLength: 1, maxLength: 12 }),
        fc.nat({ max: 5 }),
        fc.nat(),
        (records, pad, flip) => {
          // More distinct contexts than the memo keeps, each parsed twice, from copies at an offset.
          for (const record of [...records, ...records]) {
            const encoded = canonicalContext(record).encoded;
            const bytes = new Uint8Array([...new Uint8Array(pad).fill(0xee), ...encoded, 7, 7]);
            const { context, end } = parseContext(bytes, pad);
            expect({ ...context.pairs }).toEqual({ ...record });
            expect(end).toBe(pad + encoded.length);
            expect(hex(context.encoded)).toBe(hex(encoded));
            bytes.fill(0); // the memo holds its own copy
          }
          // A known encoding with one byte changed parses anew (or is refused), never as the known one.
          const encoded = canonicalContext(records[0]!).encoded;
          const bytes = encoded.slice();
          bytes[flip % bytes.length]! ^= 0x01;
          const e = errorOf(() => parseContext(bytes, 0));
          if (e === undefined) {
            const { context, end } = parseContext(bytes, 0);
            expect(hex(context.encoded)).toBe(hex(bytes.subarray(0, end)));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('Keys and values MUST be well-formed UTF-8', () => {
    expect(() => canonicalContext({ k: 'lone \ud800 surrogate' })).toThrow(TypeError);
    expect(() => canonicalContext({ '\udc00': 'v' })).toThrow(TypeError);
    const bad = new Uint8Array([...u16(1), ...u16(1), 0xff, ...u16(0)]);
    expect(errorOf(() => parseContext(bad, 0))).toBeInstanceOf(HeaderMalformedError);
    const overlong = new Uint8Array([...u16(1), ...u16(2), 0xc0, 0x80, ...u16(0)]);
    expect(errorOf(() => parseContext(overlong, 0))).toBeInstanceOf(HeaderMalformedError);
  });

  it('A reader MUST check each limit before it reads the field', () => {
    // Each buffer declares a field over its limit and then ends: the limit, not the truncation, is reported.
    const cases = [
      new Uint8Array([...u16(CONTEXT_LIMITS.maxPairs + 1)]),
      new Uint8Array([...u16(1), ...u16(CONTEXT_LIMITS.maxKeyBytes + 1)]),
      new Uint8Array([...u16(1), ...u16(1), 0x61, ...u16(CONTEXT_LIMITS.maxValueBytes + 1)]),
    ];
    for (const bytes of cases) expect(errorOf(() => parseContext(bytes, 0))).toBeInstanceOf(LimitExceededError);
    // 64 pairs of 256-byte keys and 4096-byte values are each within limits, but not in total.
    const big: number[] = [...u16(64)];
    for (let i = 0; i < 64; i++) big.push(...u16(256), ...Buffer.alloc(256, i + 1).map((b, j) => (j === 0 ? i + 1 : b)), ...u16(4096), ...Buffer.alloc(4096));
    expect(errorOf(() => parseContext(new Uint8Array(big), 0))).toBeInstanceOf(LimitExceededError);
    expect(() => canonicalContext(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])))).toThrow(RangeError);
  });

  it('the memo of recent contexts never confuses two contexts, and never caches an invalid one', () => {
    const arb = fc.dictionary(fc.stringMatching(/^[a:1]{1,4}$/), fc.stringMatching(/^[a:1]{0,4}$/), { maxKeys: 3 });
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        // Call twice each, so the second calls come from the memo.
        for (let i = 0; i < 2; i++) {
          const same = JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
          expect(Buffer.from(canonicalContext(a).encoded).equals(Buffer.from(canonicalContext(b).encoded))).toBe(same);
        }
      }),
      { numRuns: 500 },
    );
    for (const [a, b] of [
      [{ a: '1' }, { a1: '' }],
      [{ ab: 'c' }, { a: 'bc' }],
      [{ a: '1:b' }, { a: '1', b: '' }],
    ] as const) {
      for (let i = 0; i < 2; i++) {
        expect(Buffer.from(canonicalContext(a).encoded).equals(Buffer.from(canonicalContext(b).encoded))).toBe(false);
      }
    }
    expect(() => canonicalContext({ k: '\ud800' })).toThrow(TypeError);
    expect(() => canonicalContext({ k: '\ud800' })).toThrow(TypeError);
    expect(() => canonicalContext({ k: 'v'.repeat(5000) })).toThrow(RangeError);
    expect(() => canonicalContext({ k: 'v'.repeat(5000) })).toThrow(RangeError);
  });

  it('round-trips: parse(encode(context)) gives the same pairs and bytes', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }), fc.string({ unit: 'grapheme', maxLength: 30 }), { maxKeys: 10 }), (record) => {
        const ctx = canonicalContext(record);
        const parsed = parseContext(ctx.encoded, 0);
        expect(parsed.end).toBe(ctx.encoded.length);
        expect({ ...parsed.context.pairs }).toEqual({ ...record });
        expect(parsed.context.json).toBe(ctx.json);
        expect(JSON.parse(ctx.json)).toEqual({ ...record });
      }),
    );
  });

  it('the JSON for the KMS: members in UTF-8 key order, strings escaped as JSON.stringify writes them, everything else literal UTF-8', () => {
    expect(canonicalContext({ b: '\u0001', a: 'x"y' }).json).toBe('{"a":"x\\"y","b":"\\u0001"}');
    expect(canonicalContext({ k: '\\ \b\t\n\f\r \u001f \u2028\u2029 é 🔐 \u007f' }).json).toBe(
      '{"k":"\\\\ \\b\\t\\n\\f\\r \\u001f \u2028\u2029 é 🔐 \u007f"}',
    );
    expect(canonicalContext({}).json).toBe('{}');
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 8 }), { maxKeys: 6 }), (record) => {
        fc.pre(Object.entries(record).every(([k, v]) => k.isWellFormed() && v.isWellFormed()));
        const ctx = canonicalContext(record);
        const members = Object.keys(ctx.pairs).map((k) => `${JSON.stringify(k)}:${JSON.stringify(ctx.pairs[k])}`);
        expect(ctx.json).toBe(`{${members.join(',')}}`);
        expect(JSON.parse(ctx.json)).toEqual({ ...ctx.pairs });
      }),
      { numRuns: 300 },
    );
  });

  it('A reader MUST reject a declared length of zero for a field whose least length is 1 (a context key here, the provider id, the key id and the ciphertext blob in section 5) as ERR_HEADER_MALFORMED', async () => {
    const isMalformed = (e: unknown): void => {
      expect(e).toBeInstanceOf(HeaderMalformedError);
      expect(e).not.toBeInstanceOf(LimitExceededError);
      expect((e as EnvelopeError).code).toBe('ERR_HEADER_MALFORMED');
    };
    isMalformed(errorOf(() => parseContext(new Uint8Array([...u16(1), ...u16(0), ...u16(1), 0x61]), 0)));
    const auth = [...PREFIX, 0x00, ...u16(0)];
    const provider = [5, ...Buffer.from('local')];
    const keyId = [...u16(3), ...Buffer.from('kid')];
    const headers = [
      [...auth, 0],
      [...auth, ...provider, ...u16(0)],
      [...auth, ...provider, ...keyId, ...u16(0)],
    ];
    const provider2 = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: provider2 });
    for (const bytes of headers) {
      isMalformed(errorOf(() => parseHeader(new Uint8Array(bytes))));
      isMalformed(await env.open(new Uint8Array([...bytes, ...new Array(80).fill(0)])).catch((e: unknown) => e));
    }
    expect(provider2.calls.decrypt).toBe(0);
    // Zero where zero is allowed: an empty value, and an empty context.
    expect({ ...parseContext(new Uint8Array([...u16(1), ...u16(1), 0x61, ...u16(0)]), 0).context.pairs }).toEqual({ a: '' });
    expect({ ...parseContext(new Uint8Array(u16(0)), 0).context.pairs }).toEqual({});
  });
});

describe('FORMAT.md §4 authenticated bytes', () => {
  it('The payload MUST be opened with the authenticated bytes as received, never a re-encoding', async () => {
    const sealed = await envelope.seal('auth', { context: { z: '1', a: '2' } });
    const header = parseHeader(sealed);
    // A view into the received buffer, not a copy or re-encoding ...
    expect(header.authenticated.buffer).toBe(sealed.buffer);
    expect(header.authenticated.byteOffset).toBe(sealed.byteOffset);
    // ... covering the prefix and the context section exactly.
    expect(header.authenticated.length).toBe(PREFIX_LENGTH + header.context!.encoded.length);
  });

  it('A message MUST NOT open with a context other than the one it was sealed with', async () => {
    const provider = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: provider });
    const stored = await env.seal('ctx', { context: { tenant: 'a' } });
    await expect(env.open(stored, { context: { tenant: 'b' } })).rejects.toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    await expect(env.open(stored, { context: {} })).rejects.toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    expect(provider.calls.decrypt).toBe(0); // refused before any KMS call
    const detached = await env.seal('ctx', { context: { tenant: 'a' }, detachedContext: true });
    await expect(env.open(detached, { context: { tenant: 'b' } })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    await expect(env.open(detached)).rejects.toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    expect(await env.openString(detached, { context: { tenant: 'a' } })).toBe('ctx');
  });
});

describe('FORMAT.md §5 wrapped-key section', () => {
  it('A reader MUST check every declared length against its limit before reading the field', () => {
    const auth = [...PREFIX, 0x00, ...u16(0)];
    const provider = [5, ...Buffer.from('local')];
    const keyId = [...u16(3), ...Buffer.from('kid')];
    const cases = [
      [...auth, HEADER_LIMITS.maxProviderIdBytes + 1],
      [...auth, ...provider, ...u16(HEADER_LIMITS.maxKeyIdBytes + 1)],
      [...auth, ...provider, ...keyId, ...u16(HEADER_LIMITS.maxBlobBytes + 1)],
    ];
    for (const bytes of cases) expect(errorOf(() => parseHeader(new Uint8Array(bytes)))).toBeInstanceOf(LimitExceededError);
    expect(errorOf(() => parseHeader(new Uint8Array([...auth, ...provider, ...keyId, ...u16(10), 1, 2])))).toBeInstanceOf(HeaderMalformedError);
  });

  it('the largest version-1 header the limits allow is MAX_HEADER_LENGTH_V1 (25644) bytes', () => {
    const context = Object.fromEntries(
      Array.from({ length: 3 }, (_, i) => [String.fromCharCode(97 + i).repeat(256), 'v'.repeat(4096)]),
    );
    const ctx = canonicalContext(context);
    const auth = encodeAuthenticated(COBBLESTONE_256, ctx, false);
    const wrapped = encodeWrappedKey({ provider: 'p'.repeat(32), keyId: 'k'.repeat(1024), ciphertextBlob: 'b'.repeat(8192) });
    const header = parseHeader(new Uint8Array([...auth, ...wrapped]));
    expect(header.length).toBe(auth.length + wrapped.length);
    expect(MAX_HEADER_LENGTH_V1).toBe(25644);
    expect(header.length).toBeLessThanOrEqual(MAX_HEADER_LENGTH_V1);
    expect(MAX_HEADER_LENGTH).toBeGreaterThan(MAX_HEADER_LENGTH_V1);
  });

  it('round-trips: parseHeader(encode(header)) gives back every field', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 4 }),
        fc.boolean(),
        fc.stringMatching(/^[a-z0-9._-]{1,32}$/),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 300 }),
        (record, detached, provider, keyId, ciphertextBlob) => {
          const ctx = canonicalContext(record);
          const auth = encodeAuthenticated(COBBLESTONE_256, ctx, detached);
          const bytes = new Uint8Array([...auth, ...encodeWrappedKey({ provider, keyId, ciphertextBlob }), 9, 9]);
          const h = parseHeader(bytes);
          expect(h.wrappedKeys).toEqual([{ provider, keyId, ciphertextBlob }]);
          expect(h.detached).toBe(detached);
          expect(h.length).toBe(bytes.length - 2);
          expect(Buffer.from(h.authenticated).equals(Buffer.from(auth))).toBe(true);
          if (!detached) expect({ ...h.context!.pairs }).toEqual({ ...record });
        },
      ),
    );
  });

  it('parses a header seen before (the memo) exactly as a new one, with views into the bytes given', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
        fc.array(fc.string({ minLength: 1, maxLength: 60 }), { minLength: 2, maxLength: 12 }),
        fc.nat(),
        (record, blobs, flip) => {
          const auth = encodeAuthenticated(COBBLESTONE_256, canonicalContext(record), false);
          const encode = (blob: string): Uint8Array =>
            new Uint8Array([...auth, ...encodeWrappedKey({ provider: 'local', keyId: 'k', ciphertextBlob: blob }), 7]);
          // More distinct headers than the memo keeps, each parsed twice, the second time from a copy.
          for (const blob of [...blobs, ...blobs]) {
            const bytes = encode(blob);
            const h = parseHeader(bytes);
            expect(h.wrappedKeys[0]!.ciphertextBlob).toBe(blob);
            expect(h.length).toBe(bytes.length - 1);
            expect(h.authenticated.buffer).toBe(bytes.buffer);
            expect(h.wrappedBytes.buffer).toBe(bytes.buffer);
            expect(Buffer.from(h.authenticated).equals(Buffer.from(auth))).toBe(true);
            // Changing the caller's bytes afterwards changes nothing the memo holds.
            bytes.fill(0);
          }
          // A known header with one byte changed is parsed anew (or refused), never taken for the known one.
          const bytes = encode(blobs[0]!);
          const at = flip % (bytes.length - 1);
          bytes[at]! ^= 0x01;
          const e = errorOf(() => parseHeader(bytes));
          if (e === undefined) {
            // What it parsed to encodes back to the bytes it was given (every encoding is canonical).
            const h = parseHeader(bytes);
            const again = [...encodeAuthenticated(h.suite, h.context!, h.detached), ...encodeWrappedKey(h.wrappedKeys[0]!)];
            expect(Buffer.from(again).equals(Buffer.from(bytes.subarray(0, h.length)))).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('A reader MUST reject a key id or a ciphertext blob that is not well-formed UTF-8 as ERR_HEADER_MALFORMED, before any KMS call', async () => {
    const auth = [...PREFIX, 0x00, ...u16(0)];
    const provider = [5, ...Buffer.from('local')];
    const keyId = [...u16(3), ...Buffer.from('kid')];
    const blob = [...u16(4), ...Buffer.from('blob')];
    const notUtf8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82]]; // a stray byte, overlong, a surrogate, cut short
    const instrumented = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: instrumented });
    for (const bad of notUtf8) {
      const field = [...u16(bad.length), ...bad];
      for (const header of [
        [...auth, ...provider, ...field, ...blob],
        [...auth, ...provider, ...keyId, ...field],
      ]) {
        expect(errorOf(() => parseHeader(new Uint8Array(header)))).toBeInstanceOf(HeaderMalformedError);
        const message = new Uint8Array([...header, ...new Array(72).fill(0)]);
        await expect(env.open(message)).rejects.toMatchObject({ code: 'ERR_HEADER_MALFORMED', message: expect.stringContaining('UTF-8') });
      }
    }
    expect(instrumented.calls.decrypt).toBe(0);
  });

  it('a writer refuses a key id or blob from the KMS that is empty, too long or not well-formed Unicode: ERR_KMS (bad-response), the data key wiped', async () => {
    for (const [field, value] of [
      ['keyId', '\ud800kid'],
      ['keyId', ''],
      ['keyId', 'k'.repeat(HEADER_LIMITS.maxKeyIdBytes + 1)],
      ['ciphertextBlob', 'blob\udfff'],
      ['ciphertextBlob', ''],
      ['ciphertextBlob', 'b'.repeat(HEADER_LIMITS.maxBlobBytes + 1)],
    ] as const) {
      const instrumented = new InstrumentedProvider(LocalKms.generate());
      const env = createEnvelope({
        kms: { id: 'local', generateDataKey: async (r) => ({ ...(await instrumented.generateDataKey(r)), [field]: value }), decryptDataKey: (r) => instrumented.decryptDataKey(r) },
      });
      await expect(env.seal('x')).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'bad-response' });
      expect(instrumented.allWiped()).toBe(true);
    }
  });

  it('parseHeader gives only typed errors on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (tail, withPrefix) => {
        const bytes = withPrefix ? new Uint8Array([...PREFIX, ...tail]) : tail;
        const e = errorOf(() => parseHeader(bytes));
        if (e !== undefined) expect(e).toBeInstanceOf(EnvelopeError);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('FORMAT.md §6 payload', () => {
  it("The data key MUST be exactly as long as the suite's key", async () => {
    const provider = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: provider });
    const sealed = await env.seal('length');
    provider.mutateKey = (key) => key.subarray(0, 16);
    await expect(env.open(sealed)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it.each(BACKENDS)('The commitment MUST be checked before any chunk is decrypted ($name)', (inner) => {
    let chunkCalls = 0;
    const backend: CryptoBackend = {
      ...inner,
      gcmOpen: (...args) => (chunkCalls++, inner.gcmOpen(...args)),
      gcmOpenFresh: (...args) => (chunkCalls++, inner.gcmOpenFresh(...args)),
    };
    const key = new Uint8Array(32).fill(1);
    const out = new Uint8Array(sealedLength(100));
    sealPayload(inner, COBBLESTONE_256, key, new Uint8Array(0), new Uint8Array(24), new Uint8Array(100), out, 0);
    out[40]! ^= 1;
    expect(() => openPayload({ crypto: backend, suite: COBBLESTONE_256, key, context: new Uint8Array(0) }, out)).toThrow();
    expect(chunkCalls).toBe(0);
  });

  it('A message whose payload is truncated, extended, reordered, or altered anywhere MUST fail as ERR_DECRYPTION_FAILED', async () => {
    const sealed = await envelope.seal(new Uint8Array(3 * 16384 + 5).fill(4));
    const h = parseHeader(sealed).length + 56;
    const chunk = (i: number): Uint8Array => sealed.subarray(h + i * 16400, h + (i + 1) * 16400);
    const head = sealed.subarray(0, h);
    const variants = [
      Buffer.concat([head, chunk(1), chunk(0), sealed.subarray(h + 2 * 16400)]), // reordered
      Buffer.concat([head, chunk(0), chunk(1), chunk(2)]), // truncated at a chunk boundary
      Buffer.concat([sealed, chunk(0)]), // extended by a valid chunk
      Buffer.concat([head, chunk(0), chunk(0), sealed.subarray(h + 2 * 16400)]), // duplicated
    ];
    for (const v of variants) await expect(envelope.open(new Uint8Array(v))).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it.each(BACKENDS)('open() MUST NOT release any plaintext of a message that fails ($name)', (inner) => {
    const outputs: Uint8Array[] = [];
    const backend: CryptoBackend = {
      ...inner,
      gcmOpen: (key, nonce, sealed, out, offset, aad) => (outputs.push(out), inner.gcmOpen(key, nonce, sealed, out, offset, aad)),
    };
    const key = new Uint8Array(32).fill(1);
    const out = new Uint8Array(sealedLength(40000));
    sealPayload(inner, COBBLESTONE_256, key, new Uint8Array(0), new Uint8Array(24), new Uint8Array(40000).fill(0x5a), out, 0);
    out[out.length - 1]! ^= 1; // the last chunk fails after two good ones were decrypted
    expect(() => openPayload({ crypto: backend, suite: COBBLESTONE_256, key, context: new Uint8Array(0) }, out)).toThrow();
    expect(outputs.length).toBe(3);
    expect(outputs[0]!.every((b) => b === 0)).toBe(true);
  });
});

describe('FORMAT.md', () => {
  it('every MUST in FORMAT.md has a test whose name quotes it', () => {
    const normalize = (s: string): string => s.replace(/`/g, '').replace(/\s+/g, ' ').trim();
    const spec = normalize(readFileSync(new URL('../FORMAT.md', import.meta.url), 'utf8'));
    const sentences = spec.split(/(?<=[.;])\s+/).filter((s) => /\bMUST\b/.test(s));
    const titles: string[] = [];
    const files = readdirSync(new URL('.', import.meta.url), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.test.ts'));
    expect(files).toContain('core/chunked.test.ts');
    for (const file of files) {
      const source = readFileSync(new URL(`./${file}`, import.meta.url), 'utf8');
      for (const m of source.matchAll(/\bit(?:\.each\([^)]*\))?\(\s*(['"])(.+?)\1/g)) titles.push(m[2]!);
    }
    const quoted = titles.map((t) => normalize(t.replace(/\s*\(\$name\)$/, '').split(': ')[0]!)).filter((t) => /\bMUST\b/.test(t));
    const uncovered = sentences.filter((s) => !quoted.some((q) => s.includes(q)));
    expect(sentences.length).toBeGreaterThanOrEqual(12);
    expect(uncovered).toEqual([]);
  });
});

describe('errors', () => {
  it('isEnvelopeError tells ours from others', () => {
    expect(isEnvelopeError(new LimitExceededError('x'))).toBe(true);
    expect(isEnvelopeError(Object.assign(new Error('x'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBe(false);
  });
});
