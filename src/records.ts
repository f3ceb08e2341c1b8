/**
 * Records in databases: declare a table's encrypted columns once, then seal a row before it is
 * written and open a row read back, one at a time or in batches (FORMAT.md §12).
 *
 * Each sealed value is bound to its table, its logical column id (a rename keeps it), the row's
 * primary key when the table names one, and the schema version: they form the message's detached
 * context, inside the message, never sent to the KMS. The key comes from the key hierarchy's
 * partition (a tenant, an app), so keys are shared across rows and stay in memory. A value copied
 * to another row, column or table, or swapped with another, does not open there: a RecordFieldError
 * names the column and the row, never with the other row's plaintext.
 */
import type { FieldType, FieldValues } from './core/field-value.ts';
import { decodeFieldValue, encodeFieldValue, fieldFromText, fieldToText, TEXT_PREFIX, textLength } from './core/field-value.ts';
import { MAGIC } from './core/header.ts';
import { EnvelopeError } from './core/errors.ts';
import { compactSealedLength } from './core/compact.ts';
import { sealedLength } from './core/chunked.ts';
import type { EncryptionContext } from './core/context.ts';
import { wipe } from './core/bytes.ts';
import type { BatchResult, Envelope } from './envelope.ts';
import { createEnvelope } from './envelope.ts';
import type { KeyHierarchy } from './hierarchy.ts';

export type { FieldType, FieldValues } from './core/field-value.ts';

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
  /** Loads the partitions' keys, so that the sync calls work. */
  warm(partitions: readonly string[]): Promise<void>;
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

function keyOf(table: Table<Record<string, FieldSpec>>, row: Readonly<Record<string, unknown>>): unknown[] {
  return table.primaryKeys.map((column) => {
    const value = row[column];
    if (value === null || value === undefined) throw new TypeError(`table ${table.name}: primary key column ${column} is missing; it is bound into the sealed values`);
    return value;
  });
}

/** The detached context of one field (FORMAT.md §12): bound inside the message, never sent to a KMS. */
function bindingOf(table: Table<Record<string, FieldSpec>>, column: string, key: readonly unknown[]): EncryptionContext {
  const binding: Record<string, string> = { table: table.name, column: table.columns[column]!.id ?? column, schema: String(table.schemaVersion) };
  if (key.length) binding.row = JSON.stringify(key.map((v) => (typeof v === 'bigint' ? v.toString() : v instanceof Date ? v.toISOString() : v)));
  return binding;
}

/** Whether a stored value is a sealed field (for migration mode). */
function looksSealed(value: unknown): boolean {
  if (typeof value === 'string') return value.startsWith(TEXT_PREFIX);
  return value instanceof Uint8Array && value.length >= 4 && MAGIC.every((b, i) => value[i] === b);
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

  async function seal<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>> {
    const t = table as unknown as Table<Record<string, FieldSpec>>;
    const partition = partitionOf(t, row);
    const key = keyOf(t, row);
    const out: Record<string, unknown> = { ...row };
    await Promise.all(
      Object.entries(t.columns).map(async ([column, field]) => {
        const value = row[column];
        if (value === null || value === undefined) return; // passes through, unencrypted and unchanged
        const plaintext = encodeFieldValue(field.type, value, `${t.name}.${column}`);
        try {
          const sealed = await envelope.seal(plaintext, { context: bindingOf(t, column, key), detachedContext: true, partition });
          out[column] = field.encoding === 'bytes' ? sealed : fieldToText(sealed);
        } finally {
          wipe(plaintext);
        }
      }),
    );
    return out as SealedRow<C>;
  }

  async function open<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): Promise<PlainRow<C>> {
    const t = table as unknown as Table<Record<string, FieldSpec>>;
    const key = keyOf(t, row);
    const out: Record<string, unknown> = { ...row };
    await Promise.all(
      Object.entries(t.columns).map(async ([column, field]) => {
        const stored = row[column];
        if (stored === null || stored === undefined) return;
        if (!looksSealed(stored)) {
          if (!field.legacyPlaintext) throw new RecordFieldError(t.name, column, key, new TypeError('the value is not sealed (and the column is not in migration mode)'));
          const name = `${t.name}.${column}`;
          stats.legacyValuesRead[name] = (stats.legacyValuesRead[name] ?? 0) + 1;
          return;
        }
        let plaintext: Uint8Array | undefined;
        try {
          const sealed = typeof stored === 'string' ? fieldFromText(stored) : (stored as Uint8Array);
          if (!sealed) throw new TypeError('the text form is not valid base64url');
          plaintext = await envelope.open(sealed, { context: bindingOf(t, column, key) });
          const value = decodeFieldValue(field.type, plaintext);
          if (value === undefined) throw new TypeError(`the value is not a ${field.type}`);
          out[column] = value;
        } catch (error) {
          throw new RecordFieldError(t.name, column, key, error);
        } finally {
          wipe(plaintext);
        }
      }),
    );
    return out as PlainRow<C>;
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
    sealMany: (table, rows, o) => many(rows, (row) => seal(table, row), o),
    openMany: (table, rows, o) => many(rows, (row) => open(table, row), o),
    warm: (partitions) => options.hierarchy.warm(partitions),
    stats,
    envelope,
  };
}
