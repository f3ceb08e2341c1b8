/**
 * `npm run bench:records`: 10,000 rows (id, name, three encrypted text fields of 20-200 bytes, one
 * index column) inserted in batches of 1,000 through `pg` and selected back, in one run, as:
 * plaintext; the raw floor written directly on node:crypto as issue 30 defines it (randomness
 * pooled as the library pools it, one HKDF-SHA-256 key per row both ways from an in-memory master
 * key and a 16-byte salt, each field AES-256-GCM with its own nonce and table|column|id as
 * associated data, an HMAC-SHA-256 index truncated to 16 bytes); and the record
 * API under a key hierarchy with LocalKms and with TencentKms against the emulator. One line per
 * provider (bench/records-db-run.ts): `records <provider>: insert N rows/s (plain P, floor F), select N rows/s (plain P, floor F), kms calls K`,
 * each rate the median of three interleaved passes, the providers taking turns within each pass
 * (one record API per provider: its KMS calls are for all three).
 * Every select reads ranges by primary key (`WHERE id > $last ORDER BY id LIMIT 1000`), never OFFSET.
 * Flags: --rows N (default 10000), --passes N (default 3), --local-only (skip the emulator's provider).
 */
import { loadavg } from 'node:os';
import pg from 'pg';
import { type KeyProvider, LocalKms, TencentKms } from '../src/index.node.ts';
import { spawnEmulator } from './emulator-process.ts';
import { startPostgres } from './postgres-process.ts';
import { formatRecordsLine, recordsBench } from './records-db-run.ts';


const flag = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const ROWS = Number(flag('--rows') ?? 10_000);
const PASSES = Number(flag('--passes') ?? 3);
const LOCAL_ONLY = process.argv.includes('--local-only');
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`# ${ROWS} rows, ${PASSES} passes, Node ${process.version}; load average at the start ${load()}`);

const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 4 });
const emulator = await spawnEmulator();
try {
  const providers: [string, KeyProvider][] = [
    ['LocalKms', LocalKms.generate()],
    ['TencentKms (emulator)', new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials })],
  ];
  // One run for every provider: they take turns within each pass (bench/records-db-run.ts).
  const chosen = providers.filter(([name]) => !LOCAL_ONLY || name === 'LocalKms');
  for (const result of await recordsBench({ pool, providers: chosen, rows: ROWS, passes: PASSES })) console.log(formatRecordsLine(result));
  console.log(`# load average at the end ${load()}`);
} finally {
  emulator.stop();
  await pool.end();
  server.stop();
}
