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
import { OpenAuditBatch } from '../core/audit-batch.ts';
import { wipe } from '../core/bytes.ts';
import { keySourceOf } from '../core/key-source.ts';
import { type CloseOptions, type CloseReport, WorkInFlight } from '../core/work-in-flight.ts';
import { compactSealedLength } from '../core/compact.ts';
import { sealedLength } from '../core/chunked.ts';
import type { BatchResult, Envelope } from '../index.ts';
import { createEnvelope } from '../index.ts';
import type { HealthReport, HierarchyEventListener, KeepWarm, KeyHierarchy } from '../hierarchy.ts';
import type { BlindIndexValue } from './blind-index.ts';
import { fieldRow, noteKeyVersion, openingRow, resealingRow, type RowContext, sealingRow } from './binding.ts';
import type { FieldValues } from './field-value.ts';
import { textLength } from './field-value.ts';
import { FieldCipher, notWarm } from './fields.ts';
import { KeyLoads, openKeyId, present, readsLegacy, sealedColumnsOf, sealKeyId } from './key-loads.ts';
import { RecordIndexes } from './record-indexes.ts';
import { refuseFieldSeal } from './row-version.ts';
import { RecordSearch, type SearchSql, type SearchSqlOptions } from './record-search.ts';
import type { SearchCondition } from './search-index.ts';
import { partitionOf } from './binding.ts';
import type { AnyTable, FieldSpec, PlainRow, Row, SealedRow, Table } from './table.ts';

export type { FieldType, FieldValues } from './field-value.ts';
export { refusePartialWrite, RowVersionError, type RowVersionProblem } from './row-version.ts';
export { defineTable, RecordFieldError, type FieldSpec, type PlainRow, type SealedRow, type Table, type TableSpec } from './table.ts';

export interface RecordsOptions {
  hierarchy: KeyHierarchy;
  /** Options of the envelope the records are sealed with (compact payloads by default). */
  compact?: boolean;
  /** The hierarchy's events (key loads and failures, stale keys served, revocations, breaker changes) while this record set is open. */
  onEvent?: HierarchyEventListener;
}

export interface RecordOpenOptions {
  /**
   * Caller metadata (a request id, a user) for the hierarchy's audit hook: the call makes one audit
   * record (`open-rows`) with it, whatever the number of rows and fields.
   */
  audit?: Readonly<Record<string, unknown>>;
}

export interface RecordBatchOptions {
  /** Fail the whole batch at its first bad row instead of a result per row. */
  failFast?: boolean;
}

interface RecordsStats {
  /** Legacy plaintext values read in migration mode, per `table.column`. */
  legacyValuesRead: Record<string, number>;
}

