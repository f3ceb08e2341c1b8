/**
 * `npm run bench`: every benchmark, printed as markdown.
 * `npm run bench -- --report`: the same, written to BENCHMARKS.md with bench/throughput.svg.
 * `npm run bench -- --check`: the small-record ratios only, failing when one is more than 25%
 *   worse than bench/baseline.json (run it yourselves: machines are too noisy for CI).
 * `npm run bench -- --save-baseline`: writes bench/baseline.json from a small-record run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { ratioTo } from './harness.ts';
import { benchHkdf } from './hkdf.ts';
import { benchKmsEconomy } from './kms-economy.ts';
import { benchKmsRtt } from './kms-rtt.ts';
import { benchRecords, CASES, loadPeers, type RecordRow } from './records.ts';
import { recordsTable, throughputChart } from './report.ts';
import { benchStream, benchWorkers } from './stream.ts';

const root = new URL('../../', import.meta.url);
const args = new Set(process.argv.slice(2));
const baselinePath = new URL('bench/baseline.json', root);

const AWS_COMMITTING = 'AWS ESDK, committing suite without signature';

/** Each goal with the measured ratio and whether it holds. */
function goalsTable(rows: RecordRow[], workers: { size: number; seal: number; open: number }[]): string {
  const out = ['\n## Goals\n', '| goal | measured | holds |', '|---|---|---|'];
  const line = (goal: string, value: number, holds: boolean): void => {
    out.push(`| ${goal} | ${value.toFixed(2)}x | ${holds ? 'yes' : 'no'} |`);
  };
  for (const row of rows) {
    const r = row.results;
    const size = row.size >= 1024 ? `${row.size / 1024} KiB` : `${row.size} B`;
    const cached = ratioTo(r[CASES.sealOpen]!, r[CASES.rawNode]!);
    if (row.size === 1024) line(`${size} seal+open, cached key, at most 2.0x raw node:crypto GCM enc+dec`, cached, cached <= 2);
    const aws = r[AWS_COMMITTING];
    if (aws && row.size === 1024) {
      const vsCached = ratioTo(aws, r[CASES.sealOpen]!);
      line(`${size}: AWS ESDK committing suite / our cached seal+open, at least 50x`, vsCached, vsCached >= 50);
      const vsFresh = ratioTo(aws, r[CASES.sealOpenFresh]!);
      line(`${size}: AWS ESDK committing suite / our seal+open with a fresh LocalKms key, at least 20x`, vsFresh, vsFresh >= 20);
      const vsHierarchy = ratioTo(aws, r[CASES.sealOpenHierarchy]!);
      line(`${size}: AWS ESDK committing suite / our seal+open under the key hierarchy, at least 30x`, vsHierarchy, vsHierarchy >= 30);
    }
    const hierarchy = ratioTo(r[CASES.sealOpenHierarchy]!, r[CASES.rawNode]!);
    if (row.size === 1024) line(`${size} seal+open, key hierarchy (a unique key per record, warm), at most 3.0x raw node:crypto GCM enc+dec`, hierarchy, hierarchy <= 3);
    const portable = ratioTo(r[CASES.sealOpenNoble]!, r[CASES.rawNoble]!);
    line(`${size} portable seal+open (noble backend, cached key), at most 1.3x raw @noble/ciphers GCM enc+dec`, portable, portable <= 1.3);
  }
  for (const w of workers) {
    line(`${w.size / 1048576} MiB sealFile, worker threads / one thread, at least 1.6x`, w.seal, w.seal >= 1.6);
    line(`${w.size / 1048576} MiB openFile, worker threads / one thread, at least 1.6x`, w.open, w.open >= 1.6);
  }
  return out.join('\n');
}

