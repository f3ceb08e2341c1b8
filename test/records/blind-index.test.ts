/**
 * Blind indexes (src/records/blind-index.ts, FORMAT.md §11, README "Blind indexes"): the worked example
 * byte for byte on both backends, normalisers, truncation, the compound encoding, key separation,
 * the sync API's warm requirement, wiping, warnings, and the README's table of false positives.
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  BLIND_INDEX_PARTITION_SUFFIX,
  blindIndexPartition,
  blindIndexWarnings,
  BlindIndexNotWarmError,
  type BlindIndexValue,
  type CompoundIndexValue,
  createBlindIndex,
  expectedFalsePositives,
  testing,
} from '../../src/records/blind-index.ts';
import { testing as hkdfTesting } from '../../src/core/hkdf.ts';
import { selectBackend } from '../../src/core/select-backend.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { ClosedError, createEnvelope, KeyNotWarmError } from '../../src/index.ts';
import type { DataKey, KeyProvider } from '../../src/kms/key-provider.ts';
import { BACKENDS, hex, unhex } from '../helpers.ts';
import { InstrumentedProvider } from '../instrumented.ts';
const { hkdfExpandBytes } = hkdfTesting;

const { blindIndexInfo, encodeIndexMessage, normalizeValue, normalizerChain, truncateIndex } = testing;

/** A KMS whose every data key is 00 01 … 1f: the worked example's intermediate key. */
class FixedKms implements KeyProvider {
  readonly id = 'fixed';
  readonly contexts: string[] = [];
  async generateDataKey(request: { context: { json: string } }): Promise<DataKey> {
    this.contexts.push(request.context.json);
    return { keyId: 'fixed', plaintextKey: Uint8Array.from({ length: 32 }, (_, i) => i), ciphertextBlob: 'fixed-blob' };
  }
  async decryptDataKey(request: { context: { json: string } }): Promise<Uint8Array> {
    this.contexts.push(request.context.json);
    return Uint8Array.from({ length: 32 }, (_, i) => i);
  }
}

function fixedHierarchy() {
  const kms = new FixedKms();
  return { kms, hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) };
}

function fleet() {
  const kms = new InstrumentedProvider();
  const store = new MemoryKeyStore();
  return { kms, store, hierarchy: createKeyHierarchy({ store, kms }) };
}

const EMAIL = { table: 'users', column: 'email', bits: 30, normalize: ['trim', 'casefold', 'nfc'] } as const;

