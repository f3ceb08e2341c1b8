/**
 * Our own known-answer vectors (test/vectors/envelope-v1.json): whole messages sealed with a fixed
 * local master key and injected randomness. Positive cases are sealed again and compared byte for
 * byte, so the format cannot change by accident; every case is opened and checked.
 * UPDATE_VECTORS=1 rewrites the file (only for a new format version).
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createEnvelope, type EncryptionContext, LocalKms, type SuiteName } from '../src/index.ts';
import { sm4 } from '../src/sm4.ts';
import { parseHeader } from '../src/core/header.ts';
import { hex, readVectors, seededRandom, unhex } from './helpers.ts';

interface VectorCase {
  name: string;
  suite: SuiteName;
  context: EncryptionContext;
  detached: boolean;
  plaintext: string;
  /** Context passed to open(); null: none; default: `context` when detached, none when stored. */
  openContext?: EncryptionContext | null;
  sealed: string;
  expect: 'ok' | string;
}
interface VectorFile {
  comment: string;
  masterKey: string;
  keyId: string;
  cases: VectorCase[];
}

const MASTER_KEY = hex(Uint8Array.from({ length: 32 }, (_, i) => i));
const KEY_ID = 'default';
const pattern = (n: number): string => hex(Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));
const text = (s: string): string => hex(new TextEncoder().encode(s));

type Positive = Omit<VectorCase, 'sealed' | 'expect'>;
const POSITIVE: Positive[] = [
  { name: 'hello, stored context', suite: 'cobblestone-256', context: { table: 'users', row: '42' }, detached: false, plaintext: text('hello') },
  { name: 'empty message, empty context', suite: 'cobblestone-256', context: {}, detached: false, plaintext: '' },
  { name: 'one full chunk and an empty final chunk', suite: 'cobblestone-256', context: { file: 'a.bin' }, detached: false, plaintext: pattern(16384) },
  { name: 'cobblestone-128, two chunks', suite: 'cobblestone-128', context: { file: 'b.bin' }, detached: false, plaintext: pattern(20000) },
  { name: 'detached context', suite: 'cobblestone-256', context: { tenant: 'acme', row: '7' }, detached: true, plaintext: text('card 4111 1111 1111 1111') },
  { name: 'unicode context', suite: 'cobblestone-256', context: { 名前: '値', emoji: '🔐', e: 'é' }, detached: false, plaintext: text('ü') },
  { name: 'hello again, same context (donor of a wrapped key)', suite: 'cobblestone-256', context: { table: 'users', row: '42' }, detached: false, plaintext: text('hello again') },
];

function kmsFor(random: (n: number) => Uint8Array): LocalKms {
  return new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) }, { randomBytes: random });
}

async function sealCase(c: Positive): Promise<Uint8Array> {
  const random = seededRandom(`kms-envelope vectors v1: ${c.name}`);
  const envelope = createEnvelope({ kms: kmsFor(random), suite: c.suite, randomBytes: random });
  return envelope.seal(unhex(c.plaintext), { context: c.context, detachedContext: c.detached });
}

function flip(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice();
  out[index < 0 ? out.length + index : index]! ^= 0x01;
  return out;
}

