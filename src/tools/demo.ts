/**
 * `npm start`: a short tour with no cloud account. It starts the local Tencent KMS emulator
 * in-process on 127.0.0.1, creates a master key, and seals and opens records and a file through
 * the real API 3.0 wire protocol; then the same through the legacy API and the embedded LocalKms.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEnvelope, inspect, isEnvelopeError, TencentKms, TencentKmsV2 } from '../index.ts';
import { localKmsFromKeyFile, openFile, sealFile } from '../node.ts';
import { startEmulator } from './emulator/index.ts';

const dir = join(process.cwd(), '.kms-envelope');
const emulator = await startEmulator();
const credentials = emulator.credentials[0]!;
const admin = new TencentKms({ region: 'ap-guangzhou', endpoint: emulator.url, credentials });
const keyId = await admin.createKey({ alias: 'demo', description: 'npm start' });
const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials });
const envelope = createEnvelope({ kms });
console.log(`KMS emulator listening on ${emulator.url}; master key ${keyId} (TencentKms, API 3.0, TC3-HMAC-SHA256)`);

// 1. Rows: each sealed under its own data key, bound to its table and row.
const rows = [
  { id: '41', card: '4111 1111 1111 1111' },
  { id: '42', card: '5500 0000 0000 0004' },
  { id: '43', card: '3400 0000 0000 009' },
];
const sealedRows = [];
for (const row of rows) {
  const context = { table: 'users', row: row.id };
  const sealed = await envelope.seal(row.card, { context, detachedContext: true });
  sealedRows.push({ context, sealed });
  console.log(`sealed row ${row.id}: ${row.card.length} bytes -> ${sealed.length} bytes (context detached: table, row)`);
}
for (const { context, sealed } of sealedRows) {
  const card = await envelope.openString(sealed, { context });
  console.log(`opened row ${context.row}: ${card.slice(0, 4)} **** (matches: ${card === rows.find((r) => r.id === context.row)!.card})`);
}

// 2. The wrong row, or a tampered byte, opens nothing.
function flipLastBit(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  copy[copy.length - 1]! ^= 1;
  return copy;
}
const first = sealedRows[0]!;
for (const [what, attempt] of [
  ['row 41 opened as row 42', () => envelope.open(first.sealed, { context: { table: 'users', row: '42' } })],
  ['row 41 with one bit flipped', () => envelope.open(flipLastBit(first.sealed), { context: first.context })],
] as const) {
  try {
    await attempt();
    console.log(`${what}: opened (unexpected!)`);
    process.exitCode = 1;
  } catch (error) {
    console.log(`${what}: refused, ${isEnvelopeError(error) ? error.code : String(error)}`);
  }
}

// 3. A file at rest (kms-envelope/node): written to a temporary file, fsynced, then renamed, so no
// half-written file is ever left.
mkdirSync(join(dir, 'demo'), { recursive: true });
const plainPath = join(dir, 'demo', 'report.csv');
const sealedPath = `${plainPath}.kmse`;
writeFileSync(plainPath, Array.from({ length: 2000 }, (_, i) => `${i},user${i},${(i * 37) % 1000}`).join('\n'));
const started = performance.now();
await sealFile(envelope, plainPath, sealedPath, { context: { file: 'report.csv' }, overwrite: true });
const reopenedPath = `${plainPath}.reopened`;
await openFile(envelope, sealedPath, reopenedPath, { overwrite: true });
const sealedFile = readFileSync(sealedPath);
const reopened = readFileSync(reopenedPath);
const info = inspect(sealedFile);
console.log(
  `sealed file ${plainPath} (${readFileSync(plainPath).length} bytes) -> ${sealedPath} (${sealedFile.length} bytes), ` +
    `reopened identical: ${Buffer.from(reopened).equals(readFileSync(plainPath))}, ${(performance.now() - started).toFixed(1)} ms`,
);
console.log(`header of ${sealedPath}: ${JSON.stringify(info)}`);

// 4. The same record through the legacy API (v2, HmacSHA256) and through the embedded LocalKms.
const legacy = createEnvelope({ kms: new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials }) });
console.log(`legacy v2 API round trip: ${await legacy.openString(await legacy.seal('v2 record', { context: { api: 'v2' } }))}`);
const keyFile = join(dir, 'local.key');
const local = createEnvelope({ kms: localKmsFromKeyFile(keyFile, { create: true }) });
console.log(`LocalKms (${keyFile}) round trip: ${await local.openString(await local.seal('local record'))}`);

const stats = emulator.stats();
console.log(`KMS calls: ${Object.entries(stats.calls).map(([action, n]) => `${action} ${n}`).join(', ')}; auth failures: ${stats.authFailures}`);
await emulator.close();
