/**
 * Audit records of the administrative operations on keys (creation, rotate, retire, recreate,
 * shred, master-key rotation, verify): one record when each ends, ok or not, with the partitions
 * and versions it names and its report's counts; never a key, a blob or an error message.
 */
import { errorCodeOf } from '../economy/intermediate-keys.ts';
import type { AdminAuditRecord, AuditRecord } from './types.ts';

export type AuditHook = ((record: AuditRecord) => void) | undefined;

/** What an operation's result adds to its record. */
export type AuditSummary<T> = (result: T) => { versions?: number[]; counts?: Record<string, number> };

/** Calls the hook, never letting its failure reach the operation. */
export function auditSafely(audit: AuditHook, record: AuditRecord): void {
  if (!audit) return;
  try {
    audit(record);
  } catch {
    // An audit hook must not break the operation; it sees every call, so it can count its own failures.
  }
}

/**
 * Runs an administrative operation and audits it when it ends. For operations added later
 * (hierarchy.retire()): `audited(audit, 'retire', [partition], () => work(), () => ({ versions: [version] }))`.
 */
export async function audited<T>(audit: AuditHook, operation: AdminAuditRecord['operation'], partitions: readonly string[], work: () => Promise<T>, summary?: AuditSummary<T>): Promise<T> {
  if (!audit) return work();
  let result: T;
  try {
    result = await work();
  } catch (error) {
    auditSafely(audit, { operation, partitions: [...partitions], versions: [], ok: false, errorCode: errorCodeOf(error), at: Date.now() });
    throw error;
  }
  const { versions = [], counts } = summary?.(result) ?? {};
  auditSafely(audit, { operation, partitions: [...partitions], versions, ok: true, ...(counts ? { counts } : {}), at: Date.now() });
  return result;
}
