/**
 * The facade: createEnvelope() and the one-off seal(), open() and inspect(). An Envelope seals and
 * opens buffers and batches; everything else takes an Envelope and is imported by whoever needs it
 * (streams: stream.ts, ranges: range.ts, rewrap: rewrap.ts, sealSync/openSync: sync.ts, and in
 * kms-envelope/node the files and Node streams), so that an application bundles only what it uses.
 */
import { type ByteInput, toBytes, utf8DecodeStrict, wipe } from '../core/bytes.ts';
import { plaintextLength } from '../core/chunked.ts';
import { compactPlaintextLength } from '../core/compact.ts';
import type { EncryptionContext } from '../core/context.ts';
import { parseHeader } from '../core/header.ts';
import { type KeyPolicy, policyFindings } from '../core/key-policy.ts';
import type { PayloadSuite } from '../core/suites.ts';
import type { CloseOptions, CloseReport } from '../core/work-in-flight.ts';
import { type Bytes, keyNames, openBuffer, type OpenResult, plaintextOf, sealBuffer } from './buffers.ts';
import { bindCore, createEnvelopeCore, type EnvelopeCore, type EnvelopeOptions, type OpenOptions, type SealOptions } from './engine.ts';

export type { Bytes, OpenResult } from './buffers.ts';
export type { EnvelopeOptions, OpenOptions, SealOptions, StreamSealOptions } from './engine.ts';
export type { KeyPolicy } from '../core/key-policy.ts';
export type { SuiteName } from '../core/suites.ts';

declare global {
  interface SymbolConstructor {
    /**
     * For `await using envelope = createEnvelope(...)`, declared for compilers whose lib lacks
     * explicit resource management (as @types/node declares it).
     */
    readonly asyncDispose: unique symbol;
  }
}

/** The header of a sealed message, read without any KMS call (and with no cryptographic check). */
export interface MessageInfo {
  /** The format version: 1 or 2. */
  version: number;
  suite: PayloadSuite['name'];
  /** `kms`: a data key wrapped by the KMS; `intermediate`: an intermediate key of a key hierarchy. */
  keySource: 'kms' | 'intermediate';
  /** The first wrapped key's provider, or `hierarchy`. */
  provider: string;
  /** The first wrapped key's master key id, or `partition#version`. */
  keyId: string;
  /** Every wrapped key (format 2 may carry several); empty under a key hierarchy. */
  wrappedKeys: { provider: string; keyId: string }[];
  /** Under a key hierarchy: the partition and the intermediate-key version. */
  partition: string | undefined;
  keyVersion: number | undefined;
  /** Format 2: the compact payload of small values. */
  compact: boolean;
  /** Undefined when the context is detached. */
  context: EncryptionContext | undefined;
  detachedContext: boolean;
  headerLength: number;
  /** The first wrapped key's blob length (0 under a key hierarchy). */
  ciphertextBlobLength: number;
  /** Undefined when the payload has an impossible length (truncated). */
  plaintextLength: number | undefined;
}

/** Bytes in (plaintext, sealed messages, chunks): a Uint8Array or Buffer, any other view, or an ArrayBuffer. */
export type { ByteInput } from '../core/bytes.ts';

export interface Envelope {
  seal(plaintext: ByteInput | string, options?: SealOptions): Promise<Bytes>;
  open(sealed: ByteInput, options?: OpenOptions): Promise<Bytes>;
  /** open() and decode the plaintext as UTF-8 (a TypeError if it is not UTF-8). */
  openString(sealed: ByteInput, options?: OpenOptions): Promise<string>;
  /** open() returning the context and key id the message names, too. */
  openWithInfo(sealed: ByteInput, options?: OpenOptions): Promise<OpenResult>;
  /**
   * Refuses new calls (ERR_CLOSED), waits for calls under way (`drain`: true, the default; a number
   * of ms, after which what is still running is refused; false: refuse them at once), then wipes
   * every cached key. The report counts the calls drained and refused.
   */
  close(options?: CloseOptions): Promise<CloseReport>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** An envelope: its state is the engine's core, held privately (and in the engine's map for the functions that take an Envelope). */
