import { defineConfig } from 'vitest/config';

/**
 * Suites that take long (packing and compiling consumers, real processes racing, a fleet of
 * processes, 10,000-row batches): `npm test` leaves them out to stay quick; `npm run test:slow`
 * runs only them, and .ci/run runs both.
 */
export const SLOW = [
  'test/package/**/*.test.ts',
  'test/types/**/*.test.ts',
  'test/node/key-stores/races.test.ts',
  'test/fleet.test.ts',
  'test/records-db.test.ts',
  'test/tools/cli-signals.test.ts',
  'test/adapters/**/*.test.ts',
];

const slow = process.env.KMS_ENVELOPE_TESTS === 'slow';

export default defineConfig({
  test: {
    include: slow ? SLOW : ['test/**/*.test.ts'],
    exclude: slow ? [] : [...SLOW, '**/node_modules/**'],
    testTimeout: 60_000,
  },
});
