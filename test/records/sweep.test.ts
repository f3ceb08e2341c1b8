/**
 * The sweep loop (src/sweep.ts) by properties: over an in-memory driver that keeps the driver
 * contract (rows still to do in key order, a batch applied whole or not at all), for any rows,
 * batch size, worker count, rows that fail and a stop at any batch, every row is written at most
 * once, the counts add up, a failed row is never written, a stopped sweep resumed ends with every
 * row done, and a batch whose write fails leaves its rows to do. And quoteIdentifier() by
 * properties: any name it accepts is the same column name to SQLite and to PostgreSQL.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsError } from '../../src/core/errors.ts';
import { quoteIdentifier, type RowOutcome, runSweep, type SweepDriver, type SweepRow } from '../../src/records/sweep.ts';
import { type PostgresServer, startPostgres } from '../fixtures/postgres.ts';

interface MemoryRow {
  id: number;
  done: boolean;
  writes: number;
}

/** A table in memory: `pending` is `!done`; a batch is applied whole (its transaction) or not at all. */
function memoryDriver(rows: MemoryRow[], options: { failWriteAt?: number } = {}): SweepDriver & { batchesWritten: number } {
  let batchCalls = 0;
  const locked = new Set<number>();
  const driver = {
    batchesWritten: 0,
    key: ['id'],
    countPending: async () => rows.filter((r) => !r.done).length,
    async batch(after: readonly unknown[] | undefined, limit: number, work: (rows: SweepRow[]) => Promise<{ key: readonly unknown[]; write: Record<string, unknown> }[]>) {
      const from = after === undefined ? -Infinity : (after[0] as number);
      const batch = rows.filter((r) => !r.done && r.id > from && !locked.has(r.id)).slice(0, limit);
      for (const r of batch) locked.add(r.id);
      try {
        const writes = await work(batch.map((r) => ({ id: r.id })));
        if (batch.length && options.failWriteAt === ++batchCalls) throw new Error('connection lost');
        for (const w of writes) {
          const row = rows.find((r) => r.id === w.key[0])!;
          row.done = true;
          row.writes++;
        }
        driver.batchesWritten++;
        return { rows: batch.length, last: batch.length ? [batch.at(-1)!.id] : undefined };
      } finally {
        for (const r of batch) locked.delete(r.id);
      }
    },
    async fork() {
      return { ...driver, release() {} };
    },
  };
  return driver;
}

const table = fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 120 }).map((ids) => ids.sort((a, b) => a - b).map((id) => ({ id, done: false, writes: 0 })));

