/**
 * FORMAT.md §7, §10.2–§10.4 as issue 25 settled them: the order of checks when several bytes are
 * bad, the code when every KMS attempt fails or the cap is reached, a compact payload shorter than
 * 48 bytes, an empty or non-UTF-8 partition, and the intermediate key's context version in decimal;
 * the error tables of FORMAT.md and the README against the library's codes; the Unicode version of
 * the blind-index vectors (§11.3).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeWrappedKeys, parseHeader } from '../src/core/header.ts';
import { KmsError } from '../src/core/errors.ts';
import { MemoryKeyStore } from '../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import { createEnvelope, keyPolicy, LocalKms } from '../src/index.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from '../src/kms/key-provider.ts';
import { InstrumentedProvider } from './instrumented.ts';

/** A hierarchy message (compact, detached context) and what opening it needs. */
async function hierarchyMessage() {
  const kms = new InstrumentedProvider();
  const store = new MemoryKeyStore();
  const hierarchy = createKeyHierarchy({ store, kms });
  const writer = createEnvelope({ hierarchy, compact: true });
  const sealed = await writer.seal('field', { context: { table: 't' }, detachedContext: true, partition: 'acme' });
  const cold = () => {
    const coldKms = new InstrumentedProvider(kms.inner);
    return { kms: coldKms, envelope: createEnvelope({ hierarchy: createKeyHierarchy({ store, kms: coldKms }) }) };
  };
  return { sealed, header: parseHeader(sealed), cold };
}

/** A provider that fails every call, numbering them. */
class Failing implements KeyProvider {
  readonly id: string = 'local';
  calls = 0;
  async generateDataKey(_: GenerateDataKeyRequest): Promise<DataKey> {
    throw new KmsError('no');
  }
  async decryptDataKey(_: DecryptDataKeyRequest): Promise<Uint8Array> {
    this.calls++;
    throw new KmsError(`attempt ${this.calls} failed`, { kind: this.calls === 1 ? 'throttled' : 'unreachable' });
  }
}

describe('FORMAT.md §7.1 order of checks', () => {
  it('A reader MUST report the first failure in the order of this list, so that two readers give one code for one message', async () => {
    const { sealed, header, cold } = await hierarchyMessage();
    const set = (bytes: Uint8Array, changes: Record<number, number>): Uint8Array => Object.assign(bytes.slice(), changes);
    const open = (bytes: Uint8Array, options: Parameters<ReturnType<typeof cold>['envelope']['open']>[1] = { context: { table: 't' } }) => {
      const reader = cold();
      return reader.envelope.open(bytes, options).then(
        () => ({ code: 'ok', calls: reader.kms.calls.decrypt }),
        (e: { code: string }) => ({ code: e.code, calls: reader.kms.calls.decrypt }),
      );
    };
    const truncated = sealed.subarray(0, header.length + 47);
    // Step 1, in byte order: magic, then version, then suite, then flags.
    expect(await open(set(sealed, { 0: 0, 4: 9, 5: 0x77, 6: 0xff }))).toEqual({ code: 'ERR_HEADER_MALFORMED', calls: 0 });
    expect(await open(set(sealed, { 4: 9, 5: 0x77, 6: 0xff }))).toEqual({ code: 'ERR_UNSUPPORTED_VERSION', calls: 0 });
    expect(await open(set(sealed, { 5: 0x77, 6: 0xff }))).toEqual({ code: 'ERR_UNSUPPORTED_SUITE', calls: 0 });
    expect(await open(set(sealed, { 6: 0xff }))).toEqual({ code: 'ERR_HEADER_MALFORMED', calls: 0 });
    // The partition's length 0 before anything after it.
    expect(await open(set(sealed, { 7: 0 }))).toEqual({ code: 'ERR_HEADER_MALFORMED', calls: 0 });
    // Step 2 before 3, 3 before 5, 5 before 6 (the key): no key is loaded for any of them.
    expect(await open(truncated, { partition: 'other' })).toEqual({ code: 'ERR_PARTITION_MISMATCH', calls: 0 });
    expect(await open(truncated, {})).toEqual({ code: 'ERR_CONTEXT_MISMATCH', calls: 0 });
    expect(await open(truncated, { context: { table: 't' }, keyPolicy: keyPolicy({ minKeyVersion: 2 }) })).toEqual({ code: 'ERR_KEY_VERSION_REFUSED', calls: 0 });
    expect(await open(truncated)).toEqual({ code: 'ERR_DECRYPTION_FAILED', calls: 0 });
    // Step 6: a partition the store lacks, with a bad payload too, is the key's failure.
    const elsewhere = set(sealed, { 8: sealed[8]! ^ 1 });
    expect(await open(elsewhere.subarray(0, elsewhere.length - 1))).toMatchObject({ code: 'ERR_KEY_NOT_FOUND' });
    // Step 7: the key loaded, the payload altered.
    expect(await open(set(sealed, { [sealed.length - 1]: sealed[sealed.length - 1]! ^ 1 }))).toEqual({ code: 'ERR_DECRYPTION_FAILED', calls: 1 });
    expect(await open(sealed)).toEqual({ code: 'ok', calls: 1 });
  });
});

