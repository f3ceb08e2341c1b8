import { benchRecords, CASES, loadPeers } from './records.ts';
import { formatNs } from './harness.ts';
const root = new URL('../../', import.meta.url);
const peers = await loadPeers(root);
const rows = await benchRecords(peers, { rounds: Number(process.env.ROUNDS ?? 9) });
for (const row of rows) {
  const raw = row.results[CASES.rawNode]!.medianNs;
  console.log(`\n${row.size} B`);
  for (const r of Object.values(row.results)) console.log(`  ${r.name.padEnd(50)} ${formatNs(r.medianNs).padStart(10)}  ${(r.medianNs / raw).toFixed(2)}x raw`);
}
