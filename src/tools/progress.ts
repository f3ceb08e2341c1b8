/**
 * A one-line progress display on stderr for work that lasts more than a second, only on a
 * terminal: a bar with percentage, size, rate and ETA when the total is known, a byte counter with
 * its rate otherwise (never a false 100%). The cursor is hidden while it draws and shown again on
 * stop(), on every path.
 */
const MiB = 1024 * 1024;
const REDRAW_MS = 200;
const WIDTH = 24;

export interface Progress {
  /** `total`: NaN or Infinity when unknown. */
  update(done: number, total: number): void;
  stop(): void;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

/** The line for `done` of `total` bytes after `seconds`. */
export function progressLine(label: string, done: number, total: number, seconds: number): string {
  const rate = done / MiB / Math.max(seconds, 0.001);
  if (!Number.isFinite(total) || total <= 0) return `${label} ${(done / MiB).toFixed(1)} MiB | ${rate.toFixed(1)} MiB/s`;
  const fraction = Math.min(1, done / total);
  const filled = Math.round(fraction * WIDTH);
  const bar = '█'.repeat(filled) + '░'.repeat(WIDTH - filled);
  const eta = rate > 0 ? (total - done) / MiB / rate : Number.NaN;
  return `${label} ${bar} ${Math.floor(fraction * 100)}% | ${(done / MiB).toFixed(1)}/${(total / MiB).toFixed(1)} MiB | ${rate.toFixed(1)} MiB/s | ETA ${clock(eta)}`;
}

export function progress(stream: NodeJS.WriteStream, enabled: boolean, label: string): Progress {
  const started = Date.now();
  let drawn = 0;
  let shown = false;
  return {
    update(done, total) {
      if (!enabled) return;
      const now = Date.now();
      if (now - started < 1000 || now - drawn < REDRAW_MS) return;
      if (!shown) {
        shown = true;
        stream.write('\x1b[?25l'); // hide the cursor
      }
      drawn = now;
      stream.write(`\r\x1b[2K${progressLine(label, done, total, (now - started) / 1000)}`);
    },
    stop() {
      if (!shown) return;
      shown = false;
      stream.write('\r\x1b[2K\x1b[?25h'); // clear the line, show the cursor
    },
  };
}