describe('FORMAT.md §10.2 KMS attempts', () => {
  it('every attempt failing, or the cap reached, fails with the last attempt\'s ERR_KMS; no wrapped key for the reader is ERR_KEY_PROVIDER_MISMATCH with no call', async () => {
    const writer = createEnvelope({ kms: LocalKms.generate(), format: 2 });
    const one = await writer.seal('x');
    const h = parseHeader(one);
    const three = new Uint8Array([...h.authenticated, ...encodeWrappedKeys([h.wrappedKeys[0]!, h.wrappedKeys[0]!, h.wrappedKeys[0]!]), ...one.subarray(h.length)]);
    const all = new Failing();
    await expect(createEnvelope({ kms: all }).open(three)).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'unreachable', message: expect.stringContaining('attempt 3 failed') });
    expect(all.calls).toBe(3);
    const capped = new Failing();
    await expect(createEnvelope({ kms: capped, maxKmsAttempts: 1 }).open(three)).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'throttled', message: expect.stringContaining('attempt 1 failed') });
    expect(capped.calls).toBe(1);
    const other = Object.defineProperty(new Failing(), 'id', { value: 'tencent' });
    await expect(createEnvelope({ kms: other }).open(three)).rejects.toMatchObject({ code: 'ERR_KEY_PROVIDER_MISMATCH' });
    expect(other.calls).toBe(0);
  });
});

describe('FORMAT.md §10.3 and §10.4', () => {
  it('A compact payload shorter than 48 bytes (salt, commitment and tag) MUST fail as ERR_DECRYPTION_FAILED before any key is loaded', async () => {
    const { sealed, header, cold } = await hierarchyMessage();
    for (const n of [0, 1, 16, 32, 47]) {
      const reader = cold();
      await expect(reader.envelope.open(sealed.subarray(0, header.length + n), { context: { table: 't' } })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
      expect(reader.kms.calls.decrypt, String(n)).toBe(0);
    }
    const kmsMessage = await createEnvelope({ kms: LocalKms.generate(), format: 2, compact: true }).seal('x');
    const h = parseHeader(kmsMessage);
    const failing = new Failing();
    await expect(createEnvelope({ kms: failing }).open(kmsMessage.subarray(0, h.length + 47))).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    expect(failing.calls).toBe(0);
  });

  it('A reader MUST reject a partition length of zero, or a partition that is not well-formed UTF-8, as ERR_HEADER_MALFORMED', async () => {
    const { sealed } = await hierarchyMessage();
    // Offset 7 is the partition's length (a detached context takes no bytes): "acme", 4 bytes.
    expect(sealed[7]).toBe(4);
    const empty = new Uint8Array([...sealed.subarray(0, 7), 0, ...sealed.subarray(12)]);
    expect(() => parseHeader(empty)).toThrow(expect.objectContaining({ code: 'ERR_HEADER_MALFORMED', message: expect.stringContaining('empty partition') }));
    for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const partition = [...bad, ...new TextEncoder().encode('acme')].slice(0, 4);
      const message = Object.assign(sealed.slice(), Object.fromEntries(partition.map((b, i) => [8 + i, b])));
      expect(() => parseHeader(message), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'ERR_HEADER_MALFORMED', message: expect.stringContaining('UTF-8') }));
    }
  });

  it('binds an intermediate key to its version in decimal ASCII without leading zeros', async () => {
    const kms = new InstrumentedProvider();
    const contexts: string[] = [];
    const spy: KeyProvider = {
      id: 'local',
      generateDataKey: (r) => (contexts.push(r.context.json), kms.generateDataKey(r)),
      decryptDataKey: (r) => (contexts.push(r.context.json), kms.decryptDataKey(r)),
    };
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: spy });
    const envelope = createEnvelope({ hierarchy });
    await envelope.seal('v1', { partition: 'p' });
    for (let i = 0; i < 11; i++) await hierarchy.rotate('p');
    await envelope.seal('v12', { partition: 'p' });
    expect(contexts[0]).toBe('{"kms-envelope":"intermediate-key","partition":"p","version":"1"}');
    expect(contexts.at(-1)).toBe('{"kms-envelope":"intermediate-key","partition":"p","version":"12"}');
  });
});

