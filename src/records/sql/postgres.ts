/**
 * The PostgreSQL driver of a table sweep (src/records/sweep.ts), through a pool the caller makes (pg's
 * Pool, or anything with the same connect/query/release): this package imports no driver.
 *
 * Each batch is one transaction on one connection:
 *   BEGIN; SELECT … WHERE <pending> AND key > <last> ORDER BY key LIMIT n FOR UPDATE SKIP LOCKED;
 *   (the transform); UPDATE … FROM unnest($1::type[], …) for the rows it wrote; COMMIT.
 * The UPDATE takes one array per column, so its text is the same whatever the number of rows: with
 * pg's clients it is a named statement, parsed and planned once per connection (the SELECT is
 * planned for each batch: its plan depends on the limit and the key it starts after).
 * The row locks keep application writes to those rows waiting for the batch (no lost update), and
 * SKIP LOCKED lets other workers take the next rows instead of waiting. Under READ COMMITTED a row
 * another worker committed meanwhile is checked against `pending` again and no longer matches, so
 * no row is done twice.
 */
import { quoteTableName } from '../../core/sql-names.ts';
import { quoteIdentifier, runSweep, type SweepDriver, type SweepOptions, type SweepRow, type SweepSummary } from '../sweep.ts';

/**
 * One connection: pg's PoolClient fits. Named statements (see TableSweepOptions.namedStatements)
 * are sent as pg's `query({ name, text, values })`, which a client that takes text only need not
 * support.
 */
export interface PostgresSweepClient {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  release(error?: Error | boolean): void;
}

/**
 * Where connections come from: pg's Pool fits. Each worker holds one for the whole sweep, so the
 * pool needs at least one more than the workers (the key store, when it shares the pool, takes
 * it: with none left, the workers would wait for a key that waits for a connection).
 */
export interface PostgresSweepPool {
  connect(): Promise<PostgresSweepClient>;
  /** pg's Pool: its `max` is checked against the workers. */
  readonly options?: { readonly max?: number };
}

export interface TableSweepOptions extends SweepOptions {
  /** The table (`name` or `schema.name`). */
  table: string;
  /** The key column(s) the sweep walks in order: the primary key. */
  key: string | readonly string[];
  /** The columns the transform reads (and may write), besides the key. */
  columns: readonly string[];
  /** SQL predicate of the rows still to do: the progress marker (rotationSweep() and the others make it). */
  pending: string;
  /** The bound parameters `$1`, `$2`, ... of `pending` (rotationSweep() with `partitions` gives a function resolved at the start). */
  params?: readonly unknown[] | (() => Promise<readonly unknown[]>);
  /**
   * Whether the UPDATEs go as named statements, parsed and planned once per connection (pg's
   * `query({ name, text, values })`), rather than as text parsed and planned each time. Default:
   * yes for pg's clients (pg.Pool), no for any other client; true for another client that takes
   * pg's query config, false to send text only (behind a pooler that does not keep named
   * statements per client: PgBouncer in transaction mode without max_prepared_statements).
   */
  namedStatements?: boolean;
}

interface Shape {
  table: string;
  key: string[];
  columns: string[];
  pending: string;
  params: readonly unknown[];
}

/** The parameters of `pending`, resolved once. */
export async function pendingParams(options: TableSweepOptions): Promise<readonly unknown[]> {
  const given = typeof options.params === 'function' ? await options.params() : (options.params ?? []);
  if (!Array.isArray(given)) throw new TypeError('"params" expected an array of the parameters of "pending"');
  return given;
}

export function tableShape(options: TableSweepOptions): Shape {
  const key = typeof options.key === 'string' ? [options.key] : [...(options.key ?? [])];
  if (key.length === 0) throw new TypeError('"key" expected the key column(s) to walk the table in order');
  if (!Array.isArray(options.columns) || options.columns.length === 0) throw new TypeError('"columns" expected the columns the transform reads');
  if (typeof options.pending !== 'string' || options.pending.trim() === '') throw new TypeError('"pending" expected an SQL predicate of the rows still to do');
  for (const c of [...key, ...options.columns]) quoteIdentifier(c);
  const columns = options.columns.filter((c) => !key.includes(c));
  return { table: quoteTableName(options.table), key, columns: [...new Set(columns)], pending: options.pending, params: [] };
}

