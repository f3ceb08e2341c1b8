/**
 * `npm run bench:records`: 10,000 rows (id, name, three encrypted text fields of 20-200 bytes, one
 * index column) inserted in batches of 1,000 through `pg` and selected back, in one run, as:
 * plaintext; the raw floor written directly on node:crypto (per row one HKDF-SHA-256 key from an
 * in-memory master key and a 16-byte salt, each field AES-256-GCM with its own nonce and
 * table|column|id as associated data, an HMAC-SHA-256 index truncated to 16 bytes); and the record
 * API under a key hierarchy with LocalKms and with TencentKms against the emulator. One line per
 * provider (bench/records-db-run.ts): `records <provider>: insert N rows/s (plain P, floor F), select N rows/s (plain P, floor F), kms calls K`,
 * each rate the median of three interleaved passes (one record API per provider: its KMS calls are for all three).
 */
import pg from 'pg';
import { type KeyProvider, LocalKms, TencentKms } from '../src/index.ts';
import { spawnEmulator } from './emulator-process.ts';
import { startPostgres } from './postgres-process.ts';
import { formatRecordsLine, recordsBench } from './records-db-run.ts';


const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 4 });
const emulator = await spawnEmulator();
try {
  const providers: [string, KeyProvider][] = [
    ['LocalKms', LocalKms.generate()],
    ['TencentKms (emulator)', new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials })],
  ];
  for (const [name, kms] of providers) {
    for (const result of await recordsBench({ pool, providers: [[name, kms]] })) console.log(formatRecordsLine(result));
  }
} finally {
  emulator.stop();
  await pool.end();
  server.stop();
}