/** The worked example of FORMAT.md §11.6, as the test pins it. */
const EXAMPLE = {
  prk: '8cdf71bca048490c3cece5befd6c62c19da1adb675e5834fda2c7b61ad9d9f99',
  info: '6b6d732d656e76656c6f70652f626c696e642d696e64657840763100000575736572730005656d61696c000874656e616e742d31',
  key: 'f1cade6ff736d69f0143dc0153174df8dec6895a890ce21744ecc6fae7f021a8',
  message: '0000001201616c696365406578616d706c652e636f6d',
  hmac: 'ad24a69d7817768d209375268af549cb8a996865cc0817e70d93ffa8c814274c',
  index: 'ad24a69c',
  text: 'rSSmnA',
  compoundInfo: '6b6d732d656e76656c6f70652f626c696e642d696e646578407631000005757365727300146c6173745f6e616d650062697274685f64617465000874656e616e742d31',
  compoundMessage: '00000008016dc3bc6c6c6572000000090642625f17b3000000',
  compoundText: 'Etwhqw',
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe('FORMAT.md §11 worked example', () => {
  it.each(BACKENDS)('every intermediate value and the index, users.email, 30 bits ($name)', async (backend) => {
    const ik = Uint8Array.from({ length: 32 }, (_, i) => i);
    const prk = hkdfExpandBytes(backend.hkdfExpandSha512, ik, [new TextEncoder().encode('kms-envelope/intermediate-key@v2+AEAD_AES_256_GCM\0')], 32);
    expect(hex(prk)).toBe(EXAMPLE.prk);
    const info = blindIndexInfo('users', 'email', 'tenant-1');
    expect(hex(info)).toBe(EXAMPLE.info);
    expect(hex(hkdfExpandBytes(backend.hkdfExpandSha512, prk, [info], 32))).toBe(EXAMPLE.key);
    const value = normalizeValue('  Alice@Example.COM\n', normalizerChain(['trim', 'casefold', 'nfc']));
    expect(value).toBe('alice@example.com');
    const message = encodeIndexMessage([value]);
    expect(hex(message)).toBe(EXAMPLE.message);
    const digest = backend.hmacSha256!(unhex(EXAMPLE.key), message);
    expect(hex(digest)).toBe(EXAMPLE.hmac);
    expect(hex(truncateIndex(digest, 30))).toBe(EXAMPLE.index);

    const { hierarchy, kms } = fixedHierarchy();
    const email = createBlindIndex({ hierarchy, ...EMAIL, backend: backend.name });
    expect(await email.compute('  Alice@Example.COM\n', { partition: 'tenant-1' })).toBe(EXAMPLE.text);
    const bytes = createBlindIndex({ hierarchy, ...EMAIL, output: 'bytes', backend: backend.name });
    expect(hex(await bytes.compute('alice@example.com', { partition: 'tenant-1' }))).toBe(EXAMPLE.index);
    // The index root key is the intermediate key of "tenant-1#blind-index", version 1.
    expect(kms.contexts[0]).toBe('{"kms-envelope":"intermediate-key","partition":"tenant-1#blind-index","version":"1"}');
    await hierarchy.close();
  });

  it.each(BACKENDS)('the compound example: users (last_name, birth_date), 32 bits ($name)', async (backend) => {
    expect(hex(blindIndexInfo('users', 'last_name\0birth_date', 'tenant-1'))).toBe(EXAMPLE.compoundInfo);
    expect(hex(encodeIndexMessage(['müller', new Date('1990-01-02T00:00:00Z')]))).toBe(EXAMPLE.compoundMessage);
    const { hierarchy } = fixedHierarchy();
    const index = createBlindIndex({
      hierarchy,
      table: 'users',
      columns: [{ name: 'last_name', normalize: 'casefold' }, 'birth_date'],
      bits: 32,
      partition: 'tenant-1',
      backend: backend.name,
    });
    const date = new Date('1990-01-02T00:00:00Z');
    expect(await index.compute(['MÜLLER', date])).toBe(EXAMPLE.compoundText);
    expect(await index.compute({ birth_date: date, last_name: 'Müller', other: 'ignored' })).toBe(EXAMPLE.compoundText);
    await hierarchy.close();
  });
});

describe('FORMAT.md §11 requirements', () => {
  it('The bits of the last byte beyond bits MUST be zero', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 16, max: 256 }), (digest, bits) => {
        const out = truncateIndex(digest, bits);
        expect(out.length).toBe(Math.ceil(bits / 8));
        const rest = bits % 8;
        if (rest) expect(out[out.length - 1]! & (0xff >> rest)).toBe(0);
        // What remains is the digest's first `bits` bits.
        for (let i = 0; i < bits; i++) {
          const bit = (b: Uint8Array): number => (b[i >> 3]! >> (7 - (i & 7))) & 1;
          expect(bit(out)).toBe(bit(digest));
        }
      }),
    );
  });

  it('A search term MUST be normalised and encoded exactly as the stored values were', async () => {
    const { hierarchy } = fleet();
    const email = createBlindIndex({ hierarchy, ...EMAIL, bits: 64, partition: 't' });
    const stored = await email.compute('Bob@Example.com ');
    expect(await email.compute('  BOB@example.COM')).toBe(stored);
    // A term not normalised as the stored values were (here not at all) finds nothing.
    const raw = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 64, partition: 't' });
    expect(await raw.compute('Bob@Example.com ')).not.toBe(stored);
    expect(await raw.compute('bob@example.com')).toBe(stored); // the same key: one column, one version
    await hierarchy.close();
  });

  it('An implementation MUST refuse NaN and invalid Dates rather than index them', async () => {
    const { hierarchy } = fleet();
    const index = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, partition: 'p' });
    await expect(index.compute(Number.NaN)).rejects.toBeInstanceOf(RangeError);
    await expect(index.compute(new Date(Number.NaN))).rejects.toBeInstanceOf(RangeError);
    expect(() => encodeIndexMessage([Number.NaN])).toThrow(RangeError);
    await hierarchy.close();
  });
});

