/**
 * `npm run bench:records`: 10,000 rows (id, name, three encrypted text fields of 20-200 bytes, one
 * index column) inserted in batches of 1,000 through `pg` and selected back, in one run, as:
 * plaintext; the raw floor written directly on node:crypto (per row one HKDF-SHA-256 key from an
 * in-memory master key and a 16-byte salt, each field AES-256-GCM with its own nonce and
 * table|column|id as associated data, an HMAC-SHA-256 index truncated to 16 bytes); and the record
 * API under a key hierarchy with LocalKms and with TencentKms against the emulator. One line per
 * provider: `records <provider>: insert N rows/s (plain P, floor F), select N rows/s (plain P, floor F), kms calls K`,
 * each rate the median of three interleaved passes (one record API per provider: its KMS calls are for all three).
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  createKeyHierarchy,
  createRecords,
  defineTable,
  type KeyProvider,
  LocalKms,
  MemoryKeyStore,
  TencentKms,
} from '../src/index.ts';
import { spawnEmulator } from './emulator-process.ts';

const ROWS = 10_000;
const BATCH = 1_000;
const root = new URL('../../', import.meta.url);

const rows = Array.from({ length: ROWS }, (_, i) => ({
  id: `0190a1b2-${String(i).padStart(8, '0')}`,
  name: `user ${i}`,
  a: `a${i}`.padEnd(20, 'x'),
  b: `b${i}`.padEnd(100, 'y'),
  c: `c${i}`.padEnd(200, 'z'),
}));

async function startPostgres(): Promise<{ url: string; stop: () => void }> {
  if (process.env.KMS_ENVELOPE_PG_URL) return { url: process.env.KMS_ENVELOPE_PG_URL, stop: () => {} };
  const script = new URL('.ci/postgres.sh', root).pathname;
  const out = execFileSync('bash', [script, 'start'], { encoding: 'utf8' });
  const url = /KMS_ENVELOPE_PG_URL=(\S+)/.exec(out)![1]!;
  const dir = /KMS_ENVELOPE_PG_DIR=(\S+)/.exec(out)![1]!;
  return { url, stop: () => execFileSync('bash', [script, 'stop', dir]) };
}

type Row = Record<string, unknown>;

async function timed(run: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await run();
  return ROWS / ((performance.now() - start) / 1000);
}

async function insertAll(pool: pg.Pool, table: string, make: (batch: typeof rows) => Promise<Row[]> | Row[]): Promise<number> {
  return timed(async () => {
    for (let i = 0; i < ROWS; i += BATCH) {
      const batch = await make(rows.slice(i, i + BATCH));
      const values: unknown[] = [];
      const tuples = batch.map((r, j) => {
        values.push(r.id, r.name, r.a, r.b, r.c, r.idx);
        return `($${j * 6 + 1}, $${j * 6 + 2}, $${j * 6 + 3}, $${j * 6 + 4}, $${j * 6 + 5}, $${j * 6 + 6})`;
      });
      await pool.query(`INSERT INTO ${table} (id, name, a, b, c, idx) VALUES ${tuples.join(', ')}`, values);
    }
  });
}

async function selectAll(pool: pg.Pool, table: string, read: (batch: Row[]) => Promise<unknown> | unknown): Promise<number> {
  return timed(async () => {
    for (let i = 0; i < ROWS; i += BATCH) {
      const { rows: batch } = await pool.query(`SELECT id, name, a, b, c, idx FROM ${table} ORDER BY id LIMIT ${BATCH} OFFSET ${i}`);
      await read(batch as Row[]);
    }
  });
}

/** The raw floor: node:crypto directly, as the issue describes it. */
function floor() {
  const master = randomBytes(32);
  const keyOf = (salt: Buffer) => Buffer.from(hkdfSync('sha256', master, salt, 'kms-envelope bench floor', 32));
  return {
    seal(batch: typeof rows): Row[] {
      return batch.map((row) => {
        const salt = randomBytes(16);
        const key = keyOf(salt);
        const out: Row = { id: row.id, name: row.name };
        for (const column of ['a', 'b', 'c'] as const) {
          const nonce = randomBytes(12);
          const cipher = createCipheriv('aes-256-gcm', key, nonce);
          cipher.setAAD(Buffer.from(`users|${column}|${row.id}`));
          out[column] = Buffer.concat([salt, nonce, cipher.update(row[column]), cipher.final(), cipher.getAuthTag()]).toString('base64url');
        }
        out.idx = createHmac('sha256', key).update(row.a).digest().subarray(0, 16).toString('base64url');
        key.fill(0);
        return out;
      });
    },
    open(batch: Row[]): void {
      for (const row of batch) {
        for (const column of ['a', 'b', 'c']) {
          const bytes = Buffer.from(row[column] as string, 'base64url');
          const key = keyOf(bytes.subarray(0, 16));
          const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(16, 28));
          decipher.setAAD(Buffer.from(`users|${column}|${row.id}`));
          decipher.setAuthTag(bytes.subarray(bytes.length - 16));
          decipher.update(bytes.subarray(28, bytes.length - 16));
          decipher.final();
          key.fill(0);
        }
      }
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
  const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: counting }) });
  return {
    calls: () => calls,
    async seal(batch: typeof rows): Promise<Row[]> {
      const results = await records.sealMany(users, batch, { failFast: true });
      return results.map((r) => (r.ok ? r.value : undefined)!);
    },
    async open(batch: Row[]): Promise<void> {
      await records.openMany(users, batch, { failFast: true });
    },
  };
}

const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 4 });
const emulator = await spawnEmulator();
try {
  const table = async (name: string) => {
    await pool.query(`DROP TABLE IF EXISTS ${name}`);
    await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, name TEXT, a TEXT, b TEXT, c TEXT, idx TEXT)`);
    return name;
  };
  const providers: [string, KeyProvider][] = [
    ['LocalKms', LocalKms.generate()],
    ['TencentKms (emulator)', new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials })],
  ];
  // Each phase three times, interleaved, and the median of each: on a busy machine one pass is noise.
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [name, kms] of providers) {
    const api = await recordApi(kms);
    const runs: Record<string, number[]> = { plainInsert: [], plainSelect: [], floorInsert: [], floorSelect: [], apiInsert: [], apiSelect: [] };
    for (let rep = 0; rep < 3; rep++) {
      runs.plainInsert!.push(await insertAll(pool, await table('bench_plain'), (b) => b.map((r) => ({ ...r, idx: r.a }))));
      runs.plainSelect!.push(await selectAll(pool, 'bench_plain', () => {}));
      const f = floor();
      runs.floorInsert!.push(await insertAll(pool, await table('bench_floor'), (b) => f.seal(b)));
      runs.floorSelect!.push(await selectAll(pool, 'bench_floor', (b) => f.open(b)));
      runs.apiInsert!.push(await insertAll(pool, await table('bench_records'), (b) => api.seal(b)));
      runs.apiSelect!.push(await selectAll(pool, 'bench_records', (b) => api.open(b)));
    }
    const n = (phase: string) => Math.round(median(runs[phase]!)).toString();
    console.log(
      `records ${name}: insert ${n('apiInsert')} rows/s (plain ${n('plainInsert')}, floor ${n('floorInsert')}), select ${n('apiSelect')} rows/s (plain ${n('plainSelect')}, floor ${n('floorSelect')}), kms calls ${api.calls()}`,
    );
  }
} finally {
  emulator.stop();
  await pool.end();
  server.stop();
}
