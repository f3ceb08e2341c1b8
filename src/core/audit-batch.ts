/**
 * The opens of one records.open/openMany/openSync call, gathered for a single audit record (not
 * one per field): the record API passes a batch as the open's audit metadata, and the hierarchy's
 * auditor notes each key used into it instead of calling the hook. Kept out of key-source.ts,
 * which the main entry bundles.
 */
export interface AuditedKey {
  readonly partition: string;
  readonly version: number;
  fields: number;
  /** Whether every field it opened found the key in memory (no KMS call). */
  fromCache: boolean;
}

export class OpenAuditBatch {
  readonly metadata: Readonly<Record<string, unknown>> | undefined;
  fields = 0;
  readonly keys = new Map<string, AuditedKey>();

  constructor(metadata: Readonly<Record<string, unknown>> | undefined) {
    this.metadata = metadata;
  }

  note(partition: string, version: number, fromCache: boolean): void {
    this.fields++;
    const id = `${version}\u0000${partition}`;
    const key = this.keys.get(id);
    if (key) key.fromCache &&= fromCache;
    else this.keys.set(id, { partition, version, fields: 0, fromCache });
    this.keys.get(id)!.fields++;
  }
}