// Strings over the whole of Unicode, and ones rich in what the normalisers change.
const anyString = fc.string({ unit: 'binary', maxLength: 24 });
const tricky = fc.string({
  unit: fc.constantFrom(...' \t\n\u00a0\u2003\u3000\ufeffaAzZ09éÉe\u0301ßẞSsΣσςİıIiǅǆǄﬁÅÅ\u212b٣5-()+.'.split('')),
  maxLength: 16,
});
const text = fc.oneof(anyString, tricky);

describe('normalisers', () => {
  it('each is idempotent, and so are chains that end in nfc', () => {
    const chains = [['trim'], ['casefold'], ['nfc'], ['digits'], ['text'], ['trim', 'casefold', 'nfc'], ['nfc', 'casefold', 'nfc'], ['text', 'trim', 'casefold', 'nfc']] as const;
    fc.assert(
      fc.property(text, (s) => {
        for (const names of chains) {
          const chain = normalizerChain(names);
          if ((names as readonly string[]).includes('digits') && !/[0-9]/.test(s)) {
            expect(() => normalizeValue(s, chain)).toThrow(RangeError); // no digit: no index (FORMAT.md §11.3)
            continue;
          }
          const once = normalizeValue(s, chain);
          expect(normalizeValue(once, chain)).toBe(once);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('canonically equivalent strings (NFC and NFD) get one index under nfc', async () => {
    const { hierarchy } = fleet();
    const index = createBlindIndex({ hierarchy, table: 't', column: 'name', bits: 128, normalize: 'nfc', partition: 'p' });
    await index.warm(['p']);
    fc.assert(
      fc.property(text, (s) => {
        expect(index.computeSync(s.normalize('NFD'))).toBe(index.computeSync(s.normalize('NFC')));
        expect(index.matches(s.normalize('NFKD'), s.normalize('NFC'))).toBe(s.normalize('NFKD').normalize('NFC') === s.normalize('NFC'));
      }),
      { numRuns: 500 },
    );
    expect(index.computeSync('e\u0301')).toBe(index.computeSync('é'));
    await hierarchy.close();
  });

  it('digits keeps the ASCII digits in order, of strings, numbers and bigints', () => {
    const digits = normalizerChain('digits');
    fc.assert(
      fc.property(text, (s) => {
        const kept = [...s].filter((c) => c >= '0' && c <= '9').join('');
        if (kept === '') expect(() => normalizeValue(s, digits)).toThrow(/no digit/);
        else expect(normalizeValue(s, digits)).toBe(kept);
      }),
    );
    fc.assert(
      fc.property(fc.bigInt(), (n) => {
        expect(normalizeValue(n, digits)).toBe((n < 0n ? -n : n).toString());
      }),
    );
    expect(normalizeValue('+1 (555) 010-9999', digits)).toBe('15550109999');
    expect(normalizeValue(5550109999, digits)).toBe('5550109999');
    expect(() => normalizeValue('٣٤', digits)).toThrow(/no digit/); // other scripts' digits are not ASCII digits
  });

  it('trim removes the white space String.prototype.trim does; casefold folds case without a locale', () => {
    const trim = normalizerChain('trim');
    const casefold = normalizerChain('casefold');
    fc.assert(
      fc.property(text, (s) => {
        expect(normalizeValue(s, trim)).toBe(s.trim());
      }),
    );
    for (const [a, b] of [
      ['Straße', 'STRASSE'],
      ['ẞ', 'ss'],
      ['ΟΔΟΣ', 'οδοσ'],
      ['ﬁle', 'FILE'],
      ['ǅ', 'ǆ'],
      ['K', 'k'], // Kelvin sign
    ]) {
      expect(normalizeValue(a!, casefold)).toBe(normalizeValue(b!, casefold));
    }
    expect(normalizeValue('İ', casefold)).toBe('i\u0307'); // the locale-independent mapping, never Turkish rules
  });

  it('values are typed: 1, "1", 1n, true and bytes differ unless a normaliser makes them one', async () => {
    const { hierarchy } = fleet();
    const plain = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 64, partition: 'p' });
    const values: BlindIndexValue[] = [1, '1', 1n, true, Uint8Array.of(0x31), new Date(1), 'true'];
    const indexes = await Promise.all(values.map((v) => plain.compute(v)));
    expect(new Set(indexes).size).toBe(values.length);
    const asText = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 64, partition: 'p', normalize: 'text' });
    expect(await asText.compute(1)).toBe(await asText.compute('1'));
    expect(await asText.compute(1n)).toBe(await asText.compute('1'));
    expect(await asText.compute(true)).toBe(await asText.compute('true'));
    expect(await plain.compute(-0)).toBe(await plain.compute(0));
    const custom = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 64, partition: 'p', normalize: (v) => (typeof v === 'string' ? v.split('+')[0]! : v) });
    expect(await custom.compute('bob+news')).toBe(await plain.compute('bob'));
    await expect(plain.compute(null as never)).rejects.toThrow(/NULL/);
    await expect(plain.compute({} as never)).rejects.toBeInstanceOf(TypeError);
    expect(() => createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 64, normalize: 'lower' as never })).toThrow(/"casefold"/);
    await hierarchy.close();
  });
});