/** Rows worked on between two UPDATEs of one batch (see batch()). */
const PIPELINE_SLICE = 100;

/** Node's Buffer, which the drivers want for binary parameters (pg sends other typed arrays as text); the drivers run where it exists. */
interface BufferClass {
  isBuffer(value: unknown): boolean;
  from(buffer: ArrayBufferLike, offset: number, length: number): Uint8Array;
}
const NodeBuffer = (globalThis as { Buffer?: BufferClass }).Buffer;

/** A Uint8Array as a Buffer over the same memory (no copy), for a driver's binary parameter. */
export function bytesParam(value: unknown): unknown {
  return value instanceof Uint8Array && NodeBuffer && !NodeBuffer.isBuffer(value) ? NodeBuffer.from(value.buffer, value.byteOffset, value.byteLength) : value;
}

/** Yields to the event loop's I/O (setImmediate where it exists). */
const yieldToIo = (): Promise<void> => new Promise<void>((resume) => ((globalThis as { setImmediate?: (f: () => void) => void }).setImmediate ?? setTimeout)(resume));

/** A column's SQL type, and whether its values are arrays (unnest would flatten them into their elements). */
interface ColumnType {
  sql: string;
  array: boolean;
}

/** Names of the named statements, one per statement text in this process: the same text has the same name on every connection. */
const statementNames = new Map<string, string>();
/** Texts named at most (past it, statements go as text): each stays prepared on every connection that ran it, for the connection's life. */
const MAX_NAMED_STATEMENTS = 1000;

function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) statementNames.set(text, (name = `kmse_sweep_${statementNames.size + 1}`));
  return name;
}

type QueryConfig = { name: string; text: string; values: unknown[] };

/** Sends a statement: named when the client takes pg's query config and `named` allows it, else as text. */
function sender(client: PostgresSweepClient, named: boolean): (text: string, values: unknown[]) => Promise<unknown> {
  const byConfig = client.query.bind(client) as unknown as (config: QueryConfig) => Promise<unknown>;
  return (text, values) => {
    const name = named ? statementName(text) : undefined;
    return name === undefined ? client.query(text, values) : byConfig({ name, text, values });
  };
}

/** Whether a client is pg's (a PoolClient): it takes `query({ name, text, values })`. */
const isPgClient = (client: PostgresSweepClient): boolean => typeof (client as { connectionParameters?: unknown }).connectionParameters === 'object';

/**
 * The UPDATE of the rows a slice wrote, for one set of columns: `FROM unnest($1::type[], …)`, one
 * array per column, the same text whatever the number of rows (named, it is parsed and planned
 * once); when a column holds arrays, which unnest would flatten, a VALUES list of the rows (its
 * text depends on their number: sent as text).
 */
