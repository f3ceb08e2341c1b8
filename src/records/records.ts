/**
 * Records in databases: declare a table's encrypted columns once, then seal a row before it is
 * written and open a row read back, one at a time or in batches (FORMAT.md §12).
 *
 * Each sealed value is bound to its table, its logical column id (a rename keeps it), the row's
 * primary key when the table names one, and the schema version: they form the message's detached
 * context, inside the message, never sent to the KMS. The key comes from the key hierarchy's
 * partition (a tenant, an app), so keys are shared across rows and stay in memory. A value copied
 * to another row, column or table, or swapped with another, does not open there: a RecordFieldError
 * names the column and the row, never with the other row's plaintext. Every open compares the
 * row's partition (its column, or the table's function of the row) with the partition each value's
 * authenticated header names, before any key is loaded: a row moved to another tenant does not open.
 */
import type { FieldType, FieldValues } from './field-value.ts';
import { decodeFieldValue, encodeFieldValue, fieldFromText, fieldMalformed, fieldToText, isFieldValue, rowKeyJson, TEXT_PREFIX, textLength } from './field-value.ts';
import { intermediateKeyVersion, MAGIC } from '../core/header.ts';
import { EnvelopeError, PartitionMismatchError } from '../core/errors.ts';
import { compactSealedLength } from '../core/compact.ts';
import { sealedLength } from '../core/chunked.ts';
import { type CanonicalContext, canonicalContext, contextTemplate, type EncryptionContext } from '../core/context.ts';
import { wipe } from '../core/bytes.ts';
import type { BatchResult, Envelope } from '../index.ts';
import { createEnvelope, openSync as openMessageSync, sealSync as sealMessageSync } from '../index.ts';
import type { KeyHierarchy } from '../hierarchy.ts';
import { type BlindIndex, type BlindIndexNormalizer, type BlindIndexValue, createBlindIndex } from './blind-index.ts';

export type { FieldType, FieldValues } from './field-value.ts';

export interface FieldSpec<T extends FieldType = FieldType> {
  type: T;
  /** The logical column id bound into each value; default the column's name. Keep it when renaming the column. */
  id?: string;
  /** `text` (default): the text form `kme.…` for text columns; `bytes`: the sealed bytes, for bytea or BLOB columns. */
  encoding?: 'text' | 'bytes';
  /**
   * Migration only: read values that are not sealed (legacy plaintext) as they are, and count
   * them. Anyone who can write the table can then plant plaintext: switch it off once a backfill
   * has sealed every row.
   */
  legacyPlaintext?: boolean;
  /**
   * A blind index for equality search (README "Blind indexes"): seal() writes it to `column`, and
   * indexOf() gives the value to look up. It leaks equality and frequency within the column and
   * partition.
   */
  index?: { column: string; bits: number; normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[]; version?: number };
}

export interface TableSpec<C extends Record<string, FieldSpec>> {
  /** The logical table id bound into each value. */
  name: string;
  /** The encrypted columns. */
  columns: C;
  /**
   * The primary key column(s), bound into each value when given. Only where the key is known before
   * the write (client-made ids such as UUIDv7, natural keys); database-made ids cannot be bound.
   */
  primaryKey?: string | readonly string[];
  /** The key hierarchy partition: a column of the row (`{ column: 'tenant_id' }`), a function of it, or a fixed name. */
  partition: string | { column: string } | ((row: Readonly<Record<string, unknown>>) => string);
  /** Bound into each value; raise it when a column's meaning changes. Default 1. */
  schemaVersion?: number;
  /**
   * A plain integer column the record API keeps at the key version the row's values were sealed
   * under (the lowest, should they differ), so SQL finds the rows to rotate with an index:
   * `WHERE key_version < $1`. Not bound into the values; written by seal(), never read by open().
   */
  keyVersionColumn?: string;
}

export interface Table<C extends Record<string, FieldSpec>> extends Readonly<TableSpec<C>> {
  readonly schemaVersion: number;
  readonly primaryKeys: readonly string[];
}

/** The plaintext row: encrypted columns typed by their spec; null and undefined pass through. */
export type PlainRow<C extends Record<string, FieldSpec>> = { [K in keyof C]?: FieldValues[C[K]['type']] | null } & Record<string, unknown>;