const scalar: fc.Arbitrary<BlindIndexValue> = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.double({ noNaN: true }),
  fc.bigInt({ min: -1000n, max: 1000n }),
  fc.boolean(),
  fc.date({ noInvalidDate: true }),
  fc.uint8Array({ maxLength: 6 }),
);

/** A value's identity for equality: type and content (-0 is 0). */
function identity(v: BlindIndexValue): string {
  if (typeof v === 'number') return `n:${Object.is(v, -0) ? 0 : v}`;
  if (typeof v === 'bigint') return `b:${v}`;
  if (v instanceof Date) return `d:${v.getTime()}`;
  if (v instanceof Uint8Array) return `u:${hex(v)}`;
  return `${typeof v}:${String(v)}`;
}

describe('the compound encoding', () => {
  it('different value tuples never share an encoding', () => {
    fc.assert(
      fc.property(fc.array(scalar, { minLength: 1, maxLength: 4 }), fc.array(scalar, { minLength: 1, maxLength: 4 }), (a, b) => {
        const same = a.length === b.length && a.every((v, i) => identity(v) === identity(b[i]!));
        expect(hex(encodeIndexMessage(a)) === hex(encodeIndexMessage(b))).toBe(same);
      }),
      { numRuns: 2000 },
    );
  });

  it('moving a boundary between two strings changes the encoding (and the index)', async () => {
    fc.assert(
      fc.property(fc.string({ minLength: 2, maxLength: 12 }), fc.nat(), fc.nat(), (s, i, j) => {
        const p = i % (s.length + 1);
        const q = j % (s.length + 1);
        fc.pre(p !== q);
        expect(hex(encodeIndexMessage([s.slice(0, p), s.slice(p)]))).not.toBe(hex(encodeIndexMessage([s.slice(0, q), s.slice(q)])));
      }),
    );
    const { hierarchy } = fleet();
    const index = createBlindIndex({ hierarchy, table: 't', columns: ['a', 'b'], bits: 256, partition: 'p' });
    expect(await index.compute(['ab', 'c'])).not.toBe(await index.compute(['a', 'bc']));
    await expect(index.compute(['a'])).rejects.toThrow(/2 values/);
    await expect(index.compute({ a: 'x' })).rejects.toThrow(/t\.b is undefined/);
    await hierarchy.close();
  });
});

