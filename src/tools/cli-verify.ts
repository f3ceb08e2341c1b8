/**
 * `kms-envelope verify`: every key version in a key store (JSON file, PostgreSQL or SQLite) still
 * decrypts through the KMS (hierarchy.verify()). Run it before and after a master-key rotation,
 * and on a restored backup. One line per failing version and a summary; exit 0 when all decrypt,
 * 3 (KMS) when some do not.
 */
import { parseArgs } from 'node:util';
import { createKeyHierarchy } from '../hierarchy.ts';
import { type KeyProvider } from '../index.ts';
import { EXIT, printable, safeJson, UsageError } from './cli-errors.ts';
import { openKeyStore, STORE_HELP, storeOptions } from './cli-store.ts';

export const VERIFY_HELP = (providerHelp: string, exitTable: string) => `Usage: kms-envelope verify STORE [--partition P ...] [--json]

Checks that every key version in the key store still decrypts through the KMS: one Decrypt per version, the keys wiped at once. Run it before and after a rotation, and on a
restored backup. Exit 0 when every version decrypts, 3 when some do not (each is named with the
KMS's code, e.g. ResourceUnavailable.CmkDisabled).

${STORE_HELP}
  --partition P          only this partition; repeat for more (default: every partition)
  --json                 print the report as JSON

${providerHelp}

${exitTable}`;

export interface VerifyDeps {
  provider(flags: Record<string, unknown>, sealing: boolean): KeyProvider;
  providerOptions: Record<string, { type: 'string' }>;
  help(): number;
}

export async function verifyCommand(args: string[], deps: VerifyDeps): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...deps.providerOptions,
      ...storeOptions,
      partition: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return deps.help();
  if (positionals.length > 0) throw new UsageError(`verify takes no file arguments, got "${printable(positionals[0]!)}"`);
  const kms = deps.provider(values, false);
  const opened = await openKeyStore(values, 'verify');
  const hierarchy = createKeyHierarchy({ store: opened.store, kms });
  try {
    const report = await hierarchy.verify(values.partition ? { partitions: values.partition } : {});
    if (values.json) {
      console.log(safeJson(report));
    } else {
      for (const f of report.failed) console.log(`FAILED ${printable(f.partition)} version ${f.version} (master key ${printable(f.keyId)}): ${printable(f.code)}`);
      console.log(`${report.checked} key versions checked: ${report.ok} decrypt, ${report.failed.length} do not`);
    }
    return report.failed.length === 0 ? EXIT.ok : EXIT.kms;
  } finally {
    await hierarchy.close();
    await opened.close();
  }
}
