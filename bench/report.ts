/** BENCHMARKS.md pieces: the records table and an SVG chart of throughput against payload size. */
import { formatNs, formatSize, ratioTo } from './harness.ts';
import { CASES, type RecordRow } from './records.ts';

/** Markdown table: one row per case, per size: time per seal+open and the ratio to raw node:crypto. */
export function recordsTable(rows: RecordRow[]): string {
  const names = Object.keys(rows[0]!.results);
  const head = `| case | ${rows.map((r) => `${formatSize(r.size)}: time (spread) | ratio to raw`).join(' | ')} |`;
  const rule = `|---|${rows.map(() => '---|---').join('|')}|`;
  const lines = names.map((name) => {
    const cells = rows.map((row) => {
      const r = row.results[name]!;
      return `${formatNs(r.medianNs)} (${formatNs(r.minNs)}–${formatNs(r.maxNs)}) | ${ratioTo(r, row.results[CASES.rawNode]!).toFixed(2)}x`;
    });
    return `| ${name} | ${cells.join(' | ')} |`;
  });
  return [head, rule, ...lines].join('\n');
}

/** A log-log line chart of MB/s (seal+open) against payload size, ours and the peers'. */
export function throughputChart(rows: RecordRow[]): string {
  const names = Object.keys(rows[0]!.results).filter((n) => n !== CASES.seal && n !== CASES.open);
  const width = 760;
  const height = 420;
  const margin = { left: 70, right: 290, top: 30, bottom: 50 };
  const mbps = (size: number, ns: number): number => size / 1048576 / (ns / 1e9);
  const values = rows.flatMap((row) => names.map((n) => mbps(row.size, row.results[n]!.medianNs)));
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...values)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  const xs = rows.map((r) => r.size);
  const x = (size: number): number =>
    margin.left + ((Math.log(size) - Math.log(xs[0]!)) / (Math.log(xs.at(-1)!) - Math.log(xs[0]!))) * (width - margin.left - margin.right);
  const y = (v: number): number =>
    height - margin.bottom - ((Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (height - margin.top - margin.bottom);
  const colors = ['#444', '#999', '#1b7837', '#5aae61', '#2166ac', '#d6604d', '#b2182b', '#762a83', '#e08214'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${margin.left}" y="18" font-size="14">seal+open throughput (MB/s, log) against payload size (log)</text>`,
  ];
  for (let v = yMin; v <= yMax; v *= 10) {
    parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${margin.left - 8}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`);
  }
  for (const size of xs) {
    parts.push(`<line x1="${x(size)}" x2="${x(size)}" y1="${margin.top}" y2="${height - margin.bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${x(size)}" y="${height - margin.bottom + 18}" text-anchor="middle">${formatSize(size)}</text>`);
  }
  names.forEach((name, i) => {
    const color = colors[i % colors.length]!;
    const points = rows.map((row) => `${x(row.size).toFixed(1)},${y(mbps(row.size, row.results[name]!.medianNs)).toFixed(1)}`);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
    for (const p of points) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${color}"/>`);
    const ly = margin.top + 14 + i * 18;
    parts.push(`<line x1="${width - margin.right + 14}" x2="${width - margin.right + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    parts.push(`<text x="${width - margin.right + 40}" y="${ly}">${escapeXml(name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
