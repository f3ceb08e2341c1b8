/**
 * Prisma (`kms-envelope/prisma`): sealed columns through a Prisma client extension, on the record
 * API. Prisma 7, and 6.16+ with the client engine (`engineType = "client"` and a driver adapter).
 *
 *   const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' },
 *     keyVersionColumn: 'keyVersion', columns: { email: { type: 'string', index: { column: 'emailIdx', bits: 16 } } } });
 *   const db = withEncryption(new PrismaClient({ adapter }), { records, tables: { Customer: customers } });
 *   await db.customer.create({ data: { id, tenant: 'acme', email: 'alice@example.com' } });
 *   await db.customer.findMany({ where: { tenant: 'acme', email: 'alice@example.com' } });
 *
 * Tables are given by model name, their columns by field name; each sealed column is a `String`
 * field (or `Bytes` for `encoding: 'bytes'`) whatever its plaintext type, its blind index a
 * `String` field, range and prefix tokens a `BigInt[]` field, the marker an `Int`. Writes are
 * sealed (create, createMany, update, updateMany, upsert, nested creates), reads opened (every
 * operation that returns rows, with their relations). A row-version table's writes set every
 * sealed column and the new version, or none (else RowVersionError, ERR_ROW_VERSION).
 * Searches: equals, in and notIn through the blind index, gt/gte/lt/lte and startsWith through
 * the range and prefix indexes, the false positives dropped after the open; in relation filters
 * and nested reads too, resolved to the exact related rows. Everything else that touches a sealed
 * column throws UnsupportedQueryError (ERR_UNSUPPORTED_QUERY), naming the field and the operator.
 *
 * The reads the extension makes of its own (the candidates of a search, the rows of an updateMany
 * that seals, the marker of a partial update) go through Prisma's request for the operation, as a
 * findMany, so they run in the caller's transaction; should a Prisma version not pass its request
 * to extensions, they go through the client the extension wraps instead.
 *
 * Prisma is not imported, not even for its types: the library never loads it; the caller passes the client.
 */
import type { Records, Table } from '../records.ts';
import { bindingColumns, isObject, Models, type PrismaDataModel, refuse, type Row } from './prisma-models.ts';
import { resolveWhere } from './prisma-lookup.ts';
import { openResult, planSelection } from './prisma-reads.ts';
import { refuseRaw } from './prisma-raw.ts';
import { type ExactWhere, refuseMention, type TranslatedWhere, WhereTranslator } from './prisma-where.ts';
import { checkRowVersion, DataSealer } from './prisma-writes.ts';

export type { PrismaDataModel, PrismaField } from './prisma-models.ts';

export interface PrismaEncryptionOptions {
  records: Records;
  /** The tables with sealed columns, by model name (as in schema.prisma), each declared with defineTable() over field names. */
  tables: Readonly<Record<string, Table<any>>>;
  /** The client's data model; default the one the generated client carries (its runtime data model). */
  datamodel?: PrismaDataModel;
}

/** What the extension uses of a Prisma client. */
export interface PrismaClientLike {
  $extends(extension: object): unknown;
}

interface QueryParams {
  model?: string;
  operation: string;
  args: unknown;
  query: (args: unknown, internal?: Row) => Promise<unknown>;
  /** Prisma's request (its transaction among it): a query given it with another action runs that action in the same transaction. */
  __internalParams?: Row;
}

/** A findMany of the operation's model: through Prisma's request, in the caller's transaction; else on the wrapped client. */
type ModelReader = (args: Row) => Promise<Row[]>;

const READS = new Set(['findUnique', 'findUniqueOrThrow', 'findFirst', 'findFirstOrThrow', 'findMany']);
const REFUSED_AGGREGATES = new Set(['count', 'aggregate', 'groupBy']);

