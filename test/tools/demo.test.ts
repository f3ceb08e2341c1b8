/**
 * `npm start` (src/tools/demo.ts, bundled by `npm run build:demo`): every step of the main job
 * happens and says what it cost; the KMS calls stay per tenant, never per row.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('npm start', () => {
  it('seals rows for two tenants, finds one by blind index, refuses a moved row, rotates and sweeps, shreds a tenant, then seals a file', () => {
    execFileSync('npm', ['run', 'build:demo', '--silent'], { cwd: root, stdio: 'ignore' });
    const out = execFileSync(process.execPath, ['dist/tools/demo.js'], { cwd: root, encoding: 'utf8' });
    expect(out).toMatch(/1\. records\.seal\(\): 1000 rows .*\[4 KMS calls \(4 GenerateDataKey, 0 Decrypt\)\]/);
    expect(out).toMatch(/a 19-byte card is stored as [\d.]+ bytes/);
    expect(out).toMatch(/→ 1 candidate row\(s\), 1 match: Customer 42 <user42@acme\.example>/);
    expect(out).toContain('refused: ERR_PARTITION_MISMATCH');
    expect(out).toMatch(/\[2 KMS calls \(2 GenerateDataKey, 0 Decrypt\)\]\n {2}1000 rows rewritten, 0 failed, .* v2: 1000/);
    expect(out).toContain('a globex row now: refused: ERR_PARTITION_SHREDDED; acme still opens: 4111 1111 1111 0000');
    expect(out).toMatch(/\[2 KMS calls \(1 GenerateDataKey, 1 Decrypt\)\]\n {2}\d+ bytes → \d+ bytes sealed .* identical: true/);
  });
});
