/**
 * `npm run bench:reseal`: the record API's rotation of one field in memory, the unit of a rotation
 * sweep (BENCHMARKS.md, "Rotation sweep over a table"): `openSync` then `sealSync` against
 * `resealSync`, CPU time per row of one 35-character text value, 10 partitions alternating as a
 * table walked in key order gives them, LocalKms (no KMS call once warm). Rounds interleave the
 * two cases; medians over rounds.
 */
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { createRecords, defineTable } from '../src/records.ts';
import { LocalKms } from '../src/index.node.ts';

const ROWS = 20_000;
const PARTITIONS = 10;
const ROUNDS = 9;

const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version', columns: { email: { type: 'string' } } });
const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const records = createRecords({ hierarchy });
const partitions = Array.from({ length: PARTITIONS }, (_, p) => `tenant-${p}`);
await records.warm(partitions);
const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `0190a1b2-${String(i).padStart(8, '0')}`, tenant: `tenant-${i % PARTITIONS}`, email: `person.${String(i).padStart(8, '0')}@example.com` }));
const sealed = rows.map((row) => records.sealSync(customers, row));
for (const p of partitions) await hierarchy.rotate(p);
await records.warm(partitions);

const cpuMicros = (work: () => void): number => {
  const start = process.cpuUsage();
  work();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / ROWS;
};
const cases = {
  'openSync + sealSync': () => {
    for (const row of sealed) records.sealSync(customers, records.openSync(customers, row));
  },
  resealSync: () => {
    for (const row of sealed) records.resealSync(customers, row);
  },
};
const times = new Map<string, number[]>();
for (let round = 0; round < ROUNDS + 1; round++) {
  for (const [name, work] of Object.entries(cases)) {
    const us = cpuMicros(work);
    if (round > 0) times.set(name, [...(times.get(name) ?? []), us]); // round 0 warms up
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`Node ${process.version}, ${ROWS} rows of one 35-character field, ${PARTITIONS} partitions alternating, medians of ${ROUNDS} rounds, CPU time a row`);
for (const [name, us] of times) console.log(`${name}: ${median(us).toFixed(1)} µs`);
await hierarchy.close();