describe('runSweep', () => {
  it('writes each row at most once, never a failed one, and the counts add up; a stopped sweep resumed finishes', async () => {
    await fc.assert(
      fc.asyncProperty(
        table,
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.func(fc.constantFrom<'write' | 'current' | 'failed' | 'throws'>('write', 'write', 'write', 'current', 'failed', 'throws')),
        fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
        async (rows, batchSize, workers, kind, stopAfter) => {
          const fate = new Map(rows.map((r) => [r.id, kind(r.id)]));
          const transform = (row: SweepRow): RowOutcome => {
            const f = fate.get(row.id as number)!;
            if (f === 'throws') throw new TypeError('bad value');
            return f === 'write' ? { write: { v: 1 } } : f === 'current' ? { current: true } : { failed: new RangeError('no') };
          };
          const driver = memoryDriver(rows);
          const controller = new AbortController();
          const first = await runSweep(driver, {
            transform,
            batchSize,
            workers,
            signal: controller.signal,
            onEvent: (e) => e.type === 'batch' && stopAfter !== undefined && e.totals.batches >= stopAfter && controller.abort(),
          });
          expect(first.seen).toBe(first.written + first.current + first.failed);
          expect(first.failures.length).toBe(first.failed);
          const second = await runSweep(driver, { transform, batchSize, workers });
          for (const r of rows) {
            const f = fate.get(r.id)!;
            expect(r.writes).toBe(f === 'write' ? 1 : 0);
          }
          expect(first.written + second.written).toBe([...fate.values()].filter((f) => f === 'write').length);
          expect(second.stopped).toBe(false);
          if (!first.stopped) expect(second.written).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('counts distinct rows with several workers: a failed or current row is not read again in the run, and seen reaches pending', async () => {
    await fc.assert(
      fc.asyncProperty(
        table,
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 2, max: 4 }),
        fc.func(fc.constantFrom<'write' | 'current' | 'failed'>('write', 'current', 'failed')),
        async (rows, batchSize, workers, kind) => {
          const fate = new Map(rows.map((r) => [r.id, kind(r.id)]));
          const calls = new Map<number, number>();
          const transform = (row: SweepRow): RowOutcome => {
            calls.set(row.id as number, (calls.get(row.id as number) ?? 0) + 1);
            const f = fate.get(row.id as number)!;
            return f === 'write' ? { write: { v: 1 } } : f === 'current' ? { current: true } : { failed: new RangeError('no') };
          };
          const summary = await runSweep(memoryDriver(rows), { transform, batchSize, workers });
          expect(summary.seen).toBe(summary.pending);
          expect(summary.seen).toBe(rows.length);
          expect(summary.failed).toBe([...fate.values()].filter((f) => f === 'failed').length);
          expect(new Set(summary.failures.map((f) => f.key[0])).size).toBe(summary.failed);
          expect([...calls.values()].every((n) => n === 1)).toBe(true);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a batch whose write fails rolls back: the sweep rejects, its rows stay to do, the batches before stay done', async () => {
    await fc.assert(
      fc.asyncProperty(table, fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 5 }), async (rows, batchSize, failAt) => {
        const driver = memoryDriver(rows, { failWriteAt: failAt });
        const batches = Math.ceil(rows.length / batchSize);
        const run = runSweep(driver, { transform: () => ({ write: { v: 1 } }), batchSize });
        if (failAt > batches) {
          expect((await run).written).toBe(rows.length);
          return;
        }
        await expect(run).rejects.toThrow('connection lost');
        expect(rows.filter((r) => r.done).length).toBe((failAt - 1) * batchSize);
        const resumed = await runSweep(memoryDriver(rows), { transform: () => ({ write: { v: 1 } }), batchSize });
        expect(resumed.written).toBe(rows.length - (failAt - 1) * batchSize);
        expect(rows.every((r) => r.writes === 1)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('a failure that is not the row own (the KMS) stops the sweep instead of skipping the row', async () => {
    const rows = Array.from({ length: 30 }, (_, id) => ({ id, done: false, writes: 0 }));
    const transform = (row: SweepRow): RowOutcome => {
      if (row.id === 17) throw new KmsError('KMS down', { kind: 'unreachable' });
      return { write: {} };
    };
    await expect(runSweep(memoryDriver(rows), { transform, batchSize: 10 })).rejects.toMatchObject({ code: 'ERR_KMS' });
    expect(rows.filter((r) => r.done).map((r) => r.id)).toEqual([...Array(10).keys()]);
  });

  it('refuses bad options', async () => {
    const driver = memoryDriver([]);
    const transform = () => ({ current: true }) as const;
    await expect(runSweep(driver, { transform: undefined as never })).rejects.toThrow(TypeError);
    await expect(runSweep(driver, { transform, batchSize: 0 })).rejects.toThrow(RangeError);
    await expect(runSweep(driver, { transform, workers: 65 })).rejects.toThrow(RangeError);
    await expect(runSweep({ ...driver, fork: undefined }, { transform, workers: 2 })).rejects.toThrow(/one worker/);
  });
});

describe('quoteIdentifier', () => {
  let server: PostgresServer;
  let pool: pg.Pool;
  beforeAll(async () => {
    server = await startPostgres();
    pool = new pg.Pool({ connectionString: server.url, max: 1 });
  });
  afterAll(async () => {
    await pool.end();
    await server.stop();
  });

  it('any name it accepts is that same column name to SQLite and PostgreSQL; others are a TypeError', async () => {
    const db = new Database(':memory:');
    const names = fc.oneof(fc.string({ maxLength: 70 }), fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 30 }), fc.constantFrom('"', 'a"b', '""', 'x'.repeat(63), 'é'.repeat(32), '__proto__', 'constructor'));
    await fc.assert(
      fc.asyncProperty(names, async (name) => {
        let quoted: string;
        try {
          quoted = quoteIdentifier(name);
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError);
          return;
        }
        expect(Object.keys(db.prepare(`SELECT 1 AS ${quoted}`).get() as object)).toEqual([name]);
        const { fields } = await pool.query(`SELECT 1 AS ${quoted}`);
        expect(fields.map((f) => f.name)).toEqual([name]);
      }),
      { numRuns: 300 },
    );
    db.close();
  });
});
