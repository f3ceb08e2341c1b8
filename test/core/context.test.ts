/**
 * The context at the boundary (src/core/context.ts): each caller's context is read once into a
 * plain snapshot, and the memo of recent contexts is keyed by exactly what is encoded; only plain
 * objects and Map<string, string> are contexts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalContext, contextTemplate, parseContext } from '../../src/core/context.ts';
import { createEnvelope, LocalKms } from '../../src/index.ts';

const pairsOf = (context: unknown): Record<string, string> => ({ ...parseContext(canonicalContext(context).encoded, 0).context.pairs });

describe('context poisoning: each context is read once, and the memo key is what is encoded', () => {
  it('a getter that answers differently on each read cannot map a plain context to another one', () => {
    let reads = 0;
    const tricky = {
      get tenant(): string {
        return reads++ === 0 ? 'victim-getter' : 'attacker-getter';
      },
    };
    const first = pairsOf(tricky);
    // The memo must not hand a plain context another context's encoding, now or later.
    for (let i = 0; i < 3; i++) {
      expect(pairsOf({ tenant: 'victim-getter' })).toEqual({ tenant: 'victim-getter' });
      expect(pairsOf({ tenant: 'attacker-getter' })).toEqual({ tenant: 'attacker-getter' });
    }
    expect(reads).toBe(1); // read once, whatever it answered
    expect(first).toEqual({ tenant: 'victim-getter' });
  });

  it('a Proxy that answers differently on each read cannot map a plain context to another one', () => {
    let gets = 0;
    const tricky = new Proxy({ tenant: 'x' } as Record<string, string>, {
      get: (target, key) => (key === 'tenant' ? (gets++ % 2 === 0 ? 'victim-proxy' : 'attacker-proxy') : Reflect.get(target, key)),
    });
    const first = pairsOf(tricky);
    for (let i = 0; i < 3; i++) {
      expect(pairsOf({ tenant: 'victim-proxy' })).toEqual({ tenant: 'victim-proxy' });
      expect(pairsOf({ tenant: 'attacker-proxy' })).toEqual({ tenant: 'attacker-proxy' });
    }
    expect(gets).toBe(1);
    expect(first).toEqual({ tenant: 'victim-proxy' });
  });

  it("a poisoned context cannot make open() accept another tenant's message", async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    const attackers = await envelope.seal('attacker data', { context: { tenant: 'attacker-open' } });
    let reads = 0;
    const tricky = {
      get tenant(): string {
        return reads++ === 0 ? 'victim-open' : 'attacker-open';
      },
    };
    await envelope.seal('anything', { context: tricky });
    await expect(envelope.open(attackers, { context: { tenant: 'victim-open' } })).rejects.toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    expect(await envelope.openString(attackers, { context: { tenant: 'attacker-open' } })).toBe('attacker data');
  });
});

describe('contexts that are not plain objects', () => {
  it('a Map<string, string> is a context, encoded exactly as the plain object with the same pairs', () => {
    const map = new Map([
      ['table', 'users'],
      ['row', '42'],
    ]);
    const fromMap = canonicalContext(map);
    const fromObject = canonicalContext({ row: '42', table: 'users' });
    expect(Buffer.from(fromMap.encoded).equals(Buffer.from(fromObject.encoded))).toBe(true);
    expect(fromMap.json).toBe('{"row":"42","table":"users"}');
    expect(pairsOf(new Map())).toEqual({});
    // A Map with non-string keys or values is refused, naming the key (never the value).
    expect(() => canonicalContext(new Map([[1, 'v']]))).toThrow(TypeError);
    expect(() => canonicalContext(new Map([['k', 1]]))).toThrow(/key "k".*number/);
  });

  it('plain objects (prototype Object.prototype or null) are contexts', () => {
    const bare = Object.create(null) as Record<string, string>;
    bare.b = '2';
    bare.a = '1';
    expect(pairsOf(bare)).toEqual({ a: '1', b: '2' });
    expect(pairsOf({})).toEqual({});
    expect(pairsOf(undefined)).toEqual({});
  });

  it.each([
    ['a Set', new Set(['a']), /Set/],
    ['a Date', new Date(0), /Date/],
    ['URLSearchParams', new URLSearchParams('tenant=a'), /URLSearchParams/],
    ['a class instance', new (class TenantContext {
      tenant = 'a';
    })(), /TenantContext/],
    ['an array', [['tenant', 'a']], /Array/],
    ['an object whose pairs come from its prototype', Object.create({ tenant: 'a' }) as object, /prototype/],
    ['a Uint8Array', new Uint8Array(2), /Uint8Array/],
    ['a string', 'tenant=a', /string/],
    ['null', null, /null/],
  ])('%s is refused with a TypeError that names what was given', (_what, context, names) => {
    let error: unknown;
    try {
      canonicalContext(context);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(names);
  });

  it('a value that is not a string is refused, naming the key and never the value', () => {
    const secret = { toString: () => 'SECRET-VALUE' };
    for (const value of [42, true, null, undefined, secret, ['SECRET-VALUE'], 10n]) {
      let error: unknown;
      try {
        canonicalContext({ tenant: 'a', note: value });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toContain('"note"');
      expect((error as Error).message).not.toContain('SECRET-VALUE');
      expect((error as Error).message).not.toContain('42');
    }
  });

  it('symbol keys are refused', () => {
    expect(() => canonicalContext({ tenant: 'a', [Symbol('s')]: 'b' })).toThrow(TypeError);
    const hidden = { tenant: 'a' };
    Object.defineProperty(hidden, Symbol.for('x'), { value: 'b', enumerable: false });
    expect(() => canonicalContext(hidden)).toThrow(/symbol/i);
  });
});

describe('contextTemplate: one varying value over fixed pairs (database field bindings)', () => {
  const text = fc.string({ unit: 'grapheme', maxLength: 40 });
  it('gives the bytes, pairs and JSON that canonicalContext gives for the whole map', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), text, { maxKeys: 6 }), fc.string({ minLength: 1, maxLength: 12 }), text, (fixed, key, value) => {
        const rest = { ...fixed };
        delete rest[key];
        const made = contextTemplate(rest, key)(value);
        const whole = canonicalContext({ ...rest, [key]: value });
        expect(Buffer.from(made.encoded).equals(Buffer.from(whole.encoded))).toBe(true);
        expect(made.json).toBe(whole.json);
        expect({ ...made.pairs }).toEqual({ ...whole.pairs });
        expect(canonicalContext(made)).toBe(made); // taken as it is, not read again
      }),
      { numRuns: 300 },
    );
  });

  it('checks the varying value as canonicalContext does: well-formed, within the limits', () => {
    const row = contextTemplate({ table: 't', column: 'c' }, 'row');
    expect(() => row('\ud800')).toThrow(TypeError);
    expect(() => row('x'.repeat(4097))).toThrow(RangeError);
    expect(row('x'.repeat(4096)).encoded.length).toBeGreaterThan(4096);
  });

  it('is not forged by an object that looks like one', () => {
    const real = contextTemplate({ a: '1' }, 'b')('2');
    const fake = Object.assign(Object.create(Object.getPrototypeOf(real) as object) as object, { encoded: new Uint8Array([0, 0]) });
    expect(() => canonicalContext(fake)).toThrow(TypeError); // not a plain object: refused, not taken as canonical
  });
});