async function generate(): Promise<VectorFile> {
  const cases: VectorCase[] = [];
  const sealed: Record<string, Uint8Array> = {};
  for (const c of POSITIVE) {
    sealed[c.name] = await sealCase(c);
    cases.push({ ...c, sealed: hex(sealed[c.name]!), expect: 'ok' });
  }
  const hello = sealed['hello, stored context']!;
  const donor = sealed['hello again, same context (donor of a wrapped key)']!;
  const detached = sealed['detached context']!;
  const base = POSITIVE[0]!;
  const neg = (name: string, bytes: Uint8Array, expectCode: string, extra: Partial<VectorCase> = {}): void => {
    cases.push({ ...base, ...extra, name, sealed: hex(bytes), expect: expectCode });
  };
  const h = parseHeader(hello);
  const d = parseHeader(donor);
  const auth = h.authenticated.length;
  neg('bit flipped in the last tag', flip(hello, -1), 'ERR_DECRYPTION_FAILED');
  neg('bit flipped in the salt', flip(hello, h.length), 'ERR_DECRYPTION_FAILED');
  neg('bit flipped in the commitment', flip(hello, h.length + 30), 'ERR_DECRYPTION_FAILED');
  neg(
    'wrapped key of another message under the same context',
    new Uint8Array(Buffer.concat([hello.subarray(0, auth), donor.subarray(auth, d.length), hello.subarray(h.length)])),
    'ERR_DECRYPTION_FAILED',
  );
  neg('detached context opened with another context', detached, 'ERR_DECRYPTION_FAILED', {
    ...POSITIVE[4]!,
    openContext: { tenant: 'acme', row: '8' },
  });
  neg('detached context opened without a context', detached, 'ERR_CONTEXT_MISMATCH', { ...POSITIVE[4]!, openContext: null });
  neg('stored context opened with another context', hello, 'ERR_CONTEXT_MISMATCH', { openContext: { table: 'users', row: '43' } });
  neg('truncated by one byte', hello.subarray(0, hello.length - 1), 'ERR_DECRYPTION_FAILED');
  neg('one byte appended', new Uint8Array([...hello, 0]), 'ERR_DECRYPTION_FAILED');
  neg('version 3', Object.assign(hello.slice(), { 4: 3 }), 'ERR_UNSUPPORTED_VERSION');
  // Suite 03 is SM4 since issue 16: this message's 32-byte data key is the wrong length for it.
  neg('suite 0x03 (SM4) over a 32-byte data key', Object.assign(hello.slice(), { 5: 3 }), 'ERR_DECRYPTION_FAILED');
  neg('context mode 0x02', Object.assign(hello.slice(), { 6: 2 }), 'ERR_HEADER_MALFORMED');
  // Swap the two context pairs: same pairs, non-canonical order.
  const rowPair = hello.subarray(9, 9 + 2 + 3 + 2 + 2);
  const tablePair = hello.subarray(9 + rowPair.length, auth);
  neg(
    'context pairs out of order',
    new Uint8Array(Buffer.concat([hello.subarray(0, 9), tablePair, rowPair, hello.subarray(auth)])),
    'ERR_HEADER_MALFORMED',
  );
  const bigKeyId = hello.slice();
  bigKeyId.set([0xff, 0xff], auth + 1 + 5);
  neg('key id length 65535', bigKeyId, 'ERR_LIMIT_EXCEEDED');
  neg('base64 text instead of bytes', new TextEncoder().encode(Buffer.from(hello).toString('base64')), 'ERR_HEADER_MALFORMED');
  neg('empty input', new Uint8Array(0), 'ERR_HEADER_MALFORMED');
  neg('suite 0x04 (reserved)', Object.assign(hello.slice(), { 5: 4 }), 'ERR_UNSUPPORTED_SUITE');
  return {
    comment:
      'kms-envelope FORMAT.md v1 vectors. LocalKms master key `masterKey` under key id `keyId`; randomness is HMAC-SHA-512(seed, counter) with seed "kms-envelope vectors v1: <name>" (test/helpers.ts seededRandom), shared by LocalKms and seal(). Hex throughout.',
    masterKey: MASTER_KEY,
    keyId: KEY_ID,
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  const file = await generate();
  writeFileSync(new URL('./vectors/envelope-v1.json', import.meta.url), `${JSON.stringify(file, null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('envelope-v1.json');

describe('envelope-v1 vectors', () => {
  it('cover positive and negative cases', () => {
    expect(vectors.cases.filter((c) => c.expect === 'ok').length).toBe(POSITIVE.length);
    expect(vectors.cases.filter((c) => c.expect !== 'ok').length).toBeGreaterThanOrEqual(15);
  });

  it.each(POSITIVE)('seals "$name" to the recorded bytes, byte for byte', async (c) => {
    const recorded = vectors.cases.find((v) => v.name === c.name)!;
    expect(hex(await sealCase(c))).toBe(recorded.sealed);
  });

  it.each(vectors.cases)('opens "$name" as $expect', async (c) => {
    // suites: [sm4], so that a suite byte changed to 03 fails as the recorded ERR_DECRYPTION_FAILED (test/sm4/ checks the error without it).
    const envelope = createEnvelope({ kms: new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }), suites: [sm4] });
    const openContext = c.openContext === undefined ? (c.detached ? c.context : null) : c.openContext;
    const options = openContext === null ? {} : { context: openContext };
    if (c.expect === 'ok') {
      const result = await envelope.openWithInfo(unhex(c.sealed), options);
      expect(hex(result.plaintext)).toBe(c.plaintext);
      expect({ ...result.context }).toEqual(c.context);
    } else {
      await expect(envelope.open(unhex(c.sealed), options)).rejects.toMatchObject({ code: c.expect });
    }
  });
});

describe('FORMAT.md §8 worked example', () => {
  it('has the key schedule FORMAT.md states', async () => {
    const { deriveKeys } = await import('../src/core/chunked.ts');
    const { COBBLESTONE_256 } = await import('../src/core/suites.ts');
    const { selectBackend } = await import('../src/core/select-backend.ts');
    const sealed = unhex(vectors.cases[0]!.sealed);
    const header = parseHeader(sealed);
    const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) });
    const dataKey = await kms.decryptDataKey({ ...header.wrappedKeys[0]!, keySpec: 'AES_256', context: header.context! });
    expect(hex(dataKey)).toBe('d3bbe1cca066a4bf5b8bf6aadc067347d458a2299841917f35d489607277e7b3');
    expect(header.authenticated.length).toBe(32);
    const keys = deriveKeys(selectBackend(), COBBLESTONE_256, dataKey, sealed.subarray(header.length, header.length + 24), header.authenticated);
    expect(hex(keys.key)).toBe('1ccc23142b723da552021ef05285375f807024172fa02c1b1e39d77192dbf618');
    expect(hex(keys.baseNonce)).toBe('8a62fa2904f91b723b48af90');
    expect(hex(keys.commitment)).toBe('993fac3bbf5fb1b2c6208586982e0ead4beef294aee3bd0bded88d4804e5b11a');
    expect(sealed.length).toBe(210);
  });
});
