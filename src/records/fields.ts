/**
 * One field of a row, sealed or opened through the envelope: encoded into its typed plaintext
 * (field-value.ts), bound to its row (binding.ts), stored as text or bytes. Every plaintext is
 * wiped once sealed or decoded, whether that succeeds or throws.
 */
import { TRANSIENT_OUTPUT, wipe } from '../core/bytes.ts';
import { EnvelopeError } from '../core/errors.ts';
import { type EncryptionContext, type Envelope, openSync as openMessageSync, sealSync as sealMessageSync } from '../index.ts';
import { bindingOf, keyVersionOf, looksSealed, type RowContext } from './binding.ts';
import { decodeFieldValue, encodeFieldValue, fieldFromText, fieldMalformed, fieldToText, isFieldValue } from './field-value.ts';
import { type AnyTable, type FieldSpec, RecordFieldError } from './table.ts';

/** Legacy plaintext values read in migration mode, per `table.column`. */
type LegacyCounts = Record<string, number>;

export const notWarm = (error: unknown): boolean => error instanceof EnvelopeError && error.code === 'ERR_KEY_NOT_WARM';

const stored = (field: FieldSpec, sealed: Uint8Array): unknown => (field.encoding === 'bytes' ? sealed : fieldToText(sealed));

function fieldOf(t: AnyTable, column: string): FieldSpec {
  const field = t.columns[column];
  if (!field) throw new TypeError(`table ${t.name} has no encrypted column ${column}`);
  return field;
}

/** The value of a column as decoded plaintext, wiped whatever happens. */
function decoded(r: RowContext, column: string, field: FieldSpec, plaintext: Uint8Array): unknown {
  try {
    const value = decodeFieldValue(field.type, plaintext, field.scale);
    if (value === undefined) throw new RecordFieldError(r.table.name, column, r.key.values, fieldMalformed(field.type, plaintext, field.scale));
    return value;
  } finally {
    wipe(plaintext);
  }
}

/** Seals and opens the fields of rows with one envelope; counts the legacy values it reads. */
export class FieldCipher {
  readonly #envelope: Envelope;
  readonly #legacy: LegacyCounts;

  constructor(envelope: Envelope, legacy: LegacyCounts) {
    this.#envelope = envelope;
    this.#legacy = legacy;
  }

