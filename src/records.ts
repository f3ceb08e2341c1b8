/**
 * kms-envelope/records: database values sealed per field under a key hierarchy, bound to their row,
 * column and table; blind indexes for equality search; sweeps that rotate, rewrap, backfill and
 * reindex stored rows, with their PostgreSQL and SQLite drivers.
 *
 * @example
 * ```ts
 * import { createRecords, defineTable } from 'kms-envelope/records';
 * const customers = defineTable({ name: 'customers', primaryKey: ['id'], partition: { column: 'tenant_id' }, columns: { email: { type: 'string' } } });
 * const records = createRecords({ hierarchy });
 * ```
 */
export {
  BLIND_INDEX_PARTITION_SUFFIX,
  BlindIndexNotWarmError,
  blindIndexPartition,
  blindIndexWarnings,
  createBlindIndex,
  expectedFalsePositives,
  type BlindIndex,
  type BlindIndexCallOptions,
  type BlindIndexColumn,
  type BlindIndexNormalizer,
  type BlindIndexOptions,
  type BlindIndexOutput,
  type BlindIndexSizing,
  type BlindIndexValue,
  type BlindIndexWarning,
  type CompoundIndexOptions,
  type CompoundIndexValue,
  type SingleColumnIndexOptions,
} from './records/blind-index.ts';
export {
  createRecords,
  defineTable,
  RecordFieldError,
  refusePartialWrite,
  RowVersionError,
  sealedFieldLength,
  type FieldSpec,
  type FieldType,
  type FieldValues,
  type PlainRow,
  type RecordBatchOptions,
  type RecordOpenOptions,
  type Records,
  type RecordsOptions,
  type RowVersionProblem,
  type SealedRow,
  type Table,
  type TableSpec,
} from './records/records.ts';
export { FieldMalformedError } from './core/errors.ts';
export { UnsupportedQueryError } from './records/unsupported-query.ts';
export {
  type ContainsCondition,
  createSearchIndex,
  type PrefixCondition,
  type RangeCondition,
  type SearchCallOptions,
  type SearchCondition,
  type SearchIndex,
  type SearchQuery,
} from './records/search-index.ts';
export type { ContainsIndexOptions, PrefixIndexOptions, RangeIndexOptions, SearchIndexOptions, SearchIndexWarning } from './records/search-options.ts';
export type { DateLevel, RangeDomain } from './records/search-levels.ts';
export { searchSchema, type SearchDialect } from './records/search-sql.ts';
export type { SearchSql, SearchSqlOptions } from './records/record-search.ts';
export type { ContainsIndexSpec, PrefixIndexSpec, RangeIndexSpec, SearchIndexSpec } from './records/table.ts';
export { SEARCH_PARTITION_SUFFIX } from './records/blind-index-keys.ts';
export type { TokenMac } from './core/token-mac.ts';
export {
  backfillSweep,
  reindexSweep,
  searchReindexSweep,
  rewrapSweep,
  rotationSweep,
  runSweep,
  type RecordSweepPlan,
  type RowOutcome,
  type RowTransform,
  type SweepCounts,
  type SweepDriver,
  type SweepEvent,
  type SweepFailure,
  type SweepOptions,
  type SweepRow,
  type SweepSummary,
  type TenantRotationOptions,
} from './records/sweep.ts';
export { lowestVersionOf, sealedKeyOf, type CensusOptions } from './records/census.ts';
export { censusPostgres, censusSqlite } from './records/sql/census.ts';
export { type PostgresSweepClient, type PostgresSweepPool, sweepPostgres, type TableSweepOptions } from './records/sql/postgres.ts';
export { sweepSqlite } from './records/sql/sqlite.ts';
export {
  columnMigration,
  decryptSweep,
  MigrationIncompleteError,
  migrationStatus,
  refusePlaintext,
  type ColumnMigration,
  type ColumnMigrationOptions,
  type MigrationDatabase,
  type MigrationStatus,
} from './records/migration.ts';
export { addColumn, createIndexConcurrently, dropColumn, LOCK_MODES, strongestLock, type DdlPool, type DdlStepReport } from './records/sql/ddl.ts';
