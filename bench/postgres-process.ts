/** PostgreSQL for a benchmark: KMS_ENVELOPE_PG_URL when set, else a throwaway cluster from .ci/postgres.sh. */
import { execFileSync } from 'node:child_process';

const root = new URL('../../', import.meta.url);

export async function startPostgres(): Promise<{ url: string; stop: () => void }> {
  if (process.env.KMS_ENVELOPE_PG_URL) return { url: process.env.KMS_ENVELOPE_PG_URL, stop: () => {} };
  const script = new URL('.ci/postgres.sh', root).pathname;
  const out = execFileSync('bash', [script, 'start'], { encoding: 'utf8' });
  const url = /KMS_ENVELOPE_PG_URL=(\S+)/.exec(out)![1]!;
  const dir = /KMS_ENVELOPE_PG_DIR=(\S+)/.exec(out)![1]!;
  return { url, stop: () => execFileSync('bash', [script, 'stop', dir]) };
}