/** The client extended with the sealing of writes and the opening of reads (the same type: queries keep their shapes). */
export function withEncryption<C extends PrismaClientLike>(client: C, options: PrismaEncryptionOptions): C {
  if (typeof client?.$extends !== 'function') throw new TypeError('kms-envelope/prisma: expected a PrismaClient');
  if (typeof options?.records?.seal !== 'function') throw new TypeError('kms-envelope/prisma: "records" expected the records object of createRecords()');
  const datamodel = options.datamodel ?? (client as unknown as { _runtimeDataModel?: PrismaDataModel })._runtimeDataModel;
  if (!datamodel) throw new TypeError('kms-envelope/prisma: this client carries no runtime data model: pass "datamodel"');
  const extension = new PrismaEncryption(options.records, new Models(datamodel, options.tables ?? {}), client);
  return client.$extends({ name: 'kms-envelope', query: { $allOperations: extension.run } }) as C;
}

const delegate = (client: unknown, model: string) => (client as Record<string, Record<string, (args: Row) => Promise<unknown>>>)[model.charAt(0).toLowerCase() + model.slice(1)]!;

class PrismaEncryption {
  readonly #records: Records;
  readonly #models: Models;
  readonly #client: unknown;
  readonly #where: WhereTranslator;

  constructor(records: Records, models: Models, client: unknown) {
    this.#records = records;
    this.#models = models;
    this.#client = client;
    this.#where = new WhereTranslator(records, models);
  }

