/**
 * `npm run bench:prisma`: 10,000 rows (an indexed email, an age, a birth date, all sealed) written
 * with one createMany and read back with one findMany through the Prisma 7 extension
 * (test/prisma/v7), against the record API alone in the same run: records.sealMany, then the same
 * client's createMany without the extension; its findMany without the extension, then
 * records.openMany. Both sides use one records object (keys warm after the first pass) and the
 * same PostgreSQL table, so the ratio is the extension's own overhead. Median of 3 interleaved
 * passes; BENCH_PRISMA_ROWS sets the row count.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { withEncryption } from '../src/adapters/prisma.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { LocalKms } from '../src/index.node.ts'; // the node:crypto backend, as a Node app gets it
import { createRecords, defineTable, type SealedRow } from '../src/records.ts';
import { startPostgres } from './postgres-process.ts';

const root = new URL('../../', import.meta.url);
const fixture = fileURLToPath(new URL('test/prisma/v7/', root));
const ROWS = Number(process.env.BENCH_PRISMA_ROWS ?? 10_000);
const PASSES = 3;

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'keyVersion',
  columns: { email: { type: 'string', index: { column: 'emailIdx', bits: 16 } }, age: { type: 'number' }, born: { type: 'date' } },
});

/** The fixture's client, bundled to JavaScript (the generated client is TypeScript) next to its node_modules. */
async function loadClient(): Promise<{ makeClient(url: string, schema: string): any }> {
  const outfile = `${fixture}generated/bench-client.mjs`;
  await build({ entryPoints: [`${fixture}client.mjs`], outfile, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'error' });
  return import(pathToFileURL(outfile).href);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = async (work: () => Promise<unknown>): Promise<number> => {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
};

const server = await startPostgres();
const { makeClient } = await loadClient();
const schema = `kmse_bench_prisma_${process.pid}`;
const base = makeClient(server.url, schema);
try {
  await base.$executeRawUnsafe(`CREATE SCHEMA ${schema}`);
  const tables = readFileSync(new URL('test/prisma/tables.sql', root), 'utf8').replace(/--.*$/gm, '').replace(/\b(customers|orders|accounts)\b/g, `${schema}.$1`);
  for (const statement of tables.split(';')) if (statement.trim()) await base.$executeRawUnsafe(statement);
  const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });
  const db = withEncryption(base, { records, tables: { Customer: customers } });
  const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `r${i}`, tenant: i % 2 ? 'acme' : 'globex', email: `user${i}@example.com`, age: 20 + (i % 60), born: new Date(Date.UTC(1970 + (i % 50), i % 12, 1 + (i % 28))) }));
  const clear = () => base.$executeRawUnsafe(`TRUNCATE ${schema}.accounts, ${schema}.orders, ${schema}.customers`);
  const times = { extWrite: [] as number[], extRead: [] as number[], apiWrite: [] as number[], apiRead: [] as number[] };
  for (let pass = 0; pass < PASSES; pass++) {
    await clear();
    times.extWrite.push(await seconds(() => db.customer.createMany({ data: rows })));
    times.extRead.push(await seconds(async () => ((await db.customer.findMany({ select: { id: true, tenant: true, email: true, age: true, born: true } })) as unknown[]).length));
    await clear();
    times.apiWrite.push(
      await seconds(async () => {
        const sealed = await records.sealMany(customers, rows, { failFast: true });
        await base.customer.createMany({ data: sealed.map((r) => (r.ok ? r.value : undefined)) });
      }),
    );
    times.apiRead.push(
      await seconds(async () => {
        const stored = (await base.customer.findMany({ select: { id: true, tenant: true, email: true, age: true, born: true } })) as SealedRow<typeof customers.columns>[];
        return (await records.openMany(customers, stored, { failFast: true })).length;
      }),
    );
  }
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const line = (name: string, ext: number[], api: number[]) =>
    `prisma ${name} ${ROWS} rows: extension ${median(ext).toFixed(3)} s, record API alone ${median(api).toFixed(3)} s, ratio ${(median(ext) / median(api)).toFixed(2)}`;
  console.log(line('createMany', times.extWrite, times.apiWrite));
  console.log(line('findMany', times.extRead, times.apiRead));
  console.log(`load average: ${load}`);
} finally {
  await base.$executeRawUnsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await base.$disconnect();
  server.stop();
}
