/**
 * `open FILE` to standard output (hardening item 10): the two passes (verify, then write) read a
 * private spool of the sealed bytes, so a source truncated or rewritten after the start changes
 * nothing that is written; and the data key is wiped on every path, a failed verify pass included.
 */
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type KeyProvider, LocalKms } from '../../src/index.ts';
import { openInto, sealInto } from '../../src/node.ts';
import { finish, MiB, run, type Sandbox, sandbox, start } from './cli-harness.ts';

let box: Sandbox;
const first = Buffer.alloc(8 * MiB, 0x41);
const second = Buffer.alloc(8 * MiB, 0x42);

beforeAll(async () => {
  box = sandbox();
  writeFileSync(box.path('first.txt'), first);
  writeFileSync(box.path('second.txt'), second);
  for (const name of ['first', 'second']) expect((await run(box, ['seal', `${name}.txt`, '-o', `${name}.kmse`])).code).toBe(0);
  // Same sizes: rewriting one with the other keeps every length check happy.
  expect(readFileSync(box.path('first.kmse')).length).toBe(readFileSync(box.path('second.kmse')).length);
});
afterAll(() => box.remove());

/**
 * Starts `open victim.kmse` to a pipe, waits for its first plaintext byte (the verify pass is
 * over), lets `change` alter the source while the CLI waits on the full pipe, then reads the rest.
 */
async function openWhileChanging(change: () => void): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  writeFileSync(box.path('victim.kmse'), readFileSync(box.path('first.kmse')));
  const child = start(box, ['open', 'victim.kmse']);
  child.stdin!.end();
  const out: Buffer[] = [];
  await new Promise<void>((resolve) => {
    child.stdout!.once('data', (d: Buffer) => {
      out.push(d);
      child.stdout!.pause();
      resolve();
    });
  });
  change();
  const rest = finish(child);
  child.stdout!.resume();
  const r = await rest;
  return { code: r.code, stdout: Buffer.concat([...out, r.stdout]), stderr: r.stderr };
}

describe('kms-envelope open to standard output, the source changed between the passes', () => {
  it('rewritten with another message of the same size: the first message is written, whole', async () => {
    const r = await openWhileChanging(() => writeFileSync(box.path('victim.kmse'), readFileSync(box.path('second.kmse'))));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.equals(first)).toBe(true);
  });

  it('truncated: the first message is written, whole', async () => {
    const r = await openWhileChanging(() => truncateSync(box.path('victim.kmse'), 1000));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.equals(first)).toBe(true);
  });
});

describe('openInto with verifyFirst', () => {
  it('wipes the data key when the verifying pass fails', async () => {
    const local = LocalKms.generate();
    let dataKey: Buffer | undefined;
    const kms: KeyProvider = {
      id: local.id,
      generateDataKey: (request) => local.generateDataKey(request),
      decryptDataKey: async (request) => {
        const key = await local.decryptDataKey(request);
        dataKey = Buffer.from(key); // what to look for (Buffer.from: not through the spy below)
        return key;
      },
    };
    const envelope = createEnvelope({ kms });
    const parts: Uint8Array[] = [];
    const plaintext = (async function* () {
      yield new Uint8Array(200_000).fill(7);
    })();
    await sealInto(envelope, plaintext, async (bytes) => {
      for (const b of bytes instanceof Uint8Array ? [bytes] : bytes) parts.push(Buffer.from(b));
    });
    const sealed = Buffer.concat(parts);
    sealed[sealed.length - 1]! ^= 1; // the final chunk fails: only the verifying pass sees it
    writeFileSync(box.path('tampered.kmse'), sealed);

    // Every copy of a key-sized array made during the open: none may still hold the data key after it.
    const copies: Uint8Array[] = [];
    const slice = Uint8Array.prototype.slice;
    Uint8Array.prototype.slice = function (this: Uint8Array, ...args: [number?, number?]) {
      const copy = slice.apply(this, args);
      if (copy.length === 32) copies.push(copy);
      return copy;
    } as typeof slice;
    let written = 0;
    try {
      await expect(openInto(envelope, box.path('tampered.kmse'), async () => void written++, { verifyFirst: true })).rejects.toThrow('decryption failed');
    } finally {
      Uint8Array.prototype.slice = slice;
    }
    expect(written).toBe(0);
    expect(dataKey).toBeDefined();
    expect(copies.filter((c) => Buffer.from(c).equals(dataKey!))).toEqual([]);
  });
});