/** The ratios the regression guard watches: time relative to raw node:crypto (lower is better). */
function ratios(rows: RecordRow[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of rows) {
    const raw = row.results[CASES.rawNode]!;
    for (const name of [CASES.seal, CASES.open, CASES.sealOpen, CASES.sealOpenFresh, CASES.sealOpenHierarchy]) {
      out[`${name} @ ${row.size} B`] = Number(ratioTo(row.results[name]!, raw).toFixed(3));
    }
    const rawNoble = row.results[CASES.rawNoble]!;
    out[`${CASES.sealOpenNoble} / raw noble @ ${row.size} B`] = Number(ratioTo(row.results[CASES.sealOpenNoble]!, rawNoble).toFixed(3));
  }
  return out;
}

function ensurePeers(): void {
  if (existsSync(new URL('bench/peers/node_modules', root))) return;
  console.error('installing the benchmark peers (bench/peers, its own package.json)…');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--prefix', new URL('bench/peers', root).pathname], { stdio: 'inherit' });
}

function opensslLimit(): string {
  try {
    const out = execFileSync('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', '16384', '-seconds', '3'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const kbps = Number(/AES-256-GCM\s+([\d.]+)k/i.exec(out)?.[1]);
    return Number.isFinite(kbps) ? `${((kbps * 1000) / 1048576).toFixed(0)} MB/s` : 'unknown';
  } catch {
    return 'openssl not found';
  }
}

if (args.has('--check') || args.has('--save-baseline')) {
  const rows = await benchRecords([], { rounds: 9 });
  const now = ratios(rows);
  if (args.has('--save-baseline')) {
    writeFileSync(baselinePath, `${JSON.stringify({ note: 'time ratios to raw node:crypto GCM; lower is better', ratios: now }, null, 2)}\n`);
    console.log(`wrote ${baselinePath.pathname}`);
  } else {
    const baseline = (JSON.parse(readFileSync(baselinePath, 'utf8')) as { ratios: Record<string, number> }).ratios;
    let failed = 0;
    for (const [name, was] of Object.entries(baseline)) {
      const is = now[name];
      const bad = is === undefined || is > was * 1.25;
      if (bad) failed++;
      console.log(`${bad ? 'REGRESSED' : 'ok       '} ${name}: ${is ?? 'missing'} (baseline ${was})`);
    }
    console.log(failed ? `${failed} ratio(s) more than 25% worse than the baseline` : 'every ratio within 25% of the baseline');
    process.exitCode = failed ? 1 : 0;
  }
} else {
  ensurePeers();
  const peers = await loadPeers(root);
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`;
  const sections: string[] = [];
  const section = (text: string): void => {
    console.log(text);
    sections.push(text);
  };
  section(`# kms-envelope benchmarks\n\n${machine}. Regenerate with \`npm run bench -- --report\`.`);
  section(`\nPer-core AES-256-GCM limit on this machine: \`openssl speed -evp aes-256-gcm -bytes 16384\` = ${opensslLimit()}.`);
  const REPORT_ROUNDS = 21;
  const rows = await benchRecords(peers, { rounds: REPORT_ROUNDS });
  section(
    `\n## Small records: seal+open (seal, open alone for the cached key)\n\nMedians of ${REPORT_ROUNDS} interleaved rounds, with spread; ratio = median over the rounds of time / raw node:crypto GCM encrypt+decrypt of the same payload (fresh cipher per op) in the same round.\n\n${recordsTable(rows)}\n\n![throughput](bench/throughput.svg)`,
  );
  section(await benchHkdf());
  section(await benchStream());
  const workers = await benchWorkers();
  section(workers.text);
  section(await benchKmsRtt());
  section(await benchKmsEconomy());
  // The goals of the performance issue, from the numbers above, right after the machine line.
  sections.splice(2, 0, goalsTable(rows, workers.ratios));
  console.log(sections[2]);
  if (args.has('--report')) {
    writeFileSync(new URL('BENCHMARKS.md', root), `${sections.join('\n')}\n`);
    writeFileSync(new URL('bench/throughput.svg', root), throughputChart(rows));
    console.log('\nwrote BENCHMARKS.md and bench/throughput.svg');
  }
}
