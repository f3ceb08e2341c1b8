/**
 * The body of `npm run bench:records` (bench/records-db.ts), shared with its small version in the
 * tests (test/records-bench.test.ts): rows (id, name, three encrypted text fields of 20-200 bytes,
 * one index column) inserted in batches through `pg` and selected back as plaintext, as the raw
 * floor, and through the record API, per provider.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { createRecords, defineTable } from '../src/records.ts';
import { type KeyProvider } from '../src/index.node.ts';

type Row = Record<string, unknown>;
type PlainRow = { id: string; name: string; a: string; b: string; c: string };

export interface RecordsBenchOptions {
  pool: pg.Pool;
  providers: readonly (readonly [string, KeyProvider])[];
  rows?: number;
  batch?: number;
  /** Passes per phase, interleaved; each rate is the median. */
  passes?: number;
}

export interface RecordsBenchResult {
  provider: string;
  insert: { api: number; plain: number; floor: number };
  select: { api: number; plain: number; floor: number };
  kmsCalls: number;
  /** Rows the record API opened back to their plaintext, over all passes. */
  opened: number;
}

export const benchRows = (count: number): PlainRow[] =>
  Array.from({ length: count }, (_, i) => ({
    id: `0190a1b2-${String(i).padStart(8, '0')}`,
    name: `user ${i}`,
    a: `a${i}`.padEnd(20, 'x'),
    b: `b${i}`.padEnd(100, 'y'),
    c: `c${i}`.padEnd(200, 'z'),
  }));

export function formatRecordsLine(r: RecordsBenchResult): string {
  const n = (x: number): string => Math.round(x).toString();
  return `records ${r.provider}: insert ${n(r.insert.api)} rows/s (plain ${n(r.insert.plain)}, floor ${n(r.insert.floor)}), select ${n(r.select.api)} rows/s (plain ${n(r.select.plain)}, floor ${n(r.select.floor)}), kms calls ${r.kmsCalls}`;
}

/**
 * Randomness drawn as the library draws it (core/random-pool.ts): one randomFillSync per 4 KiB,
 * carved into salts and nonces, so the floor does not pay a call per value that the library does not.
 */
function pooledRandom(): (length: number) => Buffer {
  let pool = Buffer.alloc(0);
  let offset = 0;
  return (length) => {
    if (offset + length > pool.length) {
      pool = randomBytes(4096);
      offset = 0;
    }
    offset += length;
    return pool.subarray(offset - length, offset);
  };
}

const FIELDS = ['a', 'b', 'c'] as const;
const SALT = 16;
const NONCE = 12;
const TAG = 16;

/**
 * The raw floor, as issue 30 defines it, on node:crypto directly: pooled randomness; one
 * HKDF-SHA-256 row key per row both ways (a 16-byte salt per row, stored with each field; the open
 * derives it once, from the first field's salt); three AES-256-GCM fields with table|column|id as
 * associated data; an HMAC-SHA-256 index truncated to 16 bytes. (Before issue 30 it drew four
 * randomBytes per row and derived the row key once per field on open: slower than a floor.)
 */
function floor() {
  const master = randomBytes(32);
  const random = pooledRandom();
  const keyOf = (salt: Uint8Array) => Buffer.from(hkdfSync('sha256', master, salt, 'kms-envelope bench floor', 32));
  return {
    seal(batch: readonly PlainRow[]): Row[] {
      return batch.map((row: PlainRow) => {
        const salt = random(SALT);
        const key = keyOf(salt);
        const out: Row = { id: row.id, name: row.name };
        for (const column of FIELDS) {
          const nonce = random(NONCE);
          const cipher = createCipheriv('aes-256-gcm', key, nonce);
          cipher.setAAD(Buffer.from(`users|${column}|${row.id}`));
          out[column] = Buffer.concat([salt, nonce, cipher.update(row[column]), cipher.final(), cipher.getAuthTag()]).toString('base64url');
        }
        out.idx = createHmac('sha256', key).update(row.a).digest().subarray(0, 16).toString('base64url');
        key.fill(0);
        return out;
      });
    },
    open(batch: Row[]): Row[] {
      return batch.map((row) => {
        const out: Row = { id: row.id, name: row.name };
        let key: Buffer | undefined;
        for (const column of FIELDS) {
          const bytes = Buffer.from(row[column] as string, 'base64url');
          key ??= keyOf(bytes.subarray(0, SALT));
          const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(SALT, SALT + NONCE));
          decipher.setAAD(Buffer.from(`users|${column}|${row.id}`));
          decipher.setAuthTag(bytes.subarray(bytes.length - TAG));
          out[column] = Buffer.concat([decipher.update(bytes.subarray(SALT + NONCE, bytes.length - TAG)), decipher.final()]).toString('utf8');
        }
        key?.fill(0);
        return out;
      });
    },
  };
}

const users = defineTable({
  name: 'users',
  primaryKey: 'id',
  partition: 'tenant-1',
  columns: { a: { type: 'string', index: { column: 'idx', bits: 128 } }, b: { type: 'string' }, c: { type: 'string' } },
});