/** The row as stored: encrypted columns are text (`kme.…`) or bytes. */
export type SealedRow<C extends Record<string, FieldSpec>> = {
  [K in keyof C]?: (C[K]['encoding'] extends 'bytes' ? Uint8Array : string) | null;
} & Record<string, unknown>;

/** A value that failed to open: names the table, the column and the row; `cause` says why. */
export class RecordFieldError extends EnvelopeError {
  readonly table: string;
  readonly column: string;
  /** The row's primary key values (empty when the table binds none). */
  readonly row: readonly unknown[];
  constructor(table: string, column: string, row: readonly unknown[], cause: unknown) {
    const code = cause instanceof EnvelopeError ? cause.code : 'ERR_DECRYPTION_FAILED';
    const where = `${table}.${column}${row.length ? ` of row ${JSON.stringify(row)}` : ''}`;
    const why =
      cause instanceof EnvelopeError && code === 'ERR_DECRYPTION_FAILED'
        ? 'it was sealed for another row, column or table, or it was altered'
        : cause instanceof PartitionMismatchError
          ? `it was sealed ${cause.found === undefined ? 'under no partition' : `for partition ${JSON.stringify(cause.found)}`}, not for the row's partition ${JSON.stringify(cause.expected)} (the row or the value was moved from another partition)`
          : cause instanceof Error
          ? cause.message
          : String(cause);
    super(code, `${where} does not open: ${why}`, { cause });
    this.table = table;
    this.column = column;
    this.row = row;
  }
}

/** Declares a table's encrypted columns; the types of rows follow from it. */
export function defineTable<const C extends Record<string, FieldSpec>>(spec: TableSpec<C>): Table<C> {
  if (typeof spec?.name !== 'string' || spec.name.length === 0) throw new TypeError('"name" expected the table\'s name');
  const primaryKeys = spec.primaryKey === undefined ? [] : typeof spec.primaryKey === 'string' ? [spec.primaryKey] : [...spec.primaryKey];
  const ids = new Set<string>();
  for (const [column, field] of Object.entries(spec.columns)) {
    const id = field.id ?? column;
    if (ids.has(id)) throw new TypeError(`column id ${JSON.stringify(id)} is used twice in table ${spec.name}`);
    ids.add(id);
    if (primaryKeys.includes(column)) throw new TypeError(`primary key column ${column} cannot be encrypted: it is bound into the others`);
  }
  const schemaVersion = spec.schemaVersion ?? 1;
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1) throw new RangeError('"schemaVersion" must be a positive integer');
  const kv = spec.keyVersionColumn;
  if (kv !== undefined && (typeof kv !== 'string' || kv.length === 0 || kv in spec.columns || primaryKeys.includes(kv))) {
    throw new TypeError(`"keyVersionColumn" expected the name of a plain column, neither encrypted nor a primary key, got ${JSON.stringify(kv)}`);
  }
  return Object.freeze({ ...spec, schemaVersion, primaryKeys: Object.freeze(primaryKeys) });
}

export interface RecordsOptions {
  hierarchy: KeyHierarchy;
  /** Options of the envelope the records are sealed with (compact payloads by default). */
  compact?: boolean;
}

export interface RecordBatchOptions {
  /** Fail the whole batch at its first bad row instead of a result per row. */
  failFast?: boolean;
}

export interface RecordsStats {
  /** Legacy plaintext values read in migration mode, per `table.column`. */
  legacyValuesRead: Record<string, number>;
}