  /** A findMany of a model (the operation's, or a related one) in the operation's request, so in its transaction. */
  #reader(model: string, params: QueryParams): ModelReader {
    const internal = params.__internalParams;
    if (!isObject(internal) || internal.action === undefined) return async (args) => (await delegate(this.#client, model).findMany!(args)) as Row[];
    const jsModelName = model.charAt(0).toLowerCase() + model.slice(1);
    const request = { model, jsModelName, clientMethod: `${jsModelName}.findMany`, action: 'findMany', dataPath: [], unpacker: undefined, argsMapper: undefined };
    return async (args) => {
      const rows = await params.query(args, { ...internal, ...request, args });
      if (!Array.isArray(rows)) throw new TypeError('kms-envelope/prisma: this Prisma version answered a read of the extension with no rows array');
      return rows as Row[];
    };
  }

  /** Resolves a where with conditions on sealed columns of any model to the exact rows, reading through the operation's request. */
  #exact(params: QueryParams): ExactWhere {
    return (model, table, translated) => resolveWhere(this.#records, this.#where, this.#reader(model, params), { model, table, where: translated.where, conditions: translated.conditions });
  }

  #sealer(read: ModelReader): DataSealer {
    return new DataSealer(this.#records, this.#models, async (_model, where, column) => (await read({ where, select: { [column]: true }, take: 1 }))[0]?.[column] as number | null | undefined);
  }

  readonly run = async (params: QueryParams): Promise<unknown> => {
    const { model, operation, args, query } = params;
    if (model === undefined) {
      refuseRaw(this.#models, operation, args);
      return query(args);
    }
    if (!this.#models.reachesSealed(model)) return query(args);
    const a: Row = isObject(args) ? { ...args } : {};
    if (REFUSED_AGGREGATES.has(operation)) {
      refuseMention(this.#models, model, a, operation);
      return query(args);
    }
    for (const name of ['orderBy', 'cursor', 'distinct'] as const) if (a[name] !== undefined) refuseMention(this.#models, model, a[name], name);
    const read = this.#reader(model, params);
    const sealer = this.#sealer(read);
    const exact = this.#exact(params);
    if (a.where !== undefined) a.where = await this.#resolve(model, operation, a, { read, exact });
    if (operation.startsWith('updateMany')) checkRowVersion(this.#models.table(model), a.data, `${model}.${operation}`, true);
    if (operation.startsWith('updateMany') && sealer.touchesSealed(model, a.data)) return this.#updateEach(model, operation, a, { params, read, sealer });
    await this.#sealData(model, operation, a, sealer);
    // The query runs with Prisma's own request (a read above may have lent it to another action).
    const internal = params.__internalParams;
    const { args: selected, plan } = await planSelection(this.#models, model, a, (m, w) => this.#where.exact(m, w, exact));
    const result = await (isObject(internal) ? query(selected, { ...internal, args: selected }) : query(selected));
    if (operation === 'createMany' || operation === 'updateMany' || operation === 'deleteMany') return result;
    return openResult(this.#records, plan, result);
  };

  /** The where for the database; when it searches sealed columns, narrowed to the rows that meet it (and paged for reads). */
  async #resolve(model: string, operation: string, a: Row, { read, exact }: { read: ModelReader; exact: ExactWhere }): Promise<unknown> {
    const translated: TranslatedWhere = await this.#where.translate(model, a.where, exact);
    const table = this.#models.table(model);
    if (!table || translated.conditions.length === 0) return translated.where;
    if (a.cursor !== undefined) refuse(model, translated.conditions[0]!.column, 'cursor', 'a search on a sealed column pages in memory: use skip and take');
    const target = { model, table, where: translated.where, conditions: translated.conditions };
    if (!READS.has(operation)) return resolveWhere(this.#records, this.#where, read, target, { orderBy: a.orderBy });
    const first = operation.startsWith('findFirst');
    const page = { orderBy: a.orderBy, skip: a.skip as number | undefined, take: first ? 1 : (a.take as number | undefined) };
    delete a.skip;
    if (!first) delete a.take;
    return resolveWhere(this.#records, this.#where, read, target, page);
  }

  /** Seals the data of a write in place in the arguments. */
  async #sealData(model: string, operation: string, a: Row, sealer: DataSealer): Promise<void> {
    switch (operation) {
      case 'create':
        a.data = await sealer.create(model, a.data);
        break;
      case 'createMany':
      case 'createManyAndReturn':
        a.data = await sealer.createMany(model, a.data);
        break;
      case 'update':
        a.data = await sealer.update(model, a.where as Row, a.data);
        break;
      case 'upsert':
        a.create = await sealer.create(model, a.create);
        a.update = await sealer.update(model, a.where as Row, a.update);
        break;
      case 'updateMany':
      case 'updateManyAndReturn':
        a.data = await sealer.update(model, undefined, a.data);
        break;
      default:
        if (!READS.has(operation) && operation !== 'delete' && operation !== 'deleteMany') refuse(model, undefined, operation, 'an operation the extension does not know');
    }
  }

  /**
   * An updateMany that seals: each row's values are bound to it, so the rows are read (their
   * primary key and partition), each row's data sealed for it, and the update runs once per row
   * through Prisma's own query (inside the caller's transaction, if any).
   */
  async #updateEach(model: string, operation: string, a: Row, call: { params: QueryParams; read: ModelReader; sealer: DataSealer }): Promise<unknown> {
    const { read, sealer } = call;
    const query = call.params.query;
    const table = this.#models.table(model)!;
    if (table.primaryKeys.length === 0) refuse(model, undefined, operation, 'sealing rows one by one needs the table\'s primaryKey (defineTable)');
    const select = Object.fromEntries(bindingColumns(table).map((c) => [c, true]));
    const rows = await read({ where: a.where, select });
    const { args: selected, plan } = await planSelection(this.#models, model, a, (m, w) => this.#where.exact(m, w, this.#exact(call.params)));
    let count = 0;
    const returned: unknown[] = [];
    for (const row of rows) {
      const data = await sealer.update(model, row, a.data);
      const where = Object.fromEntries(table.primaryKeys.map((k) => [k, row[k]]));
      const result = await query({ ...selected, where, data });
      if (Array.isArray(result)) returned.push(...result);
      else count += (result as { count: number }).count;
    }
    if (operation === 'updateMany') return { count };
    return openResult(this.#records, plan, returned);
  }
}
