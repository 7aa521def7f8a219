import { defineConfig } from 'vitest/config';

// `npm run test:faults`: the slow hardening tests on real processes (nats-server clusters and
// users, the service as a child process, real signals). Not part of `npm test`; CI runs both.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    // The same PostgreSQL admin URL (and shared NATS, unused by most) as `npm test`.
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Clusters and child processes are heavy on a 2-core machine: one file at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