describe('keys', () => {
  it('both backends give identical bytes', async () => {
    const { hierarchy } = fleet();
    const make = (backend: 'node' | 'noble', output: 'bytes') =>
      createBlindIndex({ hierarchy, table: 'users', columns: ['a', { name: 'b', normalize: ['trim', 'casefold'] }], bits: 77, partition: 'p', backend, output });
    const node = make('node', 'bytes');
    const noble = make('noble', 'bytes');
    await Promise.all([node.warm(['p']), noble.warm(['p'])]);
    fc.assert(
      fc.property(scalar, scalar, (a, b) => {
        expect(hex(node.computeSync([a, b]))).toBe(hex(noble.computeSync([a, b])));
      }),
      { numRuns: 300 },
    );
    await hierarchy.close();
  });

  it('different tables, columns, partitions and versions give unrelated indexes', async () => {
    const { hierarchy } = fleet();
    const base = { hierarchy, table: 'users', column: 'email', bits: 256, partition: 'tenant-1' } as const;
    const variants = [
      createBlindIndex(base),
      createBlindIndex({ ...base, table: 'staff' }),
      createBlindIndex({ ...base, column: 'backup_email' }),
      createBlindIndex({ ...base, partition: 'tenant-2' }),
      createBlindIndex({ ...base, version: 2 }),
      createBlindIndex({ ...base, columns: ['email', 'x'], column: undefined }),
    ];
    const values = await Promise.all(variants.map((v, i) => (i === 5 ? v.compute(['a@b', 'c'] as never) : v.compute('a@b' as never))));
    expect(new Set(values).size).toBe(values.length);
    // Unrelated: no bit agreement beyond chance (for 256-bit outputs, far below the 256 of equal values).
    const bits = (a: string, b: string): number => {
      const x = Buffer.from(a, 'base64url');
      const y = Buffer.from(b, 'base64url');
      let same = 0;
      for (let i = 0; i < 32; i++) for (let k = 0; k < 8; k++) same += ((x[i]! ^ y[i]!) >> k) & 1 ? 0 : 1;
      return same;
    };
    for (let i = 1; i < values.length; i++) expect(bits(values[0]! as string, values[i]! as string)).toBeLessThan(180);
    await hierarchy.close();
  });

  it('rotating the data partition leaves indexes as they are; index versions are created on first use, in order, once each', async () => {
    const { hierarchy, store } = fleet();
    const v1 = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 64, partition: 'tenant-1' });
    const before = await v1.compute('a@b');
    const envelope = createEnvelope({ hierarchy, partition: 'tenant-1' });
    await envelope.seal('x');
    await hierarchy.rotate('tenant-1');
    await envelope.seal('y');
    expect(await v1.compute('a@b')).toBe(before);
    expect((await store.listVersions('tenant-1')).length).toBe(2);
    expect((await store.listVersions(blindIndexPartition('tenant-1'))).map((k) => k.version)).toEqual([1]);

    const v2 = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 64, partition: 'tenant-1', version: 2 });
    const after = await v2.compute('a@b');
    expect(after).not.toBe(before);
    expect((await store.listVersions('tenant-1#blind-index')).map((k) => k.version)).toEqual([1, 2]);
    expect(await v1.compute('a@b')).toBe(before); // version 1 still computes: queries may ask both during a re-index
    // A partition new to the index, at version 3 (a tenant that arrives after two re-indexes): versions 1 to 3
    // are made in order, each once, however many computations race for them.
    const v3 = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 64, partition: 'tenant-9', version: 3 });
    const raced = await Promise.all(Array.from({ length: 8 }, () => v3.compute('a@b')));
    expect(new Set(raced).size).toBe(1);
    expect((await store.listVersions('tenant-9#blind-index')).map((k) => k.version)).toEqual([1, 2, 3]);
    await hierarchy.close();
  });

  it('a per-tenant KMS resolver is asked for the suffixed partition; partitions that would clash are refused', async () => {
    const asked: string[] = [];
    const kms = new InstrumentedProvider();
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: (partition) => (asked.push(partition), kms) });
    const index = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32 });
    await index.compute('v', { partition: 'acme' });
    expect(asked).toContain(`acme${BLIND_INDEX_PARTITION_SUFFIX}`);
    await expect(index.compute('v', { partition: 'acme#blind-index' })).rejects.toBeInstanceOf(RangeError);
    await expect(index.compute('v', { partition: 'x'.repeat(244) })).rejects.toBeInstanceOf(RangeError);
    await expect(index.compute('v')).rejects.toThrow(/partition/);
    await hierarchy.close();
  });
});