function updateWriter(shape: Shape, types: Map<string, ColumnType>, send: (text: string, values: unknown[]) => Promise<unknown>, sendText: (text: string, values: unknown[]) => Promise<unknown>) {
  const q = (c: string) => quoteIdentifier(c);
  const keyWidth = shape.key.length;
  const on = shape.key.map((c, i) => `t.${q(c)} = v.c${i}`).join(' AND ');
  const set = (names: string[]) => names.map((c, i) => `${q(c)} = v.c${keyWidth + i}`).join(', ');
  const alias = (width: number) => Array.from({ length: width }, (_, i) => `c${i}`).join(', ');
  const unnestTexts = new Map<string, string | null>();
  const valuesTexts = new Map<string, string>();

  /** The unnest form's text for a column set, or null when a column holds arrays. */
  function unnestText(id: string, names: string[]): string | null {
    let sql = unnestTexts.get(id);
    if (sql !== undefined) return sql;
    const all = [...shape.key, ...names];
    sql = all.some((c) => types.get(c)!.array) ? null : `UPDATE ${shape.table} AS t SET ${set(names)} FROM unnest(${all.map((c, i) => `$${i + 1}::${types.get(c)!.sql}[]`).join(', ')}) AS v(${alias(all.length)}) WHERE ${on}`;
    unnestTexts.set(id, sql);
    return sql;
  }

  function valuesText(id: string, names: string[], rows: number): string {
    const cacheKey = `${id}\u0001${rows}`;
    let sql = valuesTexts.get(cacheKey);
    if (sql !== undefined) return sql;
    const all = [...shape.key, ...names];
    const width = all.length;
    const tuples: string[] = [];
    for (let row = 0; row < rows; row++) {
      // The first tuple's casts type the VALUES list's columns.
      const cells = all.map((c, i) => (row === 0 ? `$${i + 1}::${types.get(c)!.sql}` : `$${row * width + i + 1}`));
      tuples.push(`(${cells.join(', ')})`);
    }
    sql = `UPDATE ${shape.table} AS t SET ${set(names)} FROM (VALUES ${tuples.join(', ')}) AS v(${alias(width)}) WHERE ${on}`;
    if (valuesTexts.size >= 64) valuesTexts.clear();
    valuesTexts.set(cacheKey, sql);
    return sql;
  }

  return async (id: string, names: string[], group: { key: readonly unknown[]; write: Record<string, unknown> }[]): Promise<void> => {
    const unnest = unnestText(id, names);
    if (unnest !== null) {
      const arrays = Array.from({ length: keyWidth + names.length }, () => new Array<unknown>(group.length));
      for (let row = 0; row < group.length; row++) {
        const w = group[row]!;
        for (let i = 0; i < keyWidth; i++) arrays[i]![row] = bytesParam(w.key[i]);
        for (let i = 0; i < names.length; i++) arrays[keyWidth + i]![row] = bytesParam(w.write[names[i]!]);
      }
      await send(unnest, arrays);
      return;
    }
    const width = keyWidth + names.length;
    const values = new Array<unknown>(group.length * width);
    for (let row = 0, at = 0; row < group.length; row++) {
      const w = group[row]!;
      for (let i = 0; i < keyWidth; i++) values[at++] = bytesParam(w.key[i]);
      for (const n of names) values[at++] = bytesParam(w.write[n]);
    }
    await sendText(valuesText(id, names, group.length), values);
  };
}

type Writes = { key: readonly unknown[]; write: Record<string, unknown> }[];

/** The rows written grouped by their set of columns (a sweep writes the same set for every row, mostly in the same order: the last row's set is reused when its names match). */
function groupByColumns(writes: Writes, shape: Shape, types: Map<string, ColumnType>, checked: Set<string>): Map<string, { names: string[]; writes: Writes }> {
  const groups = new Map<string, { names: string[]; writes: Writes }>();
  let lastNames: string[] = [];
  let lastGroup: { names: string[]; writes: Writes } | undefined;
  for (const w of writes) {
    const names = Object.keys(w.write);
    if (lastGroup && names.length === lastNames.length && names.every((n, i) => n === lastNames[i])) {
      lastGroup.writes.push(w);
      continue;
    }
    const sorted = [...names].sort();
    const id = sorted.join('\u0000');
    if (!checked.has(id)) {
      for (const n of sorted) if (!types.has(n) || shape.key.includes(n)) throw new TypeError(`the transform wrote ${JSON.stringify(n)}, not a column the sweep may write`);
      checked.add(id);
    }
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { names: sorted, writes: [] }));
    group.writes.push(w);
    lastNames = names;
    lastGroup = group;
  }
  return groups;
}

