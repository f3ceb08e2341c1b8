/**
 * A one-line progress display on stderr for work that lasts more than a second, only on a
 * terminal. Work runs in labelled phases (reading, verifying, writing, sealing), each counted
 * from zero over its own bytes: a bar with percentage, size, rate and ETA when the phase's total
 * is known, a byte counter with its rate otherwise (never a false 100%, also when more bytes
 * arrive than the total said). The cursor is hidden while it draws and shown again on stop().
 */
const MiB = 1024 * 1024;
const REDRAW_MS = 200;
const WIDTH = 24;

export interface Progress {
  /** Starts a new phase under `label`: its bytes and its rate count from zero. */
  phase(label: string): void;
  /** `total`: NaN, Infinity or 0 when unknown. */
  update(done: number, total: number): void;
  /** Clears the line and shows the cursor; safe to call more than once. */
  stop(): void;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

/** The line for `done` of `total` bytes after `seconds` of the phase `label`. */
export function progressLine(label: string, done: number, total: number, seconds: number): string {
  const rate = done / MiB / Math.max(seconds, 0.001);
  // Unknown, or wrong (a file that grew): a counter, not a bar stuck at 100%.
  if (!Number.isFinite(total) || total <= 0 || done > total) return `${label} ${(done / MiB).toFixed(1)} MiB | ${rate.toFixed(1)} MiB/s`;
  const fraction = done / total;
  const filled = Math.round(fraction * WIDTH);
  const bar = '█'.repeat(filled) + '░'.repeat(WIDTH - filled);
  const eta = rate > 0 ? (total - done) / MiB / rate : Number.NaN;
  return `${label} ${bar} ${Math.floor(fraction * 100)}% | ${(done / MiB).toFixed(1)}/${(total / MiB).toFixed(1)} MiB | ${rate.toFixed(1)} MiB/s | ETA ${clock(eta)}`;
}

export function progress(stream: { write(text: string): unknown }, enabled: boolean, label: string, now: () => number = Date.now): Progress {
  const started = now();
  let phaseStarted = started;
  let current = label;
  let drawn = 0;
  let shown = false;
  return {
    phase(next) {
      current = next;
      phaseStarted = now();
      drawn = 0; // the new phase's first update draws at once
    },
    update(done, total) {
      if (!enabled) return;
      const t = now();
      if (t - started < 1000 || t - drawn < REDRAW_MS) return;
      if (!shown) {
        shown = true;
        stream.write('\x1b[?25l'); // hide the cursor
      }
      drawn = t;
      stream.write(`\r\x1b[2K${progressLine(current, done, total, (t - phaseStarted) / 1000)}`);
    },
    stop() {
      if (!shown) return;
      shown = false;
      stream.write('\r\x1b[2K\x1b[?25h'); // clear the line, show the cursor
    },
  };
}