async function recordApi(kms: KeyProvider) {
  let calls = 0;
  const counting: KeyProvider = {
    id: kms.id,
    generateDataKey: (r) => (calls++, kms.generateDataKey(r)),
    decryptDataKey: (r) => (calls++, kms.decryptDataKey(r)),
  };
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: counting });
  const records = createRecords({ hierarchy });
  return {
    calls: () => calls,
    /** Its keys wiped and its timers stopped: nothing of one provider's row runs during the next. */
    close: async () => {
      await records.close();
      await hierarchy.close();
    },
    async seal(batch: readonly PlainRow[]): Promise<Row[]> {
      const results = await records.sealMany(users, batch, { failFast: true });
      return results.map((r) => (r.ok ? r.value : undefined)!);
    },
    async open(batch: Row[]): Promise<Row[]> {
      return (await records.openMany(users, batch, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    },
  };
}


const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function recordsBench(options: RecordsBenchOptions): Promise<RecordsBenchResult[]> {
  const { pool, providers } = options;
  const count = options.rows ?? 10_000;
  const batchSize = options.batch ?? 1_000;
  const passes = options.passes ?? 3;
  const rows = benchRows(count);

  // Every phase starts from a collected heap (the bench runs with --expose-gc): a collection owed
  // to an earlier phase's garbage, or to the previous provider's whole row, otherwise lands in
  // whichever phase happens to allocate next (more often the record API's than the floor's).
  const collect = (globalThis as { gc?: () => void }).gc;
  const timed = async (run: () => Promise<void>): Promise<number> => {
    collect?.();
    const start = performance.now();
    await run();
    return count / ((performance.now() - start) / 1000);
  };
  const table = async (name: string): Promise<string> => {
    await pool.query(`DROP TABLE IF EXISTS ${name}`);
    await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, name TEXT, a TEXT, b TEXT, c TEXT, idx TEXT)`);
    return name;
  };
  const insertAll = (name: string, make: (batch: PlainRow[]) => Promise<Row[]> | Row[]): Promise<number> =>
    timed(async () => {
      for (let i = 0; i < count; i += batchSize) {
        const batch = await make(rows.slice(i, i + batchSize));
        const values: unknown[] = [];
        const tuples = batch.map((r, j) => {
          values.push(r.id, r.name, r.a, r.b, r.c, r.idx);
          return `($${j * 6 + 1}, $${j * 6 + 2}, $${j * 6 + 3}, $${j * 6 + 4}, $${j * 6 + 5}, $${j * 6 + 6})`;
        });
        await pool.query(`INSERT INTO ${name} (id, name, a, b, c, idx) VALUES ${tuples.join(', ')}`, values);
      }
    });
  const selectAll = (name: string, read: (batch: Row[]) => Promise<unknown> | unknown): Promise<number> =>
    timed(async () => {
      let last: unknown = '';
      for (let i = 0; i < count; i += batchSize) {
        // A range by primary key after the last id read (no OFFSET, which rescans every row before it).
        const { rows: batch } = await pool.query(`SELECT id, name, a, b, c, idx FROM ${name} WHERE id > $1 ORDER BY id LIMIT ${batchSize}`, [last]);
        last = (batch.at(-1) as Row | undefined)?.id ?? last;
        await read(batch as Row[]);
      }
    });

  // The providers take turns within each pass (plain, floor, record API for one, then the next):
  // run one after the other, a later provider's row met a warmer process and server and a
  // different load, and its ratio moved by a fifth with nothing in the library changed.
  const rounds = await Promise.all(
    providers.map(async ([provider, kms]) => ({
      provider,
      api: await recordApi(kms),
      runs: { plainInsert: [] as number[], plainSelect: [] as number[], floorInsert: [] as number[], floorSelect: [] as number[], apiInsert: [] as number[], apiSelect: [] as number[] },
      opened: 0,
    })),
  );
  // Each phase `passes` times, interleaved, and the median of each: on a busy machine one pass is noise.
  for (let pass = 0; pass < passes; pass++) {
    for (const round of rounds) {
      const { api, runs } = round;
      runs.plainInsert.push(await insertAll(await table('bench_plain'), (b) => b.map((r) => ({ ...r, idx: r.a }))));
      runs.plainSelect.push(await selectAll('bench_plain', () => {}));
      const f = floor();
      runs.floorInsert.push(await insertAll(await table('bench_floor'), (b) => f.seal(b)));
      runs.floorSelect.push(await selectAll('bench_floor', (b) => f.open(b)));
      runs.apiInsert.push(await insertAll(await table('bench_records'), (b) => api.seal(b)));
      runs.apiSelect.push(
        await selectAll('bench_records', async (b) => {
          for (const row of await api.open(b)) if (row.a === rows[Number(String(row.id).slice(9))]!.a) round.opened++;
        }),
      );
    }
  }
  const results: RecordsBenchResult[] = [];
  for (const { provider, api, runs, opened } of rounds) {
    await api.close();
    results.push({
      provider,
      insert: { api: median(runs.apiInsert), plain: median(runs.plainInsert), floor: median(runs.floorInsert) },
      select: { api: median(runs.apiSelect), plain: median(runs.plainSelect), floor: median(runs.floorSelect) },
      kmsCalls: api.calls(),
      opened,
    });
  }
  return results;
}