export interface Records {
  seal<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>>;
  open<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, options?: RecordOpenOptions): Promise<PlainRow<C>>;
  sealMany<C extends Record<string, FieldSpec>>(table: Table<C>, rows: readonly PlainRow<C>[], options?: RecordBatchOptions): Promise<BatchResult<SealedRow<C>>[]>;
  openMany<C extends Record<string, FieldSpec>>(table: Table<C>, rows: readonly SealedRow<C>[], options?: RecordBatchOptions & RecordOpenOptions): Promise<BatchResult<PlainRow<C>>[]>;
  /** seal(), synchronously, once the partition's key is warm (else KeyNotWarmError, ERR_KEY_NOT_WARM). */
  sealSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): SealedRow<C>;
  /** open(), synchronously, as sealSync. */
  openSync<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, options?: RecordOpenOptions): PlainRow<C>;
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
   * A table with a row version (§12.4) refuses sealFieldSync (ERR_ROW_VERSION: a write seals the
   * whole row), and openFieldSync needs the row with its version.
   */
  sealFieldSync<C extends Record<string, FieldSpec>, K extends keyof C & string>(table: Table<C>, column: K, value: FieldValues[C[K]['type']] | null | undefined, row?: Readonly<Record<string, unknown>>): unknown;
  openFieldSync<C extends Record<string, FieldSpec>, K extends keyof C & string>(table: Table<C>, column: K, stored: unknown, row?: Readonly<Record<string, unknown>>): FieldValues[C[K]['type']] | null | undefined;
  /** The blind index of `value` for an indexed column, to look rows up by (`WHERE email_idx = $1`). */
  indexOf<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, value: BlindIndexValue, options: { partition: string }): Promise<string>;
  indexOfSync<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, value: BlindIndexValue, options: { partition: string }): string;
  /**
   * Whether an opened row's value of an indexed column is `value` as its blind index sees it (its
   * normalizers applied): a lookup by indexOf() also finds rows whose truncated index merely
   * collides, so open the rows found and keep those that match.
   */
  matches<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, opened: BlindIndexValue, value: BlindIndexValue): boolean;
  /**
   * Loads the partitions' keys, and the blind-index keys of `tables`, so that the sync calls work;
   * then keeps them warm in the background (unless `keepWarm: false`): each partition's active
   * version read again before it would be forgotten and its keys refreshed before their TTL ends,
   * one KMS Decrypt per key per TTL per process, until stopWarm() or hierarchy.close(). A sync call
   * that still finds a key cold (a partition never warmed, the KMS down past the TTL) throws
   * KeyNotWarmError (ERR_KEY_NOT_WARM) at once and starts the load: it never waits for the KMS.
   */
  warm(partitions: readonly string[], tables?: readonly Table<Record<string, FieldSpec>>[], options?: { keepWarm?: boolean }): Promise<void>;
  /** Stops the background refreshes records.warm() started (keys already loaded stay until their TTL ends). */
  stopWarm(): void;
  /**
   * A range (`{ gte, lt, … }`), prefix (`{ startsWith }`) or contains (`{ contains }`) query of a column with a `search` index:
   * `WHERE ${sql}` with `params` finds the candidates of the partition; pass the rows read to
   * openMatching, which opens them and keeps the exact matches (README "Range and prefix search").
   */
  searchQuery<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, condition: SearchCondition, options: SearchSqlOptions): Promise<SearchSql>;
  /** The tokens of a value for a column's range, prefix or contains index, as the row stores them (the sweeps use it). */
  searchTokens<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, kind: 'range' | 'prefix' | 'contains', value: unknown, options: { partition: string }): Promise<unknown>;
  /** searchTokens(), synchronously once the partition's search keys are warm (records.warm with the table), else ERR_KEY_NOT_WARM: for ORM hooks. */
  searchTokensSync<C extends Record<string, FieldSpec>>(table: Table<C>, column: keyof C & string, kind: 'range' | 'prefix' | 'contains', value: unknown, options: { partition: string }): unknown;
  /** Opens the candidates a searchQuery found and keeps the rows of its partition whose value meets its condition, in the order given. */
  openMatching<C extends Record<string, FieldSpec>>(table: Table<C>, query: SearchSql, rows: readonly SealedRow<C>[]): Promise<PlainRow<C>[]>;
  readonly stats: RecordsStats;
  /** The envelope records are sealed with (format 2, the hierarchy). */
  readonly envelope: Envelope;
  /** The key hierarchy the records are sealed under (the sweeps read the partitions' active versions from it). */
  readonly hierarchy: KeyHierarchy;
  /** The hierarchy's readiness (one store read, no KMS call), not ready once this record set is closed. */
  health(options?: { partitions?: readonly string[] }): Promise<HealthReport>;
  /**
   * Stops this record set (the hierarchy stays open): rows waiting for a key are drained (default)
   * or refused, per `drain`; later calls get ERR_CLOSED; its blind-index keys are wiped.
   */
  close(options?: CloseOptions): Promise<CloseReport>;
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
  return new HierarchyRecords(options);
}

const failure = (error: unknown): BatchResult<never> => ({ ok: false, error: error instanceof Error ? error : new Error(String(error)) });

