/**
 * The PostgreSQL driver of a table sweep (src/records/sweep.ts), through a pool the caller makes (pg's
 * Pool, or anything with the same connect/query/release): this package imports no driver.
 *
 * Each batch is one transaction on one connection:
 *   BEGIN; SELECT … WHERE <pending> AND key > <last> ORDER BY key LIMIT n FOR UPDATE SKIP LOCKED;
 *   (the transform); UPDATE … FROM (VALUES …) for the rows it wrote; COMMIT.
 * The row locks keep application writes to those rows waiting for the batch (no lost update), and
 * SKIP LOCKED lets other workers take the next rows instead of waiting. Under READ COMMITTED a row
 * another worker committed meanwhile is checked against `pending` again and no longer matches, so
 * no row is done twice.
 */
import { quoteTableName } from '../../core/sql-names.ts';
import { quoteIdentifier, runSweep, type SweepDriver, type SweepOptions, type SweepRow, type SweepSummary } from '../sweep.ts';

/** One connection: pg's PoolClient fits. */
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

function driverOn(client: PostgresSweepClient, shape: Shape, types: Map<string, string>): SweepDriver {
  const q = (c: string) => quoteIdentifier(c);
  const keyList = shape.key.map(q).join(', ');
  // `pending`'s own parameters come first ($1..$k), then the limit, then the key to start after.
  const k = shape.params.length;
  const select = (after: boolean) =>
    `SELECT ${[...shape.key, ...shape.columns].map(q).join(', ')} FROM ${shape.table} WHERE (${shape.pending})` +
    (after ? ` AND (${keyList}) > (${shape.key.map((c, i) => `$${k + 2 + i}::${types.get(c)}`).join(', ')})` : '') +
    ` ORDER BY ${keyList} LIMIT $${k + 1} FOR UPDATE SKIP LOCKED`;

  /** Column sets already checked, by their sorted names joined. */
  const checked = new Set<string>();
  /** The UPDATE for a column set and a number of rows (placeholders only: the values are parameters). */
  const statements = new Map<string, string>();
  function statement(id: string, names: string[], rows: number): string {
    const cacheKey = `${id}\u0001${rows}`;
    let sql = statements.get(cacheKey);
    if (sql !== undefined) return sql;
    const all = [...shape.key, ...names];
    const width = all.length;
    const tuples: string[] = [];
    for (let row = 0; row < rows; row++) {
      // The first tuple's casts type the VALUES list's columns.
      const cells = all.map((c, i) => (row === 0 ? `$${i + 1}::${types.get(c)}` : `$${row * width + i + 1}`));
      tuples.push(`(${cells.join(', ')})`);
    }
    const alias = all.map((_, i) => `c${i}`);
    const set = names.map((c, i) => `${q(c)} = v.c${shape.key.length + i}`).join(', ');
    const on = shape.key.map((c, i) => `t.${q(c)} = v.c${i}`).join(' AND ');
    sql = `UPDATE ${shape.table} AS t SET ${set} FROM (VALUES ${tuples.join(', ')}) AS v(${alias.join(', ')}) WHERE ${on}`;
    if (statements.size >= 64) statements.clear();
    statements.set(cacheKey, sql);
    return sql;
  }

  async function write(writes: { key: readonly unknown[]; write: Record<string, unknown> }[]): Promise<void> {
    // One UPDATE per set of columns written (a sweep writes the same set for every row, mostly in
    // the same order: the last row's set is reused when its names match).
    const groups = new Map<string, { names: string[]; writes: typeof writes }>();
    let lastNames: string[] = [];
    let lastGroup: { names: string[]; writes: typeof writes } | undefined;
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
    for (const [id, { names, writes: group }] of groups) {
      const keyWidth = shape.key.length;
      const width = keyWidth + names.length;
      const values = new Array<unknown>(group.length * width);
      for (let row = 0, at = 0; row < group.length; row++) {
        const w = group[row]!;
        for (let i = 0; i < keyWidth; i++) values[at++] = bytesParam(w.key[i]);
        for (const n of names) values[at++] = bytesParam(w.write[n]);
      }
      await client.query(statement(id, names, group.length), values);
    }
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

/** The columns' SQL types, for the casts of the UPDATE's VALUES list and the key comparison. */
async function columnTypes(client: PostgresSweepClient, shape: Shape): Promise<Map<string, string>> {
  const { rows } = await client.query(
    'SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped',
    [shape.table],
  );
  const types = new Map((rows as { name: string; type: string }[]).map((r) => [r.name, r.type]));
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
    const driver: SweepDriver = {
      ...driverOn(first, shape, types),
      async fork() {
        const client = await pool.connect();
        const forked = driverOn(client, shape, types);
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