export interface Records {
  seal<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>>;
  open<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): Promise<PlainRow<C>>;
  sealMany<C extends Record<string, FieldSpec>>(table: Table<C>, rows: readonly PlainRow<C>[], options?: RecordBatchOptions): Promise<BatchResult<SealedRow<C>>[]>;
  openMany<C extends Record<string, FieldSpec>>(table: Table<C>, rows: readonly SealedRow<C>[], options?: RecordBatchOptions): Promise<BatchResult<PlainRow<C>>[]>;
  /** seal(), synchronously, once the partition's key is warm (else KeyNotWarmError, ERR_KEY_NOT_WARM). */
  sealSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): SealedRow<C>;
  /** open(), synchronously, as sealSync. */
  openSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): PlainRow<C>;
  /**
   * Seals a stored row again under its partition's active key version (a rotation), synchronously
   * as sealSync: each value's plaintext goes from open to seal as bytes, never decoded into a
   * string that could not be wiped; blind indexes are computed again; legacy plaintext (migration
   * mode) is sealed. The sweeps use it; openSync then sealSync gives the same row.
   */
  resealSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): SealedRow<C>;
  /**
   * One field, synchronously, for hooks that see a value and not its row (ORM column types): pass
   * the row's partition and primary key when the hook has them; without a primary key the value is
   * bound to its table and column only. A table that takes its partition from the row needs the
   * row (a TypeError without it); openFieldSync refuses a value of another partition, as open() does.
   */
  sealFieldSync<C extends Record<string, FieldSpec>, K extends keyof C & string>(table: Table<C>, column: K, value: FieldValues[C[K]['type']] | null | undefined, row?: Readonly<Record<string, unknown>>): unknown;
  openFieldSync<C extends Record<string, FieldSpec>, K extends keyof C & string>(table: Table<C>, column: K, stored: unknown, row?: Readonly<Record<string, unknown>>): FieldValues[C[K]['type']] | null | undefined;
  /** The blind index of `value` for an indexed column, to look rows up by (`WHERE email_idx = $1`). */
  indexOf<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, value: BlindIndexValue, options: { partition: string }): Promise<string>;
  indexOfSync<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, value: BlindIndexValue, options: { partition: string }): string;
  /** Loads the partitions' keys, and the blind-index keys of `tables`, so that the sync calls work. */
  warm(partitions: readonly string[], tables?: readonly Table<Record<string, FieldSpec>>[]): Promise<void>;
  readonly stats: RecordsStats;
  /** The envelope records are sealed with (format 2, the hierarchy). */
  readonly envelope: Envelope;
}

function partitionOf(table: Table<Record<string, FieldSpec>>, row: Readonly<Record<string, unknown>>): string {
  const p = table.partition;
  const value = typeof p === 'string' ? p : typeof p === 'function' ? p(row) : row[p.column];
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') {
    throw new TypeError(`table ${table.name}: the row has no partition (${typeof p === 'object' ? `column ${p.column}` : 'partition function'} gave ${typeof value})`);
  }
  return String(value);
}

/** A row's primary key: its values (named in errors) and their JSON (bound), made once per row. */
interface RowKey {
  readonly values: unknown[];
  readonly json: string;
}

function keyOf(table: Table<Record<string, FieldSpec>>, row: Readonly<Record<string, unknown>>): RowKey {
  const values = table.primaryKeys.map((column) => {
    const value = row[column];
    if (value === null || value === undefined) throw new TypeError(`table ${table.name}: primary key column ${column} is missing; it is bound into the sealed values`);
    return value;
  });
  return { values, json: values.length ? rowKeyJson(values, table.primaryKeys, table.name) : '' };
}

/**
 * The detached context of one field (FORMAT.md §12): bound inside the message, never sent to a KMS.
 * Per table and column the fixed pairs are encoded once; a row costs the encoding of its key.
 */
const bindings = new WeakMap<object, Map<string, (rowJson: string) => CanonicalContext>>();
function bindingOf(table: Table<Record<string, FieldSpec>>, column: string, key: RowKey): EncryptionContext {
  let columns = bindings.get(table);
  if (!columns) bindings.set(table, (columns = new Map()));
  let binding = columns.get(column);
  if (!binding) {
    const fixed = { table: table.name, column: table.columns[column]!.id ?? column, schema: String(table.schemaVersion) };
    if (table.primaryKeys.length === 0) {
      const context = canonicalContext(fixed, 'binding');
      binding = () => context;
    } else {
      binding = contextTemplate(fixed, 'row', 'binding');
    }
    columns.set(column, binding);
  }
  // A canonical context, which the envelope takes as it is (core/context.ts).
  return binding(key.json) as unknown as EncryptionContext;
}

/** The intermediate-key version a sealed field names (the record API seals under the hierarchy). */
function keyVersionOf(sealed: Uint8Array): number | undefined {
  return intermediateKeyVersion(sealed);
}