describe('FORMAT.md §7 and the README: the error tables', () => {
  it('name every error code the library has (ERR_KEY_NOT_FOUND, ERR_ROW_VERSION, …), and no other', () => {
    const source = readFileSync(new URL('../src/core/errors.ts', import.meta.url), 'utf8');
    const union = source.slice(source.indexOf('export type EnvelopeErrorCode'), source.indexOf(';', source.indexOf('export type EnvelopeErrorCode')));
    const codes = [...union.matchAll(/'(ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
    expect(codes).toEqual(expect.arrayContaining(['ERR_KEY_NOT_FOUND', 'ERR_ROW_VERSION', 'ERR_FIELD_MALFORMED']));
    const tableOf = (file: string, heading: RegExp): Set<string> => {
      const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
      const start = text.search(heading);
      const rows = text.slice(start).split('\n\n').find((block) => block.startsWith('| code'))!;
      return new Set([...rows.matchAll(/^\| ([^|]+)\|/gm)].flatMap((m) => [...m[1]!.matchAll(/`(ERR_[A-Z_]+)`/g)].map((c) => c[1]!)));
    };
    for (const [file, heading] of [['FORMAT.md', /^## 7\. Errors/m], ['README.md', /^## Errors/m]] as const) {
      expect([...tableOf(file, heading)].sort(), file).toEqual([...codes].sort());
    }
  });
});

describe('FORMAT.md §11.3: the Unicode version of the blind-index vectors', () => {
  /**
   * The Unicode version each non-ASCII character of test/vectors/blind-index.json was assigned in
   * (Unicode's DerivedAge.txt; U+D800 is a surrogate, a lone one refused). A character assigned
   * after 15.0 folds or composes differently on older runtimes, so the vectors hold none: a case
   * that adds a character must add it here with its age.
   */
  const AGE: Record<number, string> = {
    0xa0: '1.1', 0xa7: '1.1', 0xdc: '1.1', 0xdf: '1.1', 0xe9: '1.1', 0xed: '1.1', 0xfc: '1.1', 0x130: '1.1', 0x131: '1.1',
    0x301: '1.1', 0x307: '1.1', 0x394: '1.1', 0x39f: '1.1', 0x3a3: '1.1', 0x3b4: '1.1', 0x3bf: '1.1', 0x3c2: '1.1',
    0x1680: '3.0', 0x180e: '3.0', 0x2000: '1.1', 0x200a: '1.1', 0x200b: '1.1', 0x2028: '1.1', 0x2029: '1.1', 0x202f: '3.0',
    0x205f: '3.2', 0x3000: '1.1', 0xd800: '2.0', 0xfb01: '1.1', 0xfeff: '1.1',
  };

  it('hold only characters of Unicode 15.0, which every supported runtime folds and composes alike', () => {
    const vectors = JSON.parse(readFileSync(new URL('./vectors/blind-index.json', import.meta.url), 'utf8')) as unknown;
    const found = new Set<number>();
    const walk = (v: unknown): void => {
      if (typeof v === 'string') for (const c of v) (c.codePointAt(0)! > 0x7f ? found.add(c.codePointAt(0)!) : undefined);
      else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk(vectors);
    expect(found.size).toBeGreaterThan(10);
    const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    const unknown = [...found].filter((cp) => AGE[cp] === undefined).map(hex);
    expect(unknown, 'characters without a stated Unicode age').toEqual([]);
    const newer = [...found].filter((cp) => Number(AGE[cp]) > 15).map(hex);
    expect(newer).toEqual([]);
    // Assigned in this runtime's Unicode too (surrogates aside): the engine knows every one.
    for (const cp of found) if (cp < 0xd800 || cp > 0xdfff) expect(/\p{Cn}/u.test(String.fromCodePoint(cp)), hex(cp)).toBe(false);
  });
});
