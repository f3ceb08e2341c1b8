/**
 * A CPU profile of the page benchmark's cases in Chromium (the DevTools protocol's profiler), as
 * the functions with the most self time:
 *
 *   node bench/browser/profile.mjs "sealStream webcrypto, Blob" [--mib 64] [--rounds 2] [--top 25]
 */
import { runBrowserBench } from './run.mjs';

const only = process.argv[2];
const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const report = await runBrowserBench({ streamMiB: option('mib', 64), rounds: option('rounds', 2), nobleRounds: 0, records: 100, only: [only] }, { profile: true });
const { nodes, samples, timeDeltas } = report.profile;
const self = new Map();
const byId = new Map(nodes.map((n) => [n.id, n]));
for (let i = 0; i < samples.length; i++) {
  const node = byId.get(samples[i]);
  const { functionName, url, lineNumber } = node.callFrame;
  const key = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + (timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
console.log(`${only}: ${(total / 1000).toFixed(0)} ms sampled`);
for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, option('top', 25))) console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
