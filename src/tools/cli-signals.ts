/**
 * Ctrl-C and SIGTERM for seal and open. The first signal aborts the work: `interruption` fires,
 * the pieces being read and every sink and progress callback throw, so the library's own error
 * paths remove its temporary file and the command's spool; the terminal cursor is restored at
 * once, and the command exits 130 for SIGINT, 143 for SIGTERM. If the work has not unwound after
 * GRACE_MS (a KMS call or a FIFO that blocks), or on a second signal, the registered synchronous
 * cleanups run and the process ends by the signal itself (which a shell reports as 130 / 143 too).
 */
import { Interrupted } from './cli-errors.ts';

const GRACE_MS = 3000;
const controller = new AbortController();

/** Aborted, with an Interrupted as its reason, on the first SIGINT or SIGTERM. */
export const interruption: AbortSignal = controller.signal;

const cleanups = new Set<() => void>();

/**
 * Registers a synchronous cleanup (restore the cursor, remove a spool) that runs when a signal
 * arrives (`now`) or only if the graceful unwinding does not finish in time. Returns its removal.
 */
export function onInterrupt(cleanup: () => void, now = false): () => void {
  const entry = now
    ? cleanup
    : () => {
        if (hardExiting) cleanup();
      };
  cleanups.add(entry);
  return () => cleanups.delete(entry);
}

let hardExiting = false;

function runCleanups(): void {
  for (const cleanup of [...cleanups]) {
    try {
      cleanup();
    } catch {
      // best effort: the next one still runs
    }
  }
}

/**
 * Runs every cleanup, then ends the process by `signal` itself, its default action restored: a
 * shell reports that as 128 + n, the same 130 or 143. Not process.exit(): libuv joins its worker
 * threads on exit, and one blocked in a write to a FIFO that no one reads would hold it forever.
 */
function hardExit(signal: 'SIGINT' | 'SIGTERM', code: number): void {
  hardExiting = true;
  runCleanups();
  process.removeAllListeners(signal); // back to the default action: terminate
  process.kill(process.pid, signal);
  setTimeout(() => process.exit(code), 1000); // only if the signal was ignored when this process started
}

/** Throws the Interrupted reason once a signal has arrived. */
export function checkInterrupted(): void {
  if (interruption.aborted) throw interruption.reason as Interrupted;
}

/** Listens for SIGINT and SIGTERM (for seal and open only: the emulator has its own). */
export function handleSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      const reason = new Interrupted(signal);
      if (interruption.aborted) return hardExit(signal, reason.exitCode);
      controller.abort(reason);
      runCleanups(); // the `now` ones: the cursor comes back at once
      // Unref'd: a process whose work unwound exits by itself (130/143); one still waiting fires it.
      setTimeout(() => hardExit(signal, reason.exitCode), GRACE_MS).unref();
    });
  }
}
