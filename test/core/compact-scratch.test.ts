/**
 * The compact sealer's reused message keys (core/compact.ts KeyScratch): one sealer at a time holds
 * them; a sealer made while they are taken derives its own, so two sealers alive together (one held
 * across an await) each seal under their own keys; every set is wiped when its sealer is done.
 */
import { describe, expect, it } from 'vitest';
import { CompactSealer, compactSealedLength, openCompact } from '../../src/core/compact.ts';
import { selectBackend } from '../../src/core/select-backend.ts';
import { COBBLESTONE_256 } from '../../src/core/suites.ts';

const backend = selectBackend('node');
const key = new Uint8Array(32).fill(7);
const context = new TextEncoder().encode('context');
const salt = (n: number): Uint8Array => new Uint8Array(16).fill(n);

function sealWith(sealer: CompactSealer, plaintext: Uint8Array): Uint8Array {
  const out = new Uint8Array(compactSealedLength(plaintext.length)!);
  sealer.seal(plaintext, out, 0);
  return out;
}

const open = (payload: Uint8Array): Uint8Array => openCompact({ crypto: backend, suite: COBBLESTONE_256, key, context }, payload);

describe('CompactSealer: reused message keys', () => {
  it('two sealers alive together seal under their own keys, in either order, and each opens', () => {
    const first = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(1));
    const second = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(2)); // made while the first holds the scratch
    const b = sealWith(second, Uint8Array.of(2, 2, 2));
    const a = sealWith(first, Uint8Array.of(1, 1, 1));
    expect([...open(a)]).toEqual([1, 1, 1]);
    expect([...open(b)]).toEqual([2, 2, 2]);
    // And the scratch is free again: the next two take it and a fresh set, and still agree.
    const third = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(3));
    const fourth = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(4));
    const d = sealWith(fourth, Uint8Array.of(4));
    third.destroy(); // destroyed unused: gives the scratch back wiped
    const fifth = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(5));
    expect([...open(sealWith(fifth, Uint8Array.of(5)))]).toEqual([5]);
    expect([...open(d)]).toEqual([4]);
  });

  it('a sealer seals once; its keys are wiped after, and a second seal is refused', () => {
    const sealer = new CompactSealer(backend, COBBLESTONE_256, key, context, salt(6));
    sealWith(sealer, Uint8Array.of(6));
    expect(() => sealWith(sealer, Uint8Array.of(6))).toThrow(/already used/);
  });
});
