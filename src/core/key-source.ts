/**
 * The seam between the envelope's engine and a key hierarchy: what the engine (and the record
 * API's blind indexes) need from a source of intermediate keys. A hierarchy attaches its source to
 * the public object it returns; the engine finds it here. The map is private to this module, so the
 * public `KeyHierarchy` type has no method that hands out key bytes.
 */
import type { OpenAuditBatch } from './audit-batch.ts';
import type { CryptoBackend } from './backend.ts';
import type { CanonicalContext } from './context.ts';
import type { IntermediateKeyRef } from './header.ts';
import type { Suite } from './suites.ts';

/** The input key of one suite, derived from a loaded intermediate key (owned by the hierarchy). */
export interface SuiteKey {
  readonly ref: IntermediateKeyRef;
  readonly key: Uint8Array;
  readonly state: ReturnType<NonNullable<CryptoBackend['hkdfPrepareSha512']>> | undefined;
  readonly fromCache: boolean;
}

export interface KeySource {
  /**
   * The active version's input key for sealing, synchronously when it is in memory. The key is the
   * hierarchy's: use it before yielding, never wipe it.
   */
  sealKey(partition: string, suite: Suite): SuiteKey | Promise<SuiteKey>;
  /** A version's input key for opening: as sealKey. */
  openKey(ref: IntermediateKeyRef, suite: Suite): SuiteKey | Promise<SuiteKey>;
  /** Reports an open to the audit hook. */
  audited(key: SuiteKey, context: CanonicalContext, metadata: Readonly<Record<string, unknown>> | undefined): void;
  /** Whether the hierarchy has an audit hook (the record API then batches its opens). */
  readonly auditing?: boolean;
  /** Reports one record-API call's opens (noted into `batch` by audited()) as one audit record. */
  auditedBatch?(batch: OpenAuditBatch, call: { table: string; rows: number; failed: number }): void;
}

/** What an envelope or a blind index accepts as `hierarchy`: a KeyHierarchy from createKeyHierarchy(). */
export interface KeySourceOwner {
  warm(partitions: readonly string[], options?: { spreadMs?: number }): Promise<void>;
}

const sources = new WeakMap<object, KeySource>();

/** Called once by createKeyHierarchy on the object it returns. */
export function attachKeySource(owner: KeySourceOwner, source: KeySource): void {
  sources.set(owner, source);
}

/** The key source behind a hierarchy, or undefined for anything createKeyHierarchy did not make. */
export function keySourceOf(owner: unknown): KeySource | undefined {
  return typeof owner === 'object' && owner !== null ? sources.get(owner) : undefined;
}