/** Sets the key-version column of a sealed row: the lowest version its values were sealed under. */
function noteKeyVersion(t: Table<Record<string, FieldSpec>>, out: Record<string, unknown>, versions: readonly number[]): void {
  if (t.keyVersionColumn !== undefined && versions.length > 0) out[t.keyVersionColumn] = Math.min(...versions);
}

/** Whether a stored value is a sealed field (for migration mode). */
function looksSealed(value: unknown): boolean {
  if (typeof value === 'string') return value.startsWith(TEXT_PREFIX);
  return value instanceof Uint8Array && value.length >= 4 && value[0] === MAGIC[0] && value[1] === MAGIC[1] && value[2] === MAGIC[2] && value[3] === MAGIC[3];
}

/**
 * The length of a sealed field, for sizing columns: bytes, or characters of the text form, for a
 * plaintext of `plaintextBytes` (of the value's own bytes) under a partition name of
 * `partitionBytes` UTF-8 bytes, with key versions below 128.
 */
export function sealedFieldLength(plaintextBytes: number, options: { partitionBytes: number; encoding?: 'text' | 'bytes' }): number {
  const value = 1 + plaintextBytes; // the type tag
  const header = 7 + 1 + options.partitionBytes + 1;
  const bytes = header + (compactSealedLength(value) ?? sealedLength(value));
  return options.encoding === 'bytes' ? bytes : textLength(bytes);
}