class EnvelopeImpl implements Envelope {
  readonly #core: EnvelopeCore;

  constructor(core: EnvelopeCore) {
    this.#core = core;
    bindCore(this, core);
    Object.freeze(this);
  }

  seal(plaintext: ByteInput | string, options?: SealOptions): Promise<Bytes> {
    return this.#core.track(() => sealBuffer(this.#core, plaintext, options));
  }

  open(sealed: ByteInput, options?: OpenOptions): Promise<Bytes> {
    return this.#core.track(() => plaintextOf(openBuffer(this.#core, sealed, options)));
  }

  async openString(sealed: ByteInput, options?: OpenOptions): Promise<string> {
    const plaintext = await this.open(sealed, options);
    const text = utf8DecodeStrict(plaintext);
    wipe(plaintext);
    if (text === undefined) throw new TypeError('the plaintext is not valid UTF-8: use open() for bytes');
    return text;
  }

  openWithInfo(sealed: ByteInput, options?: OpenOptions): Promise<OpenResult> {
    return this.#core.track(() => openBuffer(this.#core, sealed, options, { info: true }));
  }

  close(options?: CloseOptions): Promise<CloseReport> {
    return this.#core.close(options);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#core.close() as Promise<unknown> as Promise<void>;
  }
}

/** Creates an envelope bound to one key provider (or key hierarchy). */
export function createEnvelope(options: EnvelopeOptions): Envelope {
  return new EnvelopeImpl(createEnvelopeCore(options));
}

/** Reads a sealed message's header: no KMS call, no decryption, no cryptographic check. */
export function inspect(input: ByteInput): MessageInfo {
  const sealed = toBytes(input, 'sealed');
  const header = parseHeader(sealed);
  const payloadLength = sealed.length - header.length;
  return {
    version: header.version,
    suite: header.suite.name,
    keySource: header.keySource,
    ...keyNames(header),
    wrappedKeys: header.wrappedKeys.map(({ provider, keyId }) => ({ provider, keyId })),
    partition: header.intermediate?.partition,
    keyVersion: header.intermediate?.version,
    compact: header.compact,
    context: header.context?.pairs,
    detachedContext: header.detached,
    headerLength: header.length,
    ciphertextBlobLength: header.wrappedKeys[0]?.ciphertextBlob.length ?? 0,
    plaintextLength: header.compact ? compactPlaintextLength(payloadLength) : plaintextLength(payloadLength),
  };
}

/**
 * Whether a sealed message (or just its header) falls short of a key policy, read from the header
 * alone (no KMS call): an older format version, an intermediate-key version below the minimum, or
 * a master key that is not current. For sweeps that rewrap or re-seal what needs it.
 */
export function needsRewrap(input: ByteInput, policy: KeyPolicy): boolean {
  return rewrapReasons(input, policy).length > 0;
}

/** needsRewrap's reasons, in words (each names the version or key found); empty when current. */
export function rewrapReasons(input: ByteInput, policy: KeyPolicy): string[] {
  if (policy === null || typeof policy !== 'object') throw new TypeError(`"policy" expected an object, got ${typeof policy}`);
  return policyFindings(parseHeader(toBytes(input, 'sealed')), policy).map((f) => f.message);
}

/** One-off seal: `seal(plaintext, { kms, context })`. */
export function seal(plaintext: ByteInput | string, options: EnvelopeOptions & SealOptions): Promise<Bytes> {
  return createEnvelope(options).seal(plaintext, options);
}

/** One-off open: `open(sealed, { kms, context })`. */
export function open(sealed: ByteInput, options: EnvelopeOptions & OpenOptions): Promise<Bytes> {
  return createEnvelope(options).open(sealed, options);
}
