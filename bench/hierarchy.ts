/**
 * `npm run bench:hierarchy`: 1 KiB seal+open under a warm key hierarchy (a unique key per record,
 * no KMS call) against raw node:crypto AES-256-GCM and the AWS Encryption SDK's committing suite
 * (a fresh wrapped key per message) in the same run, interleaved in rounds; plus the text-form size
 * of a sealed 16-byte value.
 */
import { ratioTo } from './harness.ts';
import { benchRecords, CASES, loadPeers } from './records.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { createRecords, defineTable, sealedFieldLength } from '../src/records.ts';
import { LocalKms } from '../src/index.node.ts';

const root = new URL('../../', import.meta.url);
const peers = await loadPeers(root);
const rows = await benchRecords(peers, { rounds: 11, sizes: [1024] });
const r = rows[0]!.results;
const aws = r['AWS ESDK, committing suite without signature'];
const us = (name: string) => (r[name]!.medianNs / 1000).toFixed(1);
console.log(`| case | µs (median) | time / raw node:crypto GCM |`);
console.log(`|---|---|---|`);
for (const name of [CASES.rawNode, CASES.sealOpen, CASES.sealOpenHierarchy, CASES.sealOpenFresh, ...(aws ? [aws.name] : [])]) {
  console.log(`| ${name} | ${us(name)} | ${ratioTo(r[name]!, r[CASES.rawNode]!).toFixed(2)}x |`);
}
if (aws) console.log(`\nAWS ESDK committing / key hierarchy: ${ratioTo(aws, r[CASES.sealOpenHierarchy]!).toFixed(1)}x faster (goal >= 30x)`);
const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });
const t = defineTable({ name: 't', partition: 'tenant-1', columns: { v: { type: 'bytes' } } });
const sealed = await records.seal(t, { v: new Uint8Array(16) });
console.log(`\nA sealed 16-byte value in text form under partition "tenant-1": ${(sealed.v as string).length} characters (sealedFieldLength: ${sealedFieldLength(16, { partitionBytes: 8 })}; goal <= 120)`);