  sealAsync(r: RowContext, column: string, value: unknown): Promise<unknown> {
    const { field, plaintext, options } = this.#sealPlan(r, column, value);
    return this.#envelope.seal(plaintext, options).then(
      (sealed) => {
        wipe(plaintext);
        return this.#stored(r, field, sealed);
      },
      (error: unknown) => {
        wipe(plaintext);
        throw error;
      },
    );
  }

  sealNow(r: RowContext, column: string, value: unknown): unknown {
    const { field, plaintext, options } = this.#sealPlan(r, column, value);
    try {
      return this.#stored(r, field, sealMessageSync(this.#envelope, plaintext, options));
    } finally {
      wipe(plaintext);
    }
  }

  // The row's partition goes to every open: a value sealed for another fails before its key is loaded.
  async openAsync(r: RowContext, column: string, value: unknown): Promise<unknown> {
    const plan = this.#openPlan(r, column, value);
    if ('legacy' in plan) return value;
    let plaintext: Uint8Array;
    try {
      const context = bindingOf(r, column);
      plaintext = await this.#envelope.open(plan.sealed, r.audit ? { context, partition: r.partition, audit: r.audit as unknown as Readonly<Record<string, unknown>> } : { context, partition: r.partition });
    } catch (error) {
      throw new RecordFieldError(r.table.name, column, r.key.values, error);
    }
    return decoded(r, column, plan.field, plaintext);
  }

  openNow(r: RowContext, column: string, value: unknown): unknown {
    const plan = this.#openPlan(r, column, value);
    if ('legacy' in plan) return value;
    return decoded(r, column, plan.field, this.#openSealed(r, column, plan.sealed));
  }

  /**
   * A stored value sealed again under the partition's active key version: its plaintext goes from
   * open to seal as bytes. Legacy plaintext (migration mode) is sealed. The value of an indexed
   * column is decoded and pushed to `indexValues` for its blind index (the caller wipes it).
   */
  resealNow(r: RowContext, column: string, value: unknown, indexValues: [string, unknown][], from: RowContext = r): unknown {
    const field = r.table.columns[column]!;
    const context = bindingOf(r, column);
    // An unversioned row (§12.4) opens without the row version it is sealed again under.
    const plaintext = this.#resealPlaintext(from, column, value, { context: from.version === r.version ? context : undefined, indexValues });
    try {
      const sealed = sealMessageSync(this.#envelope, plaintext, { context, detachedContext: true, partition: r.partition });
      return this.#stored(r, field, sealed);
    } finally {
      wipe(plaintext);
    }
  }

  /** The plaintext a reseal seals: the opened value, or the encoded legacy value. */
  #resealPlaintext(r: RowContext, column: string, value: unknown, to: { context: EncryptionContext | undefined; indexValues: [string, unknown][] }): Uint8Array {
    const plan = this.#openPlan(r, column, value);
    const field = r.table.columns[column]!;
    if ('legacy' in plan) {
      const plaintext = encodeFieldValue(field.type, value, `${r.table.name}.${column}`, field.scale);
      if (field.index || field.search) to.indexValues.push([column, value]);
      return plaintext;
    }
    const plaintext = this.#openSealed(r, column, plan.sealed, to.context);
    const indexed = field.index !== undefined || field.search !== undefined;
    const indexValue = indexed ? decodeFieldValue(field.type, plaintext, field.scale) : undefined;
    if (indexed ? indexValue === undefined : !isFieldValue(field.type, plaintext, field.scale)) {
      const malformed = fieldMalformed(field.type, plaintext, field.scale);
      wipe(plaintext);
      throw new RecordFieldError(r.table.name, column, r.key.values, malformed);
    }
    if (indexed) to.indexValues.push([column, indexValue]);
    return plaintext;
  }

  /** The plaintext of a sealed value, synchronously; KeyNotWarmError goes through as it is. */
  #openSealed(r: RowContext, column: string, sealed: Uint8Array, context?: EncryptionContext): Uint8Array {
    try {
      const bound = context ?? bindingOf(r, column);
      return openMessageSync(this.#envelope, sealed, r.audit ? { context: bound, partition: r.partition, audit: r.audit as unknown as Readonly<Record<string, unknown>> } : { context: bound, partition: r.partition });
    } catch (error) {
      if (notWarm(error)) throw error;
      throw new RecordFieldError(r.table.name, column, r.key.values, error);
    }
  }

  /** What sealing one field needs: the plaintext (the caller wipes it) and the envelope options. */
  #sealPlan(r: RowContext, column: string, value: unknown) {
    const field = fieldOf(r.table, column);
    const plaintext = encodeFieldValue(field.type, value, `${r.table.name}.${column}`, field.scale);
    // The text form reads the sealed bytes once: they may be a slab view (core/bytes.ts TRANSIENT_OUTPUT).
    const transient = field.encoding !== 'bytes';
    return { field, plaintext, options: { context: bindingOf(r, column), detachedContext: true, partition: r.partition, [TRANSIENT_OUTPUT]: transient } };
  }

  /** The stored form of a sealed value; its key version noted when the row keeps them. */
  #stored(r: RowContext, field: FieldSpec, sealed: Uint8Array): unknown {
    if (r.versions) r.versions.push(keyVersionOf(sealed)!);
    return stored(field, sealed);
  }

  /** The sealed bytes of a stored value, or a marker that it is legacy plaintext (migration mode). */
  #openPlan(r: RowContext, column: string, value: unknown): { sealed: Uint8Array; field: FieldSpec } | { legacy: true } {
    const t = r.table;
    const field = fieldOf(t, column);
    if (!looksSealed(value)) {
      if (!field.legacyPlaintext) throw new RecordFieldError(t.name, column, r.key.values, new TypeError('the value is not sealed (and the column is not in migration mode)'));
      const name = `${t.name}.${column}`;
      this.#legacy[name] = (this.#legacy[name] ?? 0) + 1;
      return { legacy: true };
    }
    const sealed = typeof value === 'string' ? fieldFromText(value) : (value as Uint8Array);
    if (!sealed) throw new RecordFieldError(t.name, column, r.key.values, new TypeError('the text form is not valid base64url'));
    return { sealed, field };
  }
}