/**
 * Each item's result, or (failFast) every value, throwing at the first failure. An item whose work
 * finishes at once (warm keys: the common case) makes no promise; the others are awaited together.
 */
async function settleEach<I, O>(items: readonly I[], work: (item: I) => O | Promise<O>, batch: RecordBatchOptions = {}): Promise<BatchResult<O>[]> {
  const results: (BatchResult<O> | Promise<BatchResult<O>>)[] = [];
  let waiting = false;
  for (const item of items) {
    let out: O | Promise<O>;
    try {
      out = work(item);
    } catch (error) {
      if (!batch.failFast) {
        results.push(failure(error));
        continue;
      }
      // The rows already under way go on (their failures are this one's), unobserved.
      for (const r of results) if (r instanceof Promise) r.catch(() => {});
      throw error;
    }
    if (out instanceof Promise) {
      waiting = true;
      results.push(out.then((value): BatchResult<O> => ({ ok: true, value }), batch.failFast ? undefined : failure));
    } else {
      results.push({ ok: true, value: out });
    }
  }
  return waiting ? Promise.all(results) : (results as BatchResult<O>[]);
}

/**
 * The record API: the envelope, the field cipher, the key loads in flight and the blind indexes
 * in private fields. The public members are own properties, bound (a detached `records.seal` works).
 */
class HierarchyRecords implements Records {
  readonly stats: RecordsStats = { legacyValuesRead: {} };
  readonly envelope: Envelope;
  readonly hierarchy: KeyHierarchy;
  readonly #fields: FieldCipher;
  readonly #indexes: RecordIndexes;
  readonly #search: RecordSearch;
  readonly #loads = new KeyLoads();
  readonly #hierarchy: KeyHierarchy;
  /** Rows waiting for a key: close() drains or refuses them. */
  readonly #work = new WorkInFlight('record set');
  /** The hierarchy's batch audit, when it has an audit hook: one record per open call. */
  readonly #auditBatch: ((batch: OpenAuditBatch, call: { table: string; rows: number; failed: number }) => void) | undefined;
  readonly #unlisten: (() => void) | undefined;
  /** The partitions records.warm() keeps warm, read by the keeper at each tick. */
  readonly #warmed = new Set<string>();
  #keeper: KeepWarm | undefined;

  constructor(options: RecordsOptions) {
    this.hierarchy = options.hierarchy;
    this.envelope = createEnvelope({ hierarchy: options.hierarchy, compact: options.compact ?? true });
    this.#fields = new FieldCipher(this.envelope, this.stats.legacyValuesRead);
    this.#indexes = new RecordIndexes(options.hierarchy);
    this.#hierarchy = options.hierarchy;
    const source = keySourceOf(options.hierarchy);
    this.#auditBatch = source?.auditing ? source.auditedBatch : undefined;
    this.#unlisten = options.onEvent === undefined ? undefined : options.hierarchy.listen(options.onEvent);
    this.#search = new RecordSearch(options.hierarchy);
  }