describe('sync and async', () => {
  it('computeSync throws BlindIndexNotWarmError until the key is warm, then needs no KMS call', async () => {
    const { hierarchy, kms } = fleet();
    const index = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 32, partition: 'tenant-1' });
    let error: unknown;
    try {
      index.computeSync('a@b');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BlindIndexNotWarmError);
    expect(error).toBeInstanceOf(KeyNotWarmError);
    expect(error).toMatchObject({ code: 'ERR_KEY_NOT_WARM', name: 'BlindIndexNotWarmError', partition: 'tenant-1', version: 1 });
    expect((error as Error).message).toMatch(/^blind index users\.email: .*warm/);
    await index.warm(['tenant-1']);
    const calls = { ...kms.calls };
    const sync = index.computeSync('a@b');
    expect(sync).toBe(await index.compute('a@b'));
    expect(kms.calls).toEqual(calls);
    await hierarchy.close();
  });

  it('a cold computeSync starts the load, so a later one succeeds; the hierarchy keeps its TTL over index keys', async () => {
    let now = 0;
    const kms = new InstrumentedProvider();
    const store = new MemoryKeyStore();
    const hierarchy = createKeyHierarchy({ store, kms, ttlMs: 1000, jitter: 0, now: () => now });
    const index = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, partition: 'p' });
    await index.compute('x'); // creates version 1
    hierarchy.forget();
    expect(() => index.computeSync('x')).toThrow(BlindIndexNotWarmError);
    await vi.waitFor(() => expect(index.computeSync('x')).toBe(index.computeSync('x')));
    now += 2000; // past the TTL: the column key is cached, but the hierarchy decides
    expect(() => index.computeSync('x')).toThrow(BlindIndexNotWarmError);
    await index.compute('x');
    expect(() => index.computeSync('x')).not.toThrow();
    await hierarchy.close();
  });
});

describe('wiping and hiding keys', () => {
  it('close() wipes every column key; eviction wipes the oldest; closed indexes refuse work', async () => {
    const { hierarchy } = fleet();
    const backend = selectBackend('node');
    const seen: Uint8Array[] = [];
    const real = backend.hmacSha256!;
    vi.spyOn(backend, 'hmacSha256').mockImplementation((key, data) => (seen.push(key), real(key, data)));
    const index = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, backend: 'node', maxCachedKeys: 2 });
    for (const p of ['a', 'b', 'c']) await index.compute('v', { partition: p });
    expect(seen.length).toBe(3);
    expect(seen[0]!.every((b) => b === 0)).toBe(true); // evicted
    expect(seen[2]!.some((b) => b !== 0)).toBe(true);
    await index.close();
    expect(seen.every((key) => key.every((b) => b === 0))).toBe(true);
    await expect(index.compute('v', { partition: 'a' })).rejects.toBeInstanceOf(ClosedError);
    expect(() => index.computeSync('v', { partition: 'a' })).toThrow(ClosedError);
    await hierarchy.close();
  });

  it('keys appear in no error, string or inspection', async () => {
    const { hierarchy } = fleet();
    const backend = selectBackend('noble');
    const keys: string[] = [];
    const real = backend.hmacSha256!;
    vi.spyOn(backend, 'hmacSha256').mockImplementation((key, data) => (keys.push(hex(key), Buffer.from(key).toString('base64')), real(key, data)));
    const index = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, backend: 'noble', partition: 'p' });
    await index.compute('v');
    const texts = [String(index), JSON.stringify(index), inspect(index, { depth: 10, showHidden: true })];
    for (const bad of [() => index.computeSync({} as never), () => index.computeSync(Number.NaN), () => index.computeSync('v', { partition: '' })]) {
      try {
        bad();
      } catch (e) {
        texts.push(String(e), inspect(e));
      }
    }
    expect(texts.join('\n')).toContain('BlindIndex { table: "t"');
    for (const key of keys) expect(texts.join('\n')).not.toContain(key);
    await hierarchy.close();
  });
});