export function createRecords(options: RecordsOptions): Records {
  const envelope = createEnvelope({ hierarchy: options.hierarchy, compact: options.compact ?? true });
  const stats: RecordsStats = { legacyValuesRead: {} };

  type AnyTable = Table<Record<string, FieldSpec>>;
  type Row = Readonly<Record<string, unknown>>;

  const indexes = new Map<string, BlindIndex>();
  function indexFor(t: AnyTable, column: string): BlindIndex {
    const field = t.columns[column];
    if (!field?.index) throw new TypeError(`${t.name}.${column} has no blind index`);
    const id = `${t.name}\u0000${column}`;
    let index = indexes.get(id);
    if (!index) {
      const { bits, normalize, version } = field.index;
      index = createBlindIndex({ hierarchy: options.hierarchy, table: t.name, column: field.id ?? column, bits, ...(normalize ? { normalize } : {}), ...(version ? { version } : {}) });
      indexes.set(id, index);
    }
    return index;
  }
  const indexed = (t: AnyTable, row: Row): string[] => Object.keys(t.columns).filter((c) => t.columns[c]!.index && row[c] !== null && row[c] !== undefined);

  /** What sealing one field needs: the plaintext (the caller wipes it) and the envelope options. */
  function sealPlan(t: AnyTable, column: string, value: unknown, key: RowKey, partition: string) {
    const field = t.columns[column];
    if (!field) throw new TypeError(`table ${t.name} has no encrypted column ${column}`);
    const plaintext = encodeFieldValue(field.type, value, `${t.name}.${column}`);
    return { field, plaintext, options: { context: bindingOf(t, column, key), detachedContext: true, partition } };
  }

  const stored = (field: FieldSpec, sealed: Uint8Array): unknown => (field.encoding === 'bytes' ? sealed : fieldToText(sealed));

  function sealFieldAsync(t: AnyTable, column: string, value: unknown, key: RowKey, partition: string, versions?: number[]): Promise<unknown> {
    const { field, plaintext, options: o } = sealPlan(t, column, value, key, partition);
    return envelope.seal(plaintext, o).then(
      (sealed) => {
        wipe(plaintext);
        if (versions) versions.push(keyVersionOf(sealed)!);
        return stored(field, sealed);
      },
      (error: unknown) => {
        wipe(plaintext);
        throw error;
      },
    );
  }

  function sealFieldNow(t: AnyTable, column: string, value: unknown, key: RowKey, partition: string, versions?: number[]): unknown {
    const { field, plaintext, options: o } = sealPlan(t, column, value, key, partition);
    try {
      const sealed = sealMessageSync(envelope, plaintext, o);
      if (versions) versions.push(keyVersionOf(sealed)!);
      return stored(field, sealed);
    } finally {
      wipe(plaintext);
    }
  }

  /** The sealed bytes of a stored value, or a marker that it is legacy plaintext (migration mode). */
  function openPlan(t: AnyTable, column: string, value: unknown, key: RowKey): { sealed: Uint8Array; field: FieldSpec } | { legacy: true } {
    const field = t.columns[column];
    if (!field) throw new TypeError(`table ${t.name} has no encrypted column ${column}`);
    if (!looksSealed(value)) {
      if (!field.legacyPlaintext) throw new RecordFieldError(t.name, column, key.values, new TypeError('the value is not sealed (and the column is not in migration mode)'));
      const name = `${t.name}.${column}`;
      stats.legacyValuesRead[name] = (stats.legacyValuesRead[name] ?? 0) + 1;
      return { legacy: true };
    }
    const sealed = typeof value === 'string' ? fieldFromText(value) : (value as Uint8Array);
    if (!sealed) throw new RecordFieldError(t.name, column, key.values, new TypeError('the text form is not valid base64url'));
    return { sealed, field };
  }

  function decoded(t: AnyTable, column: string, field: FieldSpec, plaintext: Uint8Array, key: unknown[]): unknown {
    try {
      const value = decodeFieldValue(field.type, plaintext);
      if (value === undefined) throw new RecordFieldError(t.name, column, key, fieldMalformed(field.type, plaintext));
      return value;
    } finally {
      wipe(plaintext);
    }
  }

  // The row's partition goes to every open: a value sealed for another fails before its key is loaded.
  async function openFieldAsync(t: AnyTable, column: string, value: unknown, key: RowKey, partition: string): Promise<unknown> {
    const plan = openPlan(t, column, value, key);
    if ('legacy' in plan) return value;
    let plaintext: Uint8Array;
    try {
      plaintext = await envelope.open(plan.sealed, { context: bindingOf(t, column, key), partition });
    } catch (error) {
      throw new RecordFieldError(t.name, column, key.values, error);
    }
    return decoded(t, column, plan.field, plaintext, key.values);
  }

  function openFieldNow(t: AnyTable, column: string, value: unknown, key: RowKey, partition: string): unknown {
    const plan = openPlan(t, column, value, key);
    if ('legacy' in plan) return value;
    let plaintext: Uint8Array;
    try {
      plaintext = openMessageSync(envelope, plan.sealed, { context: bindingOf(t, column, key), partition });
    } catch (error) {
      if (error instanceof EnvelopeError && error.code === 'ERR_KEY_NOT_WARM') throw error;
      throw new RecordFieldError(t.name, column, key.values, error);
    }
    return decoded(t, column, plan.field, plaintext, key.values);
  }

  const notWarm = (error: unknown): boolean => error instanceof EnvelopeError && error.code === 'ERR_KEY_NOT_WARM';

  const present = (t: AnyTable, row: Row): string[] => Object.keys(t.columns).filter((c) => row[c] !== null && row[c] !== undefined);

  /**
   * While a row waits for a key to load, later rows that need the same key wait for it too before
   * they try the synchronous path: a batch under a cold key then makes one KeyNotWarmError, not one
   * per row (each of which also left a discarded sealing running behind it). The key is the
   * partition's active one for a seal, the partition's version named by the row's first sealed
   * value for an open: a cold old version does not hold up rows whose keys are in memory. A row
   * that waited and still finds no key (the load failed, or another version is needed) goes on alone.
   */
  const loading = new Map<string, Promise<unknown>>();
  function asLoading<T>(id: string | undefined, work: Promise<T>): Promise<T> {
    if (id === undefined) return work;
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    loading.set(id, settled);
    void settled.then(() => {
      if (loading.get(id) === settled) loading.delete(id);
    });
    return work;
  }
  /** The row's partition, or undefined when it has none (open() does not need it: the header names it). */
  function partitionIfAny(t: AnyTable, row: Row): string | undefined {
    try {
      return partitionOf(t, row);
    } catch {
      return undefined;
    }
  }
  /** What a seal of this row waits for: its partition's active key. */
  function sealKeyId(t: AnyTable, row: Row): string | undefined {
    const partition = partitionIfAny(t, row);
    return partition === undefined ? undefined : `seal\0${partition}`;
  }
  /** What an open of this row waits for: the key version its first sealed value names, in its partition. */
  function openKeyId(t: AnyTable, row: Row): string | undefined {
    const partition = partitionIfAny(t, row);
    if (partition === undefined) return undefined;
    for (const column of present(t, row)) {
      const value = row[column];
      if (!looksSealed(value)) continue;
      const sealed = typeof value === 'string' ? fieldFromText(value) : (value as Uint8Array);
      try {
        const version = sealed && intermediateKeyVersion(sealed);
        return version === undefined ? undefined : `open\0${version}\0${partition}`;
      } catch {
        return undefined; // not a header: the open reports it
      }
    }
    return undefined;
  }
  /** The load this row waits for, if any. */
  function loadingFor(t: AnyTable, row: Row, keyId: (t: AnyTable, row: Row) => string | undefined): Promise<unknown> | undefined {
    if (loading.size === 0) return undefined;
    const id = keyId(t, row);
    return id === undefined ? undefined : loading.get(id);
  }

  async function seal<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>> {
    const t = table as unknown as AnyTable;
    const wait = loadingFor(t, row, sealKeyId);
    if (wait) await wait;
    // Warm keys (the common case) seal at once: no promise per field.
    try {
      return sealSync(table, row);
    } catch (error) {
      if (!notWarm(error)) throw error;
    }
    return wait ? sealLater(table, row) : asLoading(sealKeyId(t, row), sealLater(table, row));
  }

  async function sealLater<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>> {
    const t = table as unknown as AnyTable;
    const partition = partitionOf(t, row);
    const out: Record<string, unknown> = { ...row };
    const versions = t.keyVersionColumn === undefined ? undefined : [];
    const key = keyOf(t, row);
    await Promise.all([
      ...present(t, row).map(async (column) => (out[column] = await sealFieldAsync(t, column, row[column], key, partition, versions))),
      ...indexed(t, row).map(async (column) => (out[t.columns[column]!.index!.column] = await indexFor(t, column).compute(row[column] as BlindIndexValue, { partition }))),
    ]);
    if (versions) noteKeyVersion(t, out, versions);
    return out as SealedRow<C>;
  }

  async function open<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): Promise<PlainRow<C>> {
    const t = table as unknown as AnyTable;
    const wait = loadingFor(t, row, openKeyId);
    if (wait) await wait;
    // Migration mode counts legacy values as it reads them: a fallback reads them again.
    const counted = Object.values(t.columns).some((f) => f.legacyPlaintext) ? { ...stats.legacyValuesRead } : undefined;
    try {
      return openSync(table, row);
    } catch (error) {
      if (!notWarm(error)) throw error;
      if (counted) {
        for (const name of Object.keys(stats.legacyValuesRead)) if (!(name in counted)) delete stats.legacyValuesRead[name];
        Object.assign(stats.legacyValuesRead, counted);
      }
    }
    return wait ? openLater(t, row) : asLoading(openKeyId(t, row), openLater(t, row));
  }

  async function openLater<C extends Record<string, FieldSpec>>(t: AnyTable, row: SealedRow<C>): Promise<PlainRow<C>> {
    const out: Record<string, unknown> = { ...row };
    const key = keyOf(t, row);
    const partition = partitionOf(t, row);
    await Promise.all(present(t, row).map(async (column) => (out[column] = await openFieldAsync(t, column, row[column], key, partition))));
    return out as PlainRow<C>;
  }

  function sealSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): SealedRow<C> {
    const t = table as unknown as AnyTable;
    const partition = partitionOf(t, row);
    const out: Record<string, unknown> = { ...row };
    const versions = t.keyVersionColumn === undefined ? undefined : [];
    const key = keyOf(t, row);
    for (const column of present(t, row)) out[column] = sealFieldNow(t, column, row[column], key, partition, versions);
    if (versions) noteKeyVersion(t, out, versions);
    for (const column of indexed(t, row)) out[t.columns[column]!.index!.column] = indexFor(t, column).computeSync(row[column] as BlindIndexValue, { partition });
    return out as SealedRow<C>;
  }

  function openSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): PlainRow<C> {
    const t = table as unknown as AnyTable;
    const out: Record<string, unknown> = { ...row };
    const key = keyOf(t, row);
    // A row read without its partition fails closed, as one without its primary key does.
    const partition = partitionOf(t, row);
    for (const column of present(t, row)) out[column] = openFieldNow(t, column, row[column], key, partition);
    return out as PlainRow<C>;
  }

  function resealSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): SealedRow<C> {
    const t = table as unknown as AnyTable;
    const partition = partitionOf(t, row);
    const out: Record<string, unknown> = { ...row };
    const versions: number[] | undefined = t.keyVersionColumn === undefined ? undefined : [];
    const key = keyOf(t, row);
    // Values of indexed columns, decoded only for their blind index.
    const indexValues: [string, unknown][] = [];
    try {
      for (const column of present(t, row)) {
        const value = row[column];
        const plan = openPlan(t, column, value, key);
        const context = bindingOf(t, column, key);
        const field = t.columns[column]!;
        let plaintext: Uint8Array;
        if ('legacy' in plan) {
          plaintext = encodeFieldValue(field.type, value, `${t.name}.${column}`);
          if (field.index) indexValues.push([column, value]);
        } else {
          try {
            plaintext = openMessageSync(envelope, plan.sealed, { context, partition });
          } catch (error) {
            if (notWarm(error)) throw error;
            throw new RecordFieldError(t.name, column, key.values, error);
          }
          const indexValue = field.index ? decodeFieldValue(field.type, plaintext) : undefined;
          if (field.index ? indexValue === undefined : !isFieldValue(field.type, plaintext)) {
            const malformed = fieldMalformed(field.type, plaintext);
            wipe(plaintext);
            throw new RecordFieldError(t.name, column, key.values, malformed);
          }
          if (field.index) indexValues.push([column, indexValue]);
        }
        try {
          const sealed = sealMessageSync(envelope, plaintext, { context, detachedContext: true, partition });
          if (versions) versions.push(keyVersionOf(sealed)!);
          out[column] = stored(field, sealed);
        } finally {
          wipe(plaintext);
        }
      }
      if (versions) noteKeyVersion(t, out, versions);
      for (const [column, value] of indexValues) out[t.columns[column]!.index!.column] = indexFor(t, column).computeSync(value as BlindIndexValue, { partition });
    } finally {
      for (const [column, value] of indexValues) if (value instanceof Uint8Array && value !== row[column]) wipe(value);
    }
    return out as SealedRow<C>;
  }

  /** For one field with no row: a partition given in `row`, else the table's fixed one. */
  function fieldRow(t: AnyTable, row: Row | undefined): { row: Row; partition: string } {
    const r = row ?? {};
    return { row: r, partition: partitionOf(t, r) };
  }

  async function many<I, O>(items: readonly I[], work: (item: I) => Promise<O>, batch: RecordBatchOptions = {}): Promise<BatchResult<O>[]> {
    if (batch.failFast) return (await Promise.all(items.map(work))).map((value) => ({ ok: true, value }));
    return Promise.all(
      items.map((item) =>
        work(item).then(
          (value): BatchResult<O> => ({ ok: true, value }),
          (error: unknown): BatchResult<O> => ({ ok: false, error: error instanceof Error ? error : new Error(String(error)) }),
        ),
      ),
    );
  }

  return {
    seal,
    open,
    sealSync,
    openSync,
    resealSync,
    sealFieldSync(table, column, value, row) {
      if (value === null || value === undefined) return value;
      const t = table as unknown as AnyTable;
      const r = fieldRow(t, row);
      return sealFieldNow(t, column, value, keyOf(t, r.row), r.partition);
    },
    openFieldSync(table, column, value, row) {
      if (value === null || value === undefined) return value;
      const t = table as unknown as AnyTable;
      const r = fieldRow(t, row);
      return openFieldNow(t, column, value, keyOf(t, r.row), r.partition) as never;
    },
    sealMany: (table, rows, o) => many(rows, (row) => seal(table, row), o),
    openMany: (table, rows, o) => many(rows, (row) => open(table, row), o),
    indexOf: (table, column, value, o) => indexFor(table as unknown as AnyTable, column).compute(value, o) as Promise<string>,
    indexOfSync: (table, column, value, o) => indexFor(table as unknown as AnyTable, column).computeSync(value, o) as string,
    async warm(partitions, tables = []) {
      for (const t of tables) for (const [column, field] of Object.entries(t.columns)) if (field.index) indexFor(t, column);
      await options.hierarchy.warm(partitions);
      await Promise.all([...indexes.values()].map((index) => index.warm(partitions)));
    },
    stats,
    envelope,
  };
}
