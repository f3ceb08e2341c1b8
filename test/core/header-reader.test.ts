/**
 * An independent reader of the header, written from FORMAT.md §2, §3, §5 and §10 alone with
 * Buffer reads (no code of src/core/header.ts), checked against the library's parser on every
 * vector and on messages with several wrapped keys (issue 16 §3), so that the two readings of the
 * bytes cannot drift apart unnoticed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeWrappedKeys, parseHeader } from '../../src/core/header.ts';
import { createEnvelope, LocalKms } from '../../src/index.ts';
import { readVectors, unhex } from '../helpers.ts';

interface Read {
  version: number;
  suite: number;
  detached: boolean;
  keySource: number;
  context: [string, string][] | undefined;
  intermediate: { partition: string; version: number } | undefined;
  wrappedKeys: { provider: string; keyId: string; ciphertextBlob: string }[];
  authenticatedLength: number;
  length: number;
}

/** FORMAT.md, read literally. Throws on anything out of shape. */
function readHeader(bytes: Uint8Array): Read {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > b.length) throw new Error('truncated');
  };
  const u8 = () => (need(1), b[at++]!);
  const u16 = () => (need(2), (at += 2), b.readUInt16BE(at - 2));
  const text = (n: number) => (need(n), (at += n), b.toString('utf8', at - n, at));
  if (!b.subarray(0, 4).equals(Buffer.from([0x89, 0x4b, 0x4d, 0x45]))) throw new Error('magic');
  at = 4;
  const version = u8();
  const suite = u8();
  const flags = u8();
  if (version !== 1 && version !== 2) throw new Error('version');
  const detached = version === 1 ? flags === 1 : (flags & 1) === 1;
  const keySource = version === 1 ? 0 : (flags >> 2) & 3;
  let context: [string, string][] | undefined;
  if (!detached) {
    context = [];
    for (let n = u16(); n > 0; n--) context.push([text(u16()), text(u16())]);
  }
  let intermediate: Read['intermediate'];
  if (keySource === 1) {
    const partition = text(u8());
    let value = 0;
    for (let i = 0, scale = 1; ; i++, scale *= 128) {
      const byte = u8();
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) break;
    }
    intermediate = { partition, version: value };
  }
  const authenticatedLength = at;
  const wrappedKeys: Read['wrappedKeys'] = [];
  if (keySource === 0) {
    const count = version === 1 ? 1 : u8();
    if (count < 1 || count > 8) throw new Error('count');
    for (let i = 0; i < count; i++) wrappedKeys.push({ provider: text(u8()), keyId: text(u16()), ciphertextBlob: text(u16()) });
  }
  return { version, suite, detached, keySource, context, intermediate, wrappedKeys, authenticatedLength, length: at };
}

function agree(bytes: Uint8Array): Read {
  const mine = readHeader(bytes);
  const theirs = parseHeader(bytes);
  expect(mine.version).toBe(theirs.version);
  expect(mine.suite).toBe(theirs.suite.id);
  expect(mine.detached).toBe(theirs.detached);
  expect(mine.keySource).toBe(theirs.keySource === 'kms' ? 0 : 1);
  expect(mine.context).toEqual(theirs.context === undefined ? undefined : Object.entries(theirs.context.pairs));
  expect(mine.intermediate).toEqual(theirs.intermediate);
  expect(mine.wrappedKeys).toEqual(theirs.wrappedKeys);
  expect(mine.authenticatedLength).toBe(theirs.authenticated.length);
  expect(mine.length).toBe(theirs.length);
  return mine;
}

describe('an independent header reader agrees with the library', () => {
  for (const file of ['envelope-v1.json', 'envelope-v2.json', 'envelope-sm4.json']) {
    it(`on every well-formed message of ${file}`, () => {
      const vectors = readVectors<{ cases: { name: string; sealed: string; expect: string }[] }>(file);
      let read = 0;
      for (const c of vectors.cases) {
        let parsed = true;
        try {
          parseHeader(unhex(c.sealed));
        } catch {
          parsed = false;
        }
        if (!parsed) continue;
        agree(unhex(c.sealed));
        read++;
      }
      expect(read).toBeGreaterThan(0);
    });
  }

  it('on messages sealed with several wrapped keys, and on any list of 1 to 8 wrapped keys', async () => {
    const kms = new LocalKms({ a: new Uint8Array(32).fill(1), b: new Uint8Array(32).fill(2) });
    const sealed = await createEnvelope({ kms, additionalWrapping: [{ kms, keyId: 'b' }, { kms, keyId: 'a' }] }).seal('x', { context: { t: 'ü' } });
    expect(agree(sealed).wrappedKeys.map((w) => w.keyId)).toEqual(['a', 'b', 'a']);
    const h = parseHeader(sealed);
    const wrapped = fc.record({
      provider: fc.stringMatching(/^[a-z0-9._-]{1,32}$/),
      keyId: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
      ciphertextBlob: fc.string({ minLength: 1, maxLength: 200 }),
    });
    fc.assert(
      fc.property(fc.array(wrapped, { minLength: 1, maxLength: 8 }), (keys) => {
        const bytes = new Uint8Array([...h.authenticated, ...encodeWrappedKeys(keys), ...sealed.subarray(h.length)]);
        expect(agree(bytes).wrappedKeys).toEqual(keys);
      }),
      { numRuns: 200 },
    );
  });
});