describe('warnings', () => {
  it('warns when a low-cardinality column gets an index long enough to be a dictionary', () => {
    const warnings: unknown[] = [];
    const { hierarchy } = fleet();
    const index = createBlindIndex({ hierarchy, table: 'people', column: 'country', bits: 32, expectedDistinctValues: 200, onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([expect.objectContaining({ code: 'dictionary', message: expect.stringContaining('people.country') })]);
    expect(index.warnings).toEqual(warnings);
    expect(blindIndexWarnings({ bits: 32, expectedDistinctValues: 2 ** 16 })).toEqual([]); // 2^(bits/2) distinct values: collisions begin
    expect(blindIndexWarnings({ bits: 32, expectedDistinctValues: 2 ** 16 - 1 })[0]?.code).toBe('dictionary');
    expect(blindIndexWarnings({ bits: 16, expectedDistinctValues: 10 })[0]?.message).toMatch(/no blind index/);
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 256 }), fc.double({ min: 0, max: 2 ** 130, noNaN: true }), (bits, distinct) => {
        const dictionary = blindIndexWarnings({ bits, expectedDistinctValues: distinct }).some((w) => w.code === 'dictionary');
        expect(dictionary).toBe(distinct < 2 ** (bits / 2));
      }),
    );
  });

  it('warns of false positives past one per lookup, and of false conflicts under a UNIQUE constraint', () => {
    expect(expectedFalsePositives(16, 1000)).toBeCloseTo(999 / 65536);
    expect(blindIndexWarnings({ bits: 16, expectedRows: 1e6 }).map((w) => w.code)).toEqual(['false-positives']);
    expect(blindIndexWarnings({ bits: 32, expectedRows: 1e6 })).toEqual([]);
    expect(blindIndexWarnings({ bits: 64, unique: true }).map((w) => w.code)).toEqual(['unique-conflicts']);
    expect(blindIndexWarnings({ bits: 64, unique: true, expectedRows: 1e6 })[0]?.message).toMatch(/UNIQUE/);
    expect(blindIndexWarnings({ bits: 128, unique: true, expectedRows: 1e9 })).toEqual([]);
    expect(() => blindIndexWarnings({ bits: 15 })).toThrow(RangeError);
    expect(() => blindIndexWarnings({ bits: 257 })).toThrow(RangeError);
  });
});

describe('types', () => {
  it('the output and the input follow the options', async () => {
    const { hierarchy } = fleet();
    const asText = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, partition: 'p' });
    expectTypeOf(asText.compute).returns.toEqualTypeOf<Promise<string>>();
    expectTypeOf(asText.computeSync).parameter(0).toEqualTypeOf<BlindIndexValue>();
    const asBytes = createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, partition: 'p', output: 'bytes' });
    expectTypeOf(asBytes.computeSync).returns.toEqualTypeOf<Uint8Array<ArrayBuffer>>();
    const compound = createBlindIndex({ hierarchy, table: 't', columns: ['a', 'b'], bits: 32, partition: 'p' });
    expectTypeOf(compound.computeSync).parameter(0).toEqualTypeOf<CompoundIndexValue>();
    expect((await asBytes.compute('x')).constructor).toBe(Uint8Array);
    expect(typeof (await asText.compute('x'))).toBe('string');
    expect(() => createBlindIndex({ hierarchy, table: 't', column: 'c', bits: 32, output: 'hex' as never })).toThrow(/"output"/);
    expect(() => createBlindIndex({ hierarchy, table: 't', columns: ['a'], bits: 32 })).toThrow(/two or more/);
    expect(() => createBlindIndex({ hierarchy, table: 't', column: 'a\0b', bits: 32 })).toThrow(/U\+0000/);
    await hierarchy.close();
  });
});

describe('README', () => {
  it('the table of false positives is (n - 1) / 2^bits', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Blind indexes'), readme.indexOf('### Suites and backends'));
    const lines = section.split('\n').map((line) => line.trim());
    const rows = lines.filter((line) => /^\| 10\^\d/.test(line));
    expect(rows.length).toBe(7);
    const header = lines.find((line) => line.startsWith('| rows'))!;
    const bits = header.split('|').slice(2, -1).map((c) => Number(c.trim().split(' ')[0]));
    expect(bits).toEqual([16, 24, 32, 48, 64]);
    for (const row of rows) {
      const cells = row.split('|').slice(1, -1).map((c) => c.trim());
      const n = 10 ** Number(cells[0]!.slice(3));
      cells.slice(1).forEach((cell, i) => {
        const expected = expectedFalsePositives(bits[i]!, n);
        const shown = Number(cell.replace('×10^', 'e').replace('−', '-'));
        expect(Math.abs(shown - expected) / expected, `${cells[0]} rows, ${bits[i]} bits: ${cell}`).toBeLessThan(0.05);
      });
    }
  });
});
