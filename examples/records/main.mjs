// Sealed records in PostgreSQL, start to finish:  npm run example:records
//
// Uses the PostgreSQL named by KMS_ENVELOPE_PG_URL, or starts a throwaway one on 127.0.0.1 with
// .ci/postgres.sh (PostgreSQL must be installed: `eval "$(.ci/postgres.sh start)"` installs it,
// starts a server and sets KMS_ENVELOPE_PG_URL). It creates two tables (kmse_example_customers and
// the key store's kmse_example_keys), inserts sealed rows, finds one by its e-mail through a blind
// index, and prints what the database holds next to what the application sees.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { LocalKms } from 'kms-envelope';
import { createKeyHierarchy, PostgresKeyStore } from 'kms-envelope/hierarchy';
import { createRecords, defineTable, RecordFieldError } from 'kms-envelope/records';

const CUSTOMERS = 'kmse_example_customers';
const KEYS = 'kmse_example_keys';

// 1. A PostgreSQL server.
const server = startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 4 });

try {
  await pool.query(`DROP TABLE IF EXISTS ${CUSTOMERS}, ${KEYS}`);
  await pool.query(`CREATE TABLE ${CUSTOMERS} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, email TEXT, email_index TEXT, card TEXT, born TEXT)`);
  await pool.query(`CREATE INDEX ON ${CUSTOMERS} (tenant, email_index)`);

  // 2. The key hierarchy: one KMS-wrapped key per tenant, kept (wrapped) in the database. LocalKms
  //    stands in for a real KMS (TencentKms in production); its master key lives in memory here.
  const hierarchy = createKeyHierarchy({ store: new PostgresKeyStore({ client: pool, table: KEYS }), kms: LocalKms.generate() });
  const records = createRecords({ hierarchy });

  // 3. Which columns are sealed, and what each value is bound to (table, column, row, schema).
  const customers = defineTable({
    name: 'customers',
    primaryKey: 'id',
    partition: { column: 'tenant' },
    columns: {
      // Equality search on the sealed e-mail: seal() also writes email_index, an HMAC of the
      // normalised value under a key of its own, truncated to 32 bits.
      email: { type: 'string', index: { column: 'email_index', bits: 32, normalize: ['trim', 'casefold'] } },
      card: { type: 'string' },
      born: { type: 'date' },
    },
  });

  // 4. Seal and insert.
  const people = [
    { id: '0190a1b2-0000-7000-8000-000000000001', tenant: 'acme', name: 'Alice', email: 'alice@example.com', card: '4111 1111 1111 1111', born: new Date('1990-02-03') },
    { id: '0190a1b2-0000-7000-8000-000000000002', tenant: 'acme', name: 'Bob', email: 'bob@example.com', card: '5500 0000 0000 0004', born: new Date('1985-06-07') },
    { id: '0190a1b2-0000-7000-8000-000000000003', tenant: 'acme', name: 'Carol', email: 'carol@example.com', card: null, born: new Date('2001-11-12') },
  ];
  for (const person of people) {
    const sealed = await records.seal(customers, person);
    await pool.query(`INSERT INTO ${CUSTOMERS} (id, tenant, name, email, email_index, card, born) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
      sealed.id, sealed.tenant, sealed.name, sealed.email, sealed.email_index, sealed.card, sealed.born,
    ]);
  }

  // 5. What the database holds, and what the application sees.
  const { rows: stored } = await pool.query(`SELECT id, tenant, name, email, email_index, card, born FROM ${CUSTOMERS} ORDER BY id`);
  const opened = await Promise.all(stored.map((row) => records.open(customers, row)));
  console.log(`\nIn PostgreSQL (${server.url.replace(/\/\/[^@]*@/, '//')}), table ${CUSTOMERS}:`);
  console.table(stored.map((r) => ({ name: r.name, email: short(r.email), card: short(r.card), born: short(r.born), email_index: r.email_index })));
  console.log('What the application sees after records.open():');
  console.table(opened.map((r) => ({ name: r.name, email: r.email, card: r.card, born: r.born.toISOString().slice(0, 10) })));

  // 6. Find a row by value: the index of the search term, then drop any false positive (32 bits
  //    of index let another e-mail through now and then: compare the opened value).
  const term = '  Carol@Example.COM ';
  const index = await records.indexOf(customers, 'email', term, { partition: 'acme' });
  const { rows: candidates } = await pool.query(`SELECT * FROM ${CUSTOMERS} WHERE tenant = $1 AND email_index = $2`, ['acme', index]);
  const found = (await Promise.all(candidates.map((row) => records.open(customers, row)))).filter((row) => row.email === term.trim().toLowerCase());
  console.log(`Lookup of ${JSON.stringify(term)}: ${candidates.length} candidate row(s) by blind index, ${found.length} match:`, found.map((r) => `${r.name} <${r.email}>`));

  // 7. A sealed value copied onto another row does not open there.
  await pool.query(`UPDATE ${CUSTOMERS} SET card = (SELECT card FROM ${CUSTOMERS} WHERE name = 'Alice') WHERE name = 'Bob'`);
  const { rows: [bob] } = await pool.query(`SELECT * FROM ${CUSTOMERS} WHERE name = 'Bob'`);
  try {
    await records.open(customers, bob);
  } catch (error) {
    if (!(error instanceof RecordFieldError)) throw error;
    console.log(`Alice's card copied onto Bob's row with SQL: ${error.message}`);
  }

  const { rows: keys } = await pool.query(`SELECT partition, version, provider, left(ciphertext_blob, 24) AS wrapped_key FROM ${KEYS} ORDER BY partition`);
  console.log(`\nThe key store (${KEYS}) holds only wrapped keys, one per partition and version:`);
  console.table(keys.map((k) => ({ ...k, wrapped_key: `${k.wrapped_key}…` })));
  if (process.env.KMS_ENVELOPE_PG_URL) console.log(`The tables stay for you to look at: psql ${server.url} -c 'SELECT * FROM ${CUSTOMERS}'`);
  await hierarchy.close();
} finally {
  await pool.end();
  server.stop();
}

/** The first characters of a stored value. */
function short(value) {
  return value === null ? null : `${String(value).slice(0, 22)}… (${String(value).length} chars)`;
}

/** The server of KMS_ENVELOPE_PG_URL, or a throwaway one from .ci/postgres.sh (stopped at the end). */
function startPostgres() {
  if (process.env.KMS_ENVELOPE_PG_URL) return { url: process.env.KMS_ENVELOPE_PG_URL, stop() {} };
  const script = fileURLToPath(new URL('../../.ci/postgres.sh', import.meta.url));
  let out;
  try {
    out = execFileSync(script, ['start', '--no-install'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    console.error(`Could not start PostgreSQL: ${String(error.stderr ?? error.message).trim()}`);
    console.error('Install and start one with:  eval "$(.ci/postgres.sh start)"  then run this again (or set KMS_ENVELOPE_PG_URL).');
    process.exit(1);
  }
  const url = /^export KMS_ENVELOPE_PG_URL=(\S+)$/m.exec(out)?.[1];
  const dir = /^export KMS_ENVELOPE_PG_DIR=(\S+)$/m.exec(out)?.[1];
  console.log(`Started a throwaway PostgreSQL at ${url} (removed at the end).`);
  return { url, stop: () => execFileSync(script, ['stop', dir], { stdio: 'ignore' }) };
}
