/**
 * Where the CPU of `npm run bench:migrate` goes (Linux /proc, PostgreSQL on this machine): CPU
 * time, unlike wall time, does not depend on what else the machine runs.
 *
 * - Child processes (the migration workers, all their runs, and the application): the harness's
 *   own cutime+cstime counts every child it has reaped, exactly; the application, still alive at
 *   the end of the backfill, is read from its /proc entry.
 * - PostgreSQL: each backend's CPU is read from /proc/<pid>/stat while it lives (its role from
 *   pg_stat_activity's application_name); the cluster's total is the postmaster's own time, its
 *   cutime+cstime (every backend that ended: killed workers' sessions) and its live children. The
 *   rest (background processes, and the last moments of killed sessions between two samples) is
 *   the total less the sessions'.
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** utime+stime, and cutime+cstime (reaped children), in ms; undefined when the process is gone or /proc is not there. */
export function procCpu(pid: number | 'self'): { own: number; children: number; ppid: number } | undefined {
  try {
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = (i: number) => (Number(f[i]) * 1000) / TICKS_PER_SECOND;
    return { own: ms(11) + ms(12), children: ms(13) + ms(14), ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The PostgreSQL cluster's CPU so far (ms): the postmaster, the children it reaped, its live children. */
function clusterCpu(postmaster: number): number | undefined {
  const pm = procCpu(postmaster);
  if (!pm) return undefined;
  return pm.own + pm.children + childrenOf(postmaster).reduce((sum, pid) => sum + (procCpu(pid)?.own ?? 0), 0);
}

/** PostgreSQL sessions' CPU by role (application_name), sampled; the cluster's total from its postmaster. */
export class BackendCpu {
  /** The latest CPU ms seen of each backend, what it had when first seen if it was there at the start, and its role. */
  readonly #seen = new Map<number, { role: string; ms: number; base: number }>();
  #postmaster: number | undefined;
  #clusterAtStart: number | undefined;

  /**
   * Backends to follow (pid and role): their CPU is read now and at each later sample. The first
   * call starts the count: the sessions it gives count from now, later ones from their start.
   */
  note(sessions: Iterable<{ pid: number; role: string }>): void {
    const first = this.#postmaster === undefined;
    for (const { pid, role } of sessions) {
      if (this.#seen.has(pid)) continue;
      const cpu = procCpu(pid);
      if (!cpu) continue;
      this.#seen.set(pid, { role, ms: cpu.own, base: first ? cpu.own : 0 });
      if (this.#postmaster === undefined) {
        this.#postmaster = cpu.ppid;
        this.#clusterAtStart = clusterCpu(cpu.ppid);
      }
    }
  }

  /** Reads every followed backend still alive. */
  sample(): void {
    for (const [pid, s] of this.#seen) s.ms = procCpu(pid)?.own ?? s.ms;
  }

  /** CPU ms by role since each session was first noted, and the cluster's total since the first note (undefined without /proc). */
  totals(): { byRole: Map<string, number>; cluster: number | undefined } {
    this.sample();
    const byRole = new Map<string, number>();
    for (const { role, ms, base } of this.#seen.values()) byRole.set(role, (byRole.get(role) ?? 0) + ms - base);
    const now = this.#postmaster === undefined ? undefined : clusterCpu(this.#postmaster);
    return { byRole, cluster: now === undefined || this.#clusterAtStart === undefined ? undefined : now - this.#clusterAtStart };
  }
}

/** One line: each role's CPU in seconds and in µs per backfilled row, and the cores the run kept busy. */
export function cpuLine(parts: [string, number | undefined][], rows: number, wallSeconds: number): string {
  const known = parts.filter((p): p is [string, number] => p[1] !== undefined && Number.isFinite(p[1]));
  const total = known.reduce((sum, [, ms]) => sum + ms, 0);
  const each = known.map(([name, ms]) => `${name} ${(ms / 1000).toFixed(1)} s = ${((ms * 1000) / rows).toFixed(1)} us/row`).join(', ');
  return `migrate cpu (per backfilled row): ${each}; total ${(total / 1000).toFixed(1)} s over ${wallSeconds.toFixed(1)} s = ${(total / 1000 / wallSeconds).toFixed(2)} cores`;
}
