import { defineConfig } from 'vitest/config';

/**
 * Suites that take long (packing and compiling consumers, racing processes, a fleet of processes,
 * 10,000-row batches, the CLI spawned again and again, 10,000 KMS calls through the emulator,
 * 512 MiB files): `npm test` leaves them out to stay under two minutes; `npm run test:slow` runs
 * only them, and .ci/run runs both.
 */
export const SLOW = [
  'test/package/**/*.test.ts',
  'test/types/**/*.test.ts',
  'test/hierarchy/stores/races.test.ts',
  'test/hierarchy/fleet.test.ts',
  'test/records/records-db*.test.ts',
  'test/tools/cli*.test.ts',
  'test/adapters/**/*.test.ts',
  'test/economy/cache.test.ts',
  'test/node/files.test.ts',
  'test/records/sql/sweeps-kill.test.ts',
  'test/records/sql/migration-kill.test.ts',
  'test/hierarchy/rotation-fleet.test.ts',
  'test/envelope/rewrap-quota.test.ts',
  'test/tools/demo.test.ts',
  'test/hierarchy/coordinator-fleet.test.ts',
];

/**
 * Suites in other runtimes, each run on its own by .ci/run: Chromium (`npm run test:browser`) and
 * the Bun and workerd smoke tests (`npm run test:runtimes`).
 */
export const BROWSER = ['test/browser/**/*.test.ts'];
export const RUNTIMES = ['test/runtimes/**/*.test.ts'];

const GROUPS: Record<string, string[]> = { slow: SLOW, browser: BROWSER, runtimes: RUNTIMES };
const group = GROUPS[process.env.KMS_ENVELOPE_TESTS ?? ''];

export default defineConfig({
  test: {
    include: group ?? ['test/**/*.test.ts'],
    exclude: group ? [] : [...SLOW, ...BROWSER, ...RUNTIMES, '**/node_modules/**'],
    // The suites import src/index.ts, as a bundle for other runtimes does; on Node the package
    // resolves to src/index.node.ts, which provides the node:crypto backend: so does this.
    setupFiles: ['test/setup-node-backend.ts'],
    testTimeout: 60_000,
    // beforeAll hooks start PostgreSQL clusters and emulators: at a load average of 16 they took over 10 s.
    hookTimeout: 120_000,
  },
});
