/**
 * Rotation and erasure across real OS processes (test/fixtures/rotation-fleet.ts):
 * - a two-phase rollout of a new master key: first every process can decrypt under it, then
 *   writes switch; mid-rollout every process opens every other's messages, and skipping the first
 *   phase is shown to break the processes not yet updated;
 * - crypto-shredding a tenant: its rows and files stop opening in every process (a typed error)
 *   once their cached keys' TTL is over, while the other tenant reads on.
 * Each process's hierarchy clock is moved on by command, so no test waits on the wall clock.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, LocalKms } from '../../src/index.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createRecords, defineTable } from '../../src/records.ts';
import { JsonFileKeyStore, sealFile } from '../../src/node.ts';
import { type Child, type ChildConfig, type Fleet, startFleet } from '../fixtures/rotation-fleet.ts';

let fleet: Fleet;
beforeAll(() => void (fleet = startFleet()), 60_000);
afterAll(() => fleet?.close());

const k1 = randomBytes(32).toString('base64');
const k2 = randomBytes(32).toString('base64');
const PHASE: Record<string, ChildConfig> = {
  before: { masterKeys: { k1 }, writeKeyId: 'k1' },
  decryptCapable: { masterKeys: { k1, k2 }, writeKeyId: 'k1' },
  switched: { masterKeys: { k1, k2 }, writeKeyId: 'k2' },
};

/** Every process seals a message, then every process opens every message: the failures, as "reader<-writer: code". */
async function crossOpen(processes: { name: string; child: Child }[]): Promise<string[]> {
  const sealed = await Promise.all(processes.map(async (p) => ({ name: p.name, reply: await p.child.send({ op: 'seal', text: `from ${p.name}`, context: { by: p.name } }) })));
  const failures: string[] = [];
  for (const reader of processes) {
    for (const { name, reply } of sealed) {
      expect(reply.ok).toBe(true);
      const opened = await reader.child.send({ op: 'open', sealed: reply.value, context: { by: name } });
      if (!opened.ok) failures.push(`${reader.name}<-${name}: ${opened.code}`);
      else expect(opened.value).toBe(`from ${name}`);
    }
  }
  return failures;
}

describe('a two-phase rollout of a new master key, across processes', () => {
  it('phase 1 (decrypt-capable everywhere) then phase 2 (switch writes): every process opens every message at every step; skipping phase 1 breaks the old processes', async () => {
    const start = (phase: keyof typeof PHASE, n: number) => Array.from({ length: n }, (_, i) => ({ name: `${phase}-${i}`, child: fleet.start(PHASE[phase]!) }));
    const all: { child: Child }[] = [];
    try {
      // Mid phase 1: some processes restarted with the new key, decrypt-only; writes still under k1.
      const step1 = [...start('before', 2), ...start('decryptCapable', 2)];
      all.push(...step1);
      expect(await crossOpen(step1)).toEqual([]);
      // Mid phase 2: every process decrypt-capable, some already write under k2.
      const step2 = [...step1.filter((p) => p.name.startsWith('decryptCapable')), ...start('switched', 2)];
      all.push(...step2);
      expect(await crossOpen(step2)).toEqual([]);
      // The wrong order: a process without the new key meets one that writes under it.
      const wrong = [step1[0]!, step2.at(-1)!];
      const failures = await crossOpen(wrong);
      expect(failures).toEqual([`before-0<-switched-1: ERR_KMS`]);
    } finally {
      await Promise.all(all.map((p) => p.child.stop()));
    }
  }, 60_000);
});

describe('crypto-shredding a tenant, across processes', () => {
  it("makes the tenant's rows and files unreadable with a typed error in every process once their TTL is over, while the other tenant reads on", async () => {
    const master = randomBytes(32);
    const storePath = join(fleet.dir, 'keys.json');
    const kms = new LocalKms({ m: new Uint8Array(master) });
    const hierarchy = createKeyHierarchy({ store: new JsonFileKeyStore(storePath), kms });
    const records = createRecords({ hierarchy });
    const notes = defineTable({ name: 'notes', primaryKey: 'id', partition: { column: 'tenant' }, columns: { body: { type: 'string' } } });
    const rows = {
      doomed: await records.seal(notes, { id: 'n1', tenant: 'doomed', body: 'erase me' }),
      kept: await records.seal(notes, { id: 'n2', tenant: 'kept', body: 'keep me' }),
    };
    const files: Record<string, string> = {};
    for (const tenant of ['doomed', 'kept']) {
      const plain = join(fleet.dir, `${tenant}.txt`);
      writeFileSync(plain, `${tenant} file`);
      files[tenant] = join(fleet.dir, `${tenant}.kmse`);
      await sealFile(createEnvelope({ hierarchy, partition: tenant }), plain, files[tenant], { overwrite: true });
    }
    const TTL = 600_000;
    const config: ChildConfig = { masterKeys: { m: master.toString('base64') }, writeKeyId: 'm', store: storePath, ttlMs: TTL };
    const children = [fleet.start(config), fleet.start(config), fleet.start(config)];
    const readAll = async (child: Child) => ({
      doomedRow: await child.send({ op: 'openRow', row: rows.doomed }),
      keptRow: await child.send({ op: 'openRow', row: rows.kept }),
      doomedFile: await child.send({ op: 'openFile', path: files.doomed, dest: join(fleet.dir, `out-${Math.random()}`) }),
      keptFile: await child.send({ op: 'openFile', path: files.kept, dest: join(fleet.dir, `out-${Math.random()}`) }),
    });
    try {
      for (const child of children) {
        const r = await readAll(child);
        expect([r.doomedRow.value, r.keptRow.value, r.doomedFile.ok, r.keptFile.ok]).toEqual(['erase me', 'keep me', true, true]);
      }
      const report = await hierarchy.shred('doomed');
      expect(report.versionsDeleted).toBe(1);
      // Within their TTL the other processes still hold the key in memory: the documented bound.
      const cached = await readAll(children[0]!);
      expect(cached.doomedRow.value).toBe('erase me');
      // Once the TTL is over, every process refuses the tenant with a typed error, and reads the other on.
      for (const child of children) {
        await child.send({ op: 'advance', ms: TTL + 1 });
        const r = await readAll(child);
        expect(r.doomedRow).toMatchObject({ ok: false, code: 'ERR_PARTITION_SHREDDED' });
        expect(r.doomedFile).toMatchObject({ ok: false, code: 'ERR_PARTITION_SHREDDED' });
        expect(r.keptRow.value).toBe('keep me');
        expect(r.keptFile.ok).toBe(true);
      }
      // A new process never could.
      const late = fleet.start(config);
      children.push(late);
      expect((await readAll(late)).doomedRow).toMatchObject({ ok: false, code: 'ERR_PARTITION_SHREDDED' });
    } finally {
      await Promise.all(children.map((c) => c.stop()));
      await hierarchy.close();
    }
  }, 60_000);
});
