/**
 * What binds a sealed field to its row (FORMAT.md §12): the row's partition and primary key, and
 * the detached context of each field; the key version a sealed field names.
 */
import type { OpenAuditBatch } from '../core/audit-batch.ts';
import { intermediateKeyVersion, MAGIC } from '../core/header.ts';
import { type CanonicalContext, canonicalContext, contextTemplate, type EncryptionContext } from '../core/context.ts';
import { rowKeyJson, TEXT_PREFIX } from './field-value.ts';
import { refuseUnversioned, versionToOpen, versionToReseal, versionToSeal } from './row-version.ts';
import type { AnyTable, Row } from './table.ts';

export function partitionOf(table: AnyTable, row: Row): string {
  const p = table.partition;
  const value = typeof p === 'string' ? p : typeof p === 'function' ? p(row) : row[p.column];
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint') {
    throw new TypeError(`table ${table.name}: the row has no partition (${typeof p === 'object' ? `column ${p.column}` : 'partition function'} gave ${typeof value})`);
  }
  return String(value);
}

/**
 * One row being sealed or opened: its table, primary key and partition, the key versions its seals
 * name (when the table keeps a column of them), and its row version (FORMAT.md §12.4): the bound
 * text, null for an unversioned row (NULL), undefined when the table declares none.
 */
export interface RowContext {
  readonly table: AnyTable;
  readonly key: RowKey;
  readonly partition: string;
  readonly versions: number[] | undefined;
  readonly version: string | null | undefined;
  /** The call's audit batch (records.open/openMany/openSync under an audited hierarchy), passed to each open. */
  audit?: OpenAuditBatch;
}

/** A row to seal: its partition, then its primary key (a row missing both names its partition), then its new row version. */
export function sealingRow(table: AnyTable, row: Row): RowContext {
  const partition = partitionOf(table, row);
  const versions = table.keyVersionColumn === undefined ? undefined : [];
  const key = keyOf(table, row);
  return { table, partition, versions, key, version: versionToSeal(table, row) };
}

/** A stored row to seal again (a sweep): as sealingRow, under the row's own version (0 for an unversioned row). */
export function resealingRow(table: AnyTable, row: Row): RowContext {
  const partition = partitionOf(table, row);
  const versions = table.keyVersionColumn === undefined ? undefined : [];
  const key = keyOf(table, row);
  return { table, partition, versions, key, version: versionToReseal(table, row) };
}

/** A row to open: its primary key, then its partition (a row read without its partition fails closed, as one without its primary key does), then its row version. */
export function openingRow(table: AnyTable, row: Row): RowContext {
  const key = keyOf(table, row);
  return { table, key, partition: partitionOf(table, row), versions: undefined, version: versionToOpen(table, row) };
}

/**
 * One field with no row (ORM column types): a partition given in `row`, else the table's fixed
 * one; the primary key if given. A field of a row-version table is opened with the row's version
 * (the row must be given); it is never sealed alone (a write seals the whole row).
 */
export function fieldRow(table: AnyTable, row: Row | undefined): RowContext {
  const r = row ?? {};
  const partition = partitionOf(table, r);
  return { table, partition, key: keyOf(table, r), versions: undefined, version: versionToOpen(table, r) };
}

/** A row's primary key: its values (named in errors) and their JSON (bound), made once per row. */
interface RowKey {
  readonly values: unknown[];
  readonly json: string;
}

function keyOf(table: AnyTable, row: Row): RowKey {
  const columns = table.primaryKeys;
  const values: unknown[] = [];
  for (let i = 0; i < columns.length; i++) {
    const value = row[columns[i]!];
    if (value === null || value === undefined) throw new TypeError(`table ${table.name}: primary key column ${columns[i]} is missing; it is bound into the sealed values`);
    values.push(value);
  }
  return { values, json: values.length ? rowKeyJson(values, table.primaryKeys, table.name) : '' };
}

/**
 * The detached context of one field (FORMAT.md §12): bound inside the message, never sent to a KMS.
 * Per table and column the fixed pairs are encoded once; a row costs the encoding of its key. A row
 * version adds the pair `version` (§12.4); an unversioned row of a row-version table is read with
 * the binding without it, only in migration mode.
 */
const bindings = new WeakMap<object, Map<string, { fixed: EncryptionContext; of: (rowJson: string) => CanonicalContext }>>();
export function bindingOf(r: RowContext, column: string): EncryptionContext {
  const { table, key } = r;
  let columns = bindings.get(table);
  if (!columns) bindings.set(table, (columns = new Map()));
  let binding = columns.get(column);
  if (!binding) {
    const fixed = { table: table.name, column: table.columns[column]!.id ?? column, schema: String(table.schemaVersion) };
    if (table.primaryKeys.length === 0) {
      const context = canonicalContext(fixed, 'binding');
      binding = { fixed, of: () => context };
    } else {
      binding = { fixed, of: contextTemplate(fixed, 'row', 'binding') };
    }
    columns.set(column, binding);
  }
  if (typeof r.version === 'string') return canonicalContext({ ...binding.fixed, row: key.json, version: r.version }, 'binding') as unknown as EncryptionContext;
  if (r.version === null) refuseUnversioned(table);
  // A canonical context, which the envelope takes as it is (core/context.ts).
  return binding.of(key.json) as unknown as EncryptionContext;
}

/** The intermediate-key version a sealed field names (the record API seals under the hierarchy). */
export function keyVersionOf(sealed: Uint8Array): number | undefined {
  return intermediateKeyVersion(sealed);
}

/** Sets the key-version column of a sealed row: the lowest version its values were sealed under. */
export function noteKeyVersion(t: AnyTable, out: Record<string, unknown>, versions: readonly number[]): void {
  if (t.keyVersionColumn !== undefined && versions.length > 0) out[t.keyVersionColumn] = Math.min(...versions);
}

/** Whether a stored value is a sealed field (for migration mode). */
export function looksSealed(value: unknown): boolean {
  if (typeof value === 'string') return value.startsWith(TEXT_PREFIX);
  return value instanceof Uint8Array && value.length >= 4 && value[0] === MAGIC[0] && value[1] === MAGIC[1] && value[2] === MAGIC[2] && value[3] === MAGIC[3];
}
