/**
 * The records' key-version column (issue 14 §2): seal() keeps a plain column at the key version the
 * row was sealed under, so SQL finds the rows to rotate through an index; a re-seal after a
 * rotation moves it on.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import { createRecords, defineTable } from '../../src/records.ts';
import { LocalKms } from '../../src/index.ts';

const users = defineTable({
  name: 'users',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: { email: { type: 'string' }, note: { type: 'string' } },
  keyVersionColumn: 'key_version',
});

describe('the key-version column', () => {
  it('is written by seal() and sealSync(), found by an indexed SQL query after a rotation, and moved on by a re-seal', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const db = new Database(':memory:');
    db.exec('CREATE TABLE users (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, note TEXT, key_version INTEGER); CREATE INDEX users_kv ON users (tenant, key_version)');
    const insert = db.prepare('INSERT OR REPLACE INTO users (id, tenant, email, note, key_version) VALUES (@id, @tenant, @email, @note, @key_version)');
    for (let i = 0; i < 10; i++) insert.run(await records.seal(users, { id: `u${i}`, tenant: 'acme', email: `u${i}@x`, note: null }));
    await hierarchy.rotate('acme');
    for (let i = 10; i < 15; i++) insert.run(await records.seal(users, { id: `u${i}`, tenant: 'acme', email: `u${i}@x`, note: 'n' }));
    expect(records.sealSync(users, { id: 'u99', tenant: 'acme', email: 'e', note: null }).key_version).toBe(2);

    const stale = db.prepare("SELECT id FROM users WHERE tenant = 'acme' AND key_version < ? ORDER BY id").all(2) as { id: string }[];
    expect(stale.map((r) => r.id)).toEqual(['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9']);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT id FROM users WHERE tenant = 'acme' AND key_version < 2").all() as { detail: string }[];
    expect(plan.map((p) => p.detail).join(' ')).toContain('users_kv');

    // A re-seal (open, then seal under the active version) moves the row on.
    const row = db.prepare("SELECT * FROM users WHERE id = 'u3'").get() as Record<string, unknown>;
    const { key_version: _old, ...plain } = await records.open(users, row);
    insert.run(await records.seal(users, plain as never));
    expect(db.prepare("SELECT key_version FROM users WHERE id = 'u3'").get()).toEqual({ key_version: 2 });
    // open() does not read it: a wrong value in it does not stop a row from opening.
    expect((await records.open(users, { ...row, key_version: 77 })).email).toBe('u3@x');
  });

  it('refuses a key-version column that is encrypted or a primary key', () => {
    const spec = { name: 't', primaryKey: 'id', partition: 'p', columns: { a: { type: 'string' as const } } };
    expect(() => defineTable({ ...spec, keyVersionColumn: 'a' })).toThrow(TypeError);
    expect(() => defineTable({ ...spec, keyVersionColumn: 'id' })).toThrow(TypeError);
  });
});