function driverOn(client: PostgresSweepClient, shape: Shape, types: Map<string, ColumnType>, named: boolean): SweepDriver {
  const q = (c: string) => quoteIdentifier(c);
  const keyList = shape.key.map(q).join(', ');
  // `pending`'s own parameters come first ($1..$k), then the limit, then the key to start after.
  const k = shape.params.length;
  const select = (after: boolean) =>
    `SELECT ${[...shape.key, ...shape.columns].map(q).join(', ')} FROM ${shape.table} WHERE (${shape.pending})` +
    (after ? ` AND (${keyList}) > (${shape.key.map((c, i) => `$${k + 2 + i}::${types.get(c)!.sql}`).join(', ')})` : '') +
    ` ORDER BY ${keyList} LIMIT $${k + 1} FOR UPDATE SKIP LOCKED`;
  const sendText = (text: string, values: unknown[]) => client.query(text, values);
  const update = updateWriter(shape, types, sender(client, named), sendText);
  /** Column sets already checked, by their sorted names joined. */
  const checked = new Set<string>();

  async function write(writes: Writes): Promise<void> {
    // One UPDATE per set of columns written.
    for (const [id, { names, writes: group }] of groupByColumns(writes, shape, types, checked)) await update(id, names, group);
  }

  return {
    key: shape.key,
    async countPending() {
      const { rows } = await client.query(`SELECT count(*)::bigint AS n FROM ${shape.table} WHERE (${shape.pending})`, [...shape.params]);
      return Number((rows[0] as { n: unknown }).n);
    },
    async batch(after, limit, work) {
      await client.query('BEGIN');
      // The rows are worked on in slices, and each slice's UPDATE is sent before the next slice is
      // worked on: the server writes one while this process seals the next (one transaction still).
      // The UPDATEs form one chain, so the client never has two queries in flight (pg 9 refuses
      // a query on a busy client).
      let writing: Promise<void> = Promise.resolve();
      try {
        // The SELECT is planned for each batch, as text: its best plan depends on the limit and on
        // the key it starts after (a generic plan, as a named statement gets, knows neither).
        const { rows } = await client.query(select(after !== undefined), [...shape.params, limit, ...(after ?? [])]);
        const read = rows as SweepRow[];
        for (let i = 0; i < read.length; i += PIPELINE_SLICE) {
          const writes = await work(read.slice(i, i + PIPELINE_SLICE));
          if (writes.length) {
            writing = writing.then(() => write(writes));
            writing.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
          }
          // Lets the driver hand the queued UPDATE to the server and read its answer.
          if (i + PIPELINE_SLICE < read.length) await yieldToIo();
        }
        await writing;
        await client.query('COMMIT');
        const last = read.at(-1);
        return { rows: read.length, last: last ? shape.key.map((c) => last[c]) : undefined };
      } catch (error) {
        await writing.catch(() => {});
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      }
    },
  };
}

/** The columns' SQL types (for the casts of the UPDATE's arrays or VALUES list and of the key comparison), and which hold arrays. */
async function columnTypes(client: PostgresSweepClient, shape: Shape): Promise<Map<string, ColumnType>> {
  const { rows } = await client.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory = 'A' AS array
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
    [shape.table],
  );
  const types = new Map((rows as { name: string; type: string; array: boolean }[]).map((r) => [r.name, { sql: r.type, array: r.array === true }]));
  for (const c of [...shape.key, ...shape.columns]) if (!types.has(c)) throw new TypeError(`table ${shape.table} has no column ${JSON.stringify(c)}`);
  return types;
}

/**
 * Sweeps a PostgreSQL table: rows matching `pending`, in key order, `batchSize` per transaction,
 * `workers` connections at once (several processes may sweep the same table at once too).
 * Resolves with the summary; see runSweep() for stopping and failures.
 *
 * @example
 * ```ts
 * const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
 * const summary = await sweepPostgres(pool, { table: 'customers', key: 'id', ...plan, workers: 4, signal, onEvent });
 * ```
 */
export async function sweepPostgres(pool: PostgresSweepPool, options: TableSweepOptions): Promise<SweepSummary> {
  if (!pool || typeof pool.connect !== 'function') throw new TypeError('"pool" expected a pg Pool (connect() giving a client)');
  const shape = { ...tableShape(options), params: await pendingParams(options) };
  const max = pool.options?.max;
  const workers = options.workers ?? 1;
  if (typeof max === 'number' && Number.isSafeInteger(workers) && workers >= max) {
    throw new RangeError(`"workers" is ${workers} and the pool holds ${max} connections: it needs at least ${workers + 1} (each worker keeps one, and the key store needs one more)`);
  }
  const first = await pool.connect();
  let broken: Error | undefined;
  try {
    const types = await columnTypes(first, shape);
    const named = (client: PostgresSweepClient) => options.namedStatements ?? isPgClient(client);
    const driver: SweepDriver = {
      ...driverOn(first, shape, types, named(first)),
      async fork() {
        const client = await pool.connect();
        const forked = driverOn(client, shape, types, named(client));
        let failed: Error | undefined;
        return {
          ...forked,
          batch: (after, limit, work) =>
            forked.batch(after, limit, work).catch((error: unknown) => {
              failed = error instanceof Error ? error : new Error(String(error));
              throw error;
            }),
          // A client whose batch failed is destroyed rather than pooled (its connection may be broken).
          release: () => client.release(failed),
        };
      },
    };
    return await runSweep(driver, options);
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    // A client whose transaction failed may be in a bad state: pg destroys it when given the error.
    first.release(broken);
  }
}
