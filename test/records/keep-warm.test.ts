/**
 * records.warm() keeps keys warm: a synchronous call (what the Drizzle hooks make:
 * sealFieldSync, openFieldSync, indexOfSync) after more than ttlMs of quiet finds its keys in
 * memory, the refreshes paced (about one KMS Decrypt per key per TTL); without keeping warm, or
 * after stopWarm(), the same call after the same quiet is cold (KeyNotWarmError).
 */
import { describe, expect, it } from 'vitest';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable } from '../../src/records.ts';

const profiles = defineTable({
  name: 'profiles',
  partition: 'acme',
  columns: { email: { type: 'string', index: { column: 'email_idx', bits: 32 } } },
});
const TTL = 1000;
const QUIET = 2200; // more than two TTLs with no call
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup() {
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate(), ttlMs: TTL, refreshAheadMs: 300, jitter: 0, activeTtlMs: TTL });
  return { hierarchy, records: createRecords({ hierarchy }) };
}

/** The calls a sync ORM hook makes, once. */
function hookCalls(records: ReturnType<typeof setup>['records']): string {
  const sealed = records.sealFieldSync(profiles, 'email', 'alice@example.com') as string;
  records.indexOfSync(profiles, 'email', 'alice@example.com', { partition: 'acme' });
  return records.openFieldSync(profiles, 'email', sealed) as string;
}

describe('records.warm keeps keys warm', () => {
  it('a sync hook used after ttlMs of quiet works, paced; not kept warm (or stopped), it is cold', async () => {
    const kept = setup();
    const cold = setup();
    const stopped = setup();
    await kept.records.warm(['acme'], [profiles]);
    await cold.records.warm(['acme'], [profiles], { keepWarm: false });
    await stopped.records.warm(['acme'], [profiles]);
    stopped.records.stopWarm();
    expect(hookCalls(kept.records)).toBe('alice@example.com');
    await sleep(QUIET);
    expect(hookCalls(kept.records)).toBe('alice@example.com');
    expect(() => hookCalls(cold.records)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
    expect(() => hookCalls(stopped.records)).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
    // Two keys (the partition's and its blind index's), each refreshed about once per TTL - refreshAheadMs.
    const decrypts = kept.hierarchy.metrics().kmsCalls.Decrypt.ok;
    expect(decrypts).toBeGreaterThanOrEqual(2);
    expect(decrypts).toBeLessThanOrEqual(2 * (Math.ceil(QUIET / (TTL - 300)) + 1));
    for (const s of [kept, cold, stopped]) {
      s.records.stopWarm();
      await s.hierarchy.close();
    }
  });
});
