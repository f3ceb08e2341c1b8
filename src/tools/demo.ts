/**
 * `npm start`: the main job in a few seconds, with no cloud account and no server. Records in an
 * SQLite database (in this process, better-sqlite3) under a key hierarchy whose store is a table
 * of the same database; two tenants; a lookup by blind index; a row moved to the other tenant
 * refused; a rotation and a sweep; a tenant shredded; then the file path. Each step prints what it
 * cost: bytes per value and KMS calls. LocalKms (a master key in memory) stands in for the KMS.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyHierarchy, SqliteKeyStore } from '../hierarchy.ts';
import { createEnvelope, isEnvelopeError, type KeyProvider, LocalKms } from '../index.node.ts';
import { openFile, sealFile } from '../node.ts';
import { createRecords, defineTable, rotationSweep, sweepSqlite } from '../records.ts';
import { sqliteDatabase } from './cli-store.ts';

const started = performance.now();

/** The KMS, counting its calls: what each step cost is the difference. */
const calls = { generate: 0, decrypt: 0 };
function counted(kms: KeyProvider): KeyProvider {
  return new Proxy(kms, {
    get(target, name) {
      const value = Reflect.get(target, name, target) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (name === 'generateDataKey') calls.generate++;
        if (name === 'decryptDataKey') calls.decrypt++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

let before = { ...calls };
/** One step's line: what it did, and the KMS calls it made since the previous step. */
function step(title: string, detail: string): void {
  const made = calls.generate - before.generate + (calls.decrypt - before.decrypt);
  const what = made === 0 ? 'no KMS call' : `${made} KMS call${made === 1 ? '' : 's'} (${calls.generate - before.generate} GenerateDataKey, ${calls.decrypt - before.decrypt} Decrypt)`;
  console.log(`\n${title}  [${what}]\n  ${detail.split('\n').join('\n  ')}`);
  before = { ...calls };
}

const db = await sqliteDatabase(':memory:');
db.exec('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, email TEXT, email_index TEXT, card TEXT, key_version INTEGER)');
const hierarchy = createKeyHierarchy({ store: new SqliteKeyStore({ database: db }), kms: counted(LocalKms.generate()) });
const records = createRecords({ hierarchy });
const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'key_version',
  columns: {
    email: { type: 'string', index: { column: 'email_index', bits: 32, normalize: ['trim', 'casefold'] } },
    card: { type: 'string' },
  },
});
console.log('kms-envelope: records in SQLite (in this process) under a key hierarchy; LocalKms stands in for the KMS.');

// 1. Seal 1,000 rows for two tenants: one KMS call per tenant, not one per row.
const ROWS = 1000;
const insert = db.prepare('INSERT INTO customers (id, tenant, name, email, email_index, card, key_version) VALUES (?, ?, ?, ?, ?, ?, ?)');
let cardBytes = 0;
let sealedCardBytes = 0;
for (let i = 0; i < ROWS; i++) {
  const tenant = i % 2 === 0 ? 'acme' : 'globex';
  const card = `4111 1111 1111 ${String(i).padStart(4, '0')}`;
  const row = await records.seal(customers, { id: `c${i}`, tenant, name: `Customer ${i}`, email: `user${i}@${tenant}.example`, card });
  cardBytes += Buffer.byteLength(card);
  sealedCardBytes += Buffer.byteLength(row.card!);
  insert.run(row.id, row.tenant, row.name, row.email, row.email_index, row.card, row.key_version);
}
const sample = db.prepare('SELECT card FROM customers WHERE id = ?').get('c0') as { card: string };
step(
  `1. records.seal(): ${ROWS} rows for 2 tenants (acme, globex), email and card sealed, email blind-indexed`,
  `a ${cardBytes / ROWS}-byte card is stored as ${sealedCardBytes / ROWS} bytes of text: ${sample.card.slice(0, 44)}…\n` +
    `(the 0.1 path, a data key per value, made a 280-byte value and a KMS call per row)`,
);

// 2. Find a row by its e-mail through the blind index, then open it.
const term = '  USER42@acme.example ';
const index = await records.indexOf(customers, 'email', term, { partition: 'acme' });
const candidates = db.prepare('SELECT * FROM customers WHERE tenant = ? AND email_index = ?').all('acme', index) as Record<string, unknown>[];
const found = (await Promise.all(candidates.map((row) => records.open(customers, row as never)))).filter((row) => row.email === term.trim().toLowerCase());
step(
  '2. records.indexOf() + SELECT … WHERE email_index = ?: a lookup by blind index',
  `${JSON.stringify(term)} → ${candidates.length} candidate row(s), ${found.length} match: ${found.map((r) => `${r.name} <${r.email}> card ${r.card}`).join(', ')}`,
);

// 3. A database writer moves an acme row to globex: it does not open there.
db.prepare("UPDATE customers SET tenant = 'globex' WHERE id = 'c2'").run();
const moved = db.prepare("SELECT * FROM customers WHERE id = 'c2'").get() as Record<string, unknown>;
let refusal = 'opened (this should not happen)';
try {
  await records.open(customers, moved as never);
} catch (error) {
  refusal = isEnvelopeError(error) || error instanceof Error ? `refused: ${(error as { code?: string }).code ?? ''} ${(error as Error).message}` : String(error);
}
step("3. UPDATE customers SET tenant = 'globex' WHERE id = 'c2' (acme's row moved to the other tenant)", refusal);
db.prepare("UPDATE customers SET tenant = 'acme' WHERE id = 'c2'").run();

// 4. Rotate both tenants' keys, then sweep the table onto the new versions.
for (const tenant of ['acme', 'globex']) await hierarchy.rotate(tenant);
const summary = await sweepSqlite(db, { table: 'customers', key: 'id', ...rotationSweep(records, customers, { minVersion: 2 }), batchSize: 250 });
const versions = db.prepare('SELECT key_version, count(*) AS n FROM customers GROUP BY key_version').all() as { key_version: number; n: number }[];
step(
  '4. hierarchy.rotate() for each tenant, then sweepSqlite(rotationSweep(…)): every row resealed under version 2',
  `${summary.written} rows rewritten, ${summary.failed} failed, in ${summary.batches} batches; rows by key version: ${versions.map((v) => `v${v.key_version}: ${v.n}`).join(', ')}`,
);

// 5. Shred globex: its keys are deleted, its rows are unreadable from now on.
const shred = await hierarchy.shred('globex');
const globexRow = db.prepare("SELECT * FROM customers WHERE id = 'c1'").get() as Record<string, unknown>;
let afterShred = 'opened (this should not happen)';
try {
  await records.open(customers, globexRow as never);
} catch (error) {
  afterShred = `refused: ${(error as { code?: string }).code}`;
}
const acmeRow = await records.open(customers, db.prepare("SELECT * FROM customers WHERE id = 'c0'").get() as never);
step(
  "5. hierarchy.shred('globex'): crypto-shredding one tenant",
  `${shred.versionsDeleted} key versions deleted (${shred.partitions.join(', ')}); a globex row now: ${afterShred}; acme still opens: ${acmeRow.card}`,
);
await hierarchy.close();
db.close();

// 6. The file path: one data key per file, streamed in 64 KiB chunks.
const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-demo-'));
try {
  const envelope = createEnvelope({ kms: counted(LocalKms.generate()) });
  const plain = join(dir, 'report.csv');
  writeFileSync(plain, 'id,card\n'.concat(Array.from({ length: 20_000 }, (_, i) => `${i},4111 1111 1111 ${String(i % 10_000).padStart(4, '0')}\n`).join('')));
  await sealFile(envelope, plain, `${plain}.kmse`, { context: { file: 'report.csv' } });
  await openFile(envelope, `${plain}.kmse`, `${plain}.out`, { context: { file: 'report.csv' } });
  const size = statSync(plain).size;
  const sealedSize = statSync(`${plain}.kmse`).size;
  const same = readFileSync(`${plain}.out`).equals(readFileSync(plain));
  step(
    '6. sealFile() and openFile(): the file path (the CLI: kms-envelope seal FILE -o OUT)',
    `${size} bytes → ${sealedSize} bytes sealed (+${sealedSize - size}: the header and 16 bytes per 64 KiB chunk); opened back identical: ${same}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s. Next: README "Encrypting database records", and npm run example:records (PostgreSQL).`);
