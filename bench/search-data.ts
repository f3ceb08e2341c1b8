/**
 * The table of `npm run bench:search`, shared by the bench and its build processes: the values of a
 * row are a function of its id (the same in every run and every process), the table definitions,
 * and a record set whose keys live in PostgreSQL beside the table under a fixed master key (a
 * reused table opens in the next run, and every build process seals under the same keys).
 */
import type pg from 'pg';
import { createKeyHierarchy, PostgresKeyStore } from '../src/hierarchy.ts';
import { LocalKms } from '../src/index.node.ts';
import { createRecords, defineTable, type Records } from '../src/records.ts';

export const TABLE = 'kmse_bench_search';
export const TENANT = 'tenant-bench';
const MASTER = Uint8Array.from({ length: 32 }, (_, i) => i + 1);

/** A value per row id, the same in every run: xorshift32 of the id. */
export function rand(id: number, salt: number): number {
  let x = (id * 2654435761 + salt * 40503 + 1) >>> 0 || 1;
  for (let i = 0; i < 3; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
  }
  return x / 2 ** 32;
}

export const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'su', 'ta', 'ri', 'vo', 'da', 'pe', 'zu', 'fo', 'gi', 'ha', 'ju', 'be', 'co', 'xi', 'wa', 'ye'];
export const CENTS = 10_000_000; // amounts from 0.00 to 99999.99
const DAY = 86_400_000;
const DAY0 = Date.UTC(2015, 0, 1);

export const amountText = (cents: number): string => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;

export function valuesOf(id: number): { amount: string; cents: number; placed: Date; name: string } {
  const cents = Math.floor(rand(id, 1) * CENTS);
  const name = [0, 1, 2].map((k) => SYLLABLES[Math.floor(rand(id, 10 + k) * SYLLABLES.length)]).join('');
  return { amount: amountText(cents), cents, placed: new Date(DAY0 + Math.floor(rand(id, 2) * 3650) * DAY), name };
}

export const orders = defineTable({
  name: 'orders',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: {
    placed: { type: 'date', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'placed_tokens', levels: ['day', 'month', 'year'] } },
    amount: { type: 'decimal', scale: 2, search: { kind: 'range', acknowledgeLeakage: 'range', column: 'amount_tokens', levels: [6, 10, 14], maxQueryTokens: 96 } },
    name: { type: 'string', search: { kind: 'prefix', acknowledgeLeakage: 'prefix', column: 'name_tokens', minLength: 2, maxLength: 5, normalize: ['casefold'] } },
  },
});
/** The declarations a search reads with: only the searched column is opened. */
export const amountOnly = defineTable({ ...orders, columns: { amount: orders.columns.amount } });
export const nameOnly = defineTable({ ...orders, columns: { name: orders.columns.name } });

export function benchRecords(pool: pg.Pool): Records {
  const store = new PostgresKeyStore({ client: pool, table: `${TABLE}_keys` });
  return createRecords({ hierarchy: createKeyHierarchy({ store, kms: new LocalKms({ bench: MASTER }) }) });
}

/** The columns of the table, in the order buildRows() gives them. */
export const COLUMNS = ['id', 'tenant', 'placed', 'amount', 'name', 'placed_tokens', 'amount_tokens', 'name_tokens'] as const;

/**
 * Seals rows [from, to) and inserts them, `batch` rows per statement (one multi-row INSERT from
 * unnest() of one array per column: one round trip and one parse per batch).
 */
export async function insertRows(pool: pg.Pool, records: Records, from: number, to: number, progress: (rows: number) => void): Promise<void> {
  const BATCH = 5000;
  for (let start = from; start < to; start += BATCH) {
    const end = Math.min(to, start + BATCH);
    const cols: unknown[][] = COLUMNS.map(() => []);
    for (let id = start; id < end; id++) {
      // seal(), not sealSync(): a build outlives the active version's TTL, and seal() reloads it where sealSync() would throw.
      const row = (await records.seal(orders, { id: String(id), tenant: TENANT, ...valuesOf(id) })) as Record<string, unknown>;
      row.id = id;
      COLUMNS.forEach((c, i) => cols[i]!.push(Array.isArray(row[c]) ? `{${(row[c] as number[]).join(',')}}` : row[c]));
    }
    await pool.query(
      `INSERT INTO ${TABLE} SELECT a, b, c, d, e, f::bigint[], g::bigint[], h::bigint[] FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS u(a, b, c, d, e, f, g, h)`,
      cols,
    );
    progress(end - start);
  }
}