  readonly seal = async <C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): Promise<SealedRow<C>> => this.#sealRow(table, row);

  /** seal(): the row at once when its key is warm, else a promise of it. */
  #sealRow<C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): SealedRow<C> | Promise<SealedRow<C>> {
    this.#work.checkOpen();
    const t = table as unknown as AnyTable;
    const wait = this.#loads.waitFor(t, row, sealKeyId);
    if (wait) return this.#work.track(this.#sealAfter(wait, t, row));
    // Warm keys (the common case) seal at once: no promise per field.
    try {
      return this.sealSync(table, row);
    } catch (error) {
      if (!notWarm(error)) throw error;
    }
    return this.#work.track(this.#loads.track(sealKeyId(t, row), this.#sealLater(t, row)));
  }

  readonly open = <C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, options?: RecordOpenOptions): Promise<PlainRow<C>> => {
    if (!this.#auditBatch) return this.#open(table, row, undefined);
    const batch = new OpenAuditBatch(options?.audit);
    return this.#open(table, row, batch).then(
      (opened) => (this.#audit(batch, table, 1, 0), opened),
      (error: unknown) => {
        this.#audit(batch, table, 1, 1);
        throw error;
      },
    );
  };

  readonly sealSync = <C extends Record<string, FieldSpec>>(table: Table<C>, row: PlainRow<C>): SealedRow<C> => {
    const r = sealingRow(table as unknown as AnyTable, row);
    const out: Record<string, unknown> = { ...row };
    const columns = sealedColumnsOf(r.table);
    for (let i = 0; i < columns.length; i++) {
      const column = columns[i]!;
      const value = row[column];
      if (value !== null && value !== undefined) out[column] = this.#fields.sealNow(r, column, value);
    }
    if (r.versions) noteKeyVersion(r.table, out, r.versions);
    for (const { column, target, index } of this.#indexes.indexedColumns(r.table)) {
      const value = row[column];
      if (value !== null && value !== undefined) out[target] = index.computeSync(value as BlindIndexValue, { partition: r.partition });
    }
    for (const [column, spec] of this.#search.entriesOf(r.table, row)) out[spec.column] = this.#search.tokensSync(r.table, column, spec, row[column], r.partition);
    return out as SealedRow<C>;
  };

  readonly openSync = <C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, options?: RecordOpenOptions): PlainRow<C> => {
    if (!this.#auditBatch) return this.#openNow(table, row, undefined);
    const batch = new OpenAuditBatch(options?.audit);
    let failed = 1;
    try {
      const opened = this.#openNow(table, row, batch);
      failed = 0;
      return opened;
    } finally {
      this.#audit(batch, table, 1, failed);
    }
  };

  readonly resealSync = <C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>): SealedRow<C> => {
    const r = resealingRow(table as unknown as AnyTable, row);
    const from = r.version === undefined ? r : openingRow(r.table, row);
    const out: Record<string, unknown> = { ...row };
    // Values of indexed columns, decoded only for their blind index.
    const indexValues: [string, unknown][] = [];
    try {
      for (const column of present(r.table, row)) out[column] = this.#fields.resealNow(r, column, row[column], indexValues, from);
      if (r.versions) noteKeyVersion(r.table, out, r.versions);
      if (r.version !== undefined) out[r.table.rowVersion!.column] = from.version === null ? 0 : row[r.table.rowVersion!.column];
      for (const [column, value] of indexValues) {
        if (r.table.columns[column]!.index) out[this.#indexes.target(r.table, column)] = this.#indexes.of(r.table, column).computeSync(value as BlindIndexValue, { partition: r.partition });
      }
      for (const [column, spec] of this.#search.entriesOf(r.table, Object.fromEntries(indexValues))) {
        out[spec.column] = this.#search.tokensSync(r.table, column, spec, indexValues.find(([c]) => c === column)![1], r.partition);
      }
    } finally {
      for (const [column, value] of indexValues) if (value instanceof Uint8Array && value !== row[column]) wipe(value);
    }
    return out as SealedRow<C>;
  };

  readonly sealFieldSync: Records['sealFieldSync'] = (table, column, value, row) => {
    refuseFieldSeal(table as unknown as AnyTable);
    if (value === null || value === undefined) return value;
    return this.#fields.sealNow(fieldRow(table as unknown as AnyTable, row), column, value);
  };

  readonly openFieldSync: Records['openFieldSync'] = (table, column, value, row) => {
    if (value === null || value === undefined) return value;
    return this.#fields.openNow(fieldRow(table as unknown as AnyTable, row), column, value) as never;
  };

  readonly sealMany: Records['sealMany'] = (table, rows, o) => settleEach(rows, (row) => this.#sealRow(table, row), o);
  readonly openMany: Records['openMany'] = async (table, rows, o) => {
    if (!this.#auditBatch) return settleEach(rows, (row) => this.#openRow(table, row, undefined), o);
    const batch = new OpenAuditBatch(o?.audit);
    let failed = 1; // failFast: the batch threw at a bad row
    try {
      const results = await settleEach(rows, (row) => this.#openRow(table, row, batch), o);
      failed = results.filter((r) => !r.ok).length;
      return results;
    } finally {
      this.#audit(batch, table, rows.length, failed);
    }
  };
  readonly indexOf: Records['indexOf'] = (table, column, value, o) => this.#indexes.of(table as unknown as AnyTable, column).compute(value, o) as Promise<string>;
  readonly indexOfSync: Records['indexOfSync'] = (table, column, value, o) => this.#indexes.of(table as unknown as AnyTable, column).computeSync(value, o) as string;
  readonly matches: Records['matches'] = (table, column, opened, value) => this.#indexes.of(table as unknown as AnyTable, column).matches(opened, value);
  readonly warm: Records['warm'] = async (partitions, tables = [], warmOptions = {}) => {
    await this.#indexes.warm(partitions, tables);
    await this.#search.warm(partitions, tables as AnyTable[]);
    if (warmOptions.keepWarm === false) return;
    for (const partition of partitions) this.#warmed.add(partition);
    this.#keeper ??= this.hierarchy.keepWarm(this.#warmed, { also: (list) => this.#indexes.refresh(list) });
  };

  readonly stopWarm = (): void => {
    this.#keeper?.stop();
    this.#keeper = undefined;
    this.#warmed.clear();
  };

  readonly health: Records['health'] = async (options) => {
    const report = await this.#hierarchy.health(options);
    const closed = report.closed || this.#work.closing;
    return { ...report, ok: report.ok && !closed, closed };
  };

  readonly close: Records['close'] = (options) => {
    this.#unlisten?.();
    this.stopWarm();
    return this.#work.close(options, async () => {
      await this.envelope.close();
      await this.#indexes.close();
    });
  };

  async #open<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, batch: OpenAuditBatch | undefined): Promise<PlainRow<C>> {
    return this.#openRow(table, row, batch);
  }

  /** open(): the row at once when its keys are warm, else a promise of it. */
  #openRow<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, batch: OpenAuditBatch | undefined): PlainRow<C> | Promise<PlainRow<C>> {
    this.#work.checkOpen();
    const t = table as unknown as AnyTable;
    const wait = this.#loads.waitFor(t, row, openKeyId);
    if (wait) return this.#work.track(this.#openAfter(wait, t, row, batch));
    // Migration mode counts legacy values as it reads them: a fallback reads them again.
    const counted = readsLegacy(t) ? { ...this.stats.legacyValuesRead } : undefined;
    try {
      return this.#openNow(table, row, batch);
    } catch (error) {
      if (!notWarm(error)) throw error;
      if (counted) this.#restoreLegacyCounts(counted);
    }
    return this.#work.track(this.#loads.track(openKeyId(t, row), this.#openLater(t, row, batch)));
  }

  /** A row that waited for another row's key load: the synchronous path again, else its own load. */
  async #openAfter<C extends Record<string, FieldSpec>>(wait: Promise<unknown>, t: AnyTable, row: Row, batch: OpenAuditBatch | undefined): Promise<PlainRow<C>> {
    await wait;
    const counted = readsLegacy(t) ? { ...this.stats.legacyValuesRead } : undefined;
    try {
      return this.#openNow(t as never, row as never, batch) as PlainRow<C>;
    } catch (error) {
      if (!notWarm(error)) throw error;
      if (counted) this.#restoreLegacyCounts(counted);
    }
    return this.#openLater(t, row, batch);
  }

  async #sealAfter<C extends Record<string, FieldSpec>>(wait: Promise<unknown>, t: AnyTable, row: Row): Promise<SealedRow<C>> {
    await wait;
    try {
      return this.sealSync(t as never, row as never) as SealedRow<C>;
    } catch (error) {
      if (!notWarm(error)) throw error;
    }
    return this.#sealLater(t, row);
  }

  #openNow<C extends Record<string, FieldSpec>>(table: Table<C>, row: SealedRow<C>, batch: OpenAuditBatch | undefined): PlainRow<C> {
    const r = this.#withAudit(openingRow(table as unknown as AnyTable, row), batch);
    const out: Record<string, unknown> = { ...row };
    const columns = sealedColumnsOf(r.table);
    for (let i = 0; i < columns.length; i++) {
      const column = columns[i]!;
      const value = row[column];
      if (value !== null && value !== undefined) out[column] = this.#fields.openNow(r, column, value);
    }
    return out as PlainRow<C>;
  }

  #withAudit(r: RowContext, batch: OpenAuditBatch | undefined): RowContext {
    if (batch) r.audit = batch;
    return r;
  }

  #audit(batch: OpenAuditBatch, table: Table<Record<string, FieldSpec>> | AnyTable, rows: number, failed: number): void {
    this.#auditBatch?.(batch, { table: (table as AnyTable).name, rows, failed });
  }

  readonly searchTokens: Records['searchTokens'] = (table, column, kind, value, o) => {
    const t = table as unknown as AnyTable;
    return this.#search.tokens(t, column, this.#search.specOf(t, column, kind), value, o.partition);
  };

  readonly searchTokensSync: Records['searchTokensSync'] = (table, column, kind, value, o) => {
    const t = table as unknown as AnyTable;
    return this.#search.tokensSync(t, column, this.#search.specOf(t, column, kind), value, o.partition);
  };

  readonly searchQuery: Records['searchQuery'] = (table, column, condition, options) => this.#search.query(table as unknown as AnyTable, column, condition, options);

  readonly openMatching: Records['openMatching'] = async (table, query, rows) => {
    const t = table as unknown as AnyTable;
    const ours = rows.filter((row) => {
      try {
        return partitionOf(t, row) === query.partition;
      } catch {
        return false;
      }
    });
    const opened = await Promise.all(ours.map((row) => this.open(table, row)));
    return opened.filter((row) => this.#search.keeps(t, query, row));
  };

  async #sealLater<C extends Record<string, FieldSpec>>(t: AnyTable, row: Row): Promise<SealedRow<C>> {
    const r = sealingRow(t, row);
    const out: Record<string, unknown> = { ...row };
    await Promise.all([
      ...present(t, row).map(async (column) => (out[column] = await this.#fields.sealAsync(r, column, row[column]))),
      ...this.#indexes.columnsOf(t, row).map(async (column) => (out[this.#indexes.target(t, column)] = await this.#indexes.of(t, column).compute(row[column] as BlindIndexValue, { partition: r.partition }))),
      ...this.#search.entriesOf(t, row).map(async ([column, spec]) => (out[spec.column] = await this.#search.tokens(t, column, spec, row[column], r.partition))),
    ]);
    if (r.versions) noteKeyVersion(t, out, r.versions);
    return out as SealedRow<C>;
  }

  async #openLater<C extends Record<string, FieldSpec>>(t: AnyTable, row: Row, batch: OpenAuditBatch | undefined): Promise<PlainRow<C>> {
    const r = this.#withAudit(openingRow(t, row), batch);
    const out: Record<string, unknown> = { ...row };
    await Promise.all(present(t, row).map(async (column) => (out[column] = await this.#fields.openAsync(r, column, row[column]))));
    return out as PlainRow<C>;
  }

  /** Puts back the legacy counts from before a synchronous try that a cold key cut short. */
  #restoreLegacyCounts(counted: Record<string, number>): void {
    const read = this.stats.legacyValuesRead;
    for (const name of Object.keys(read)) if (!(name in counted)) delete read[name];
    Object.assign(read, counted);
  }
}
