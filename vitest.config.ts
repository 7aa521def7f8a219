import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The slow fault tests have their own run: `npm run test:faults` (vitest.faults.config.ts).
    exclude: [...configDefaults.exclude, 'test/faults/**'],
    // Resolves one NATS URL and one PostgreSQL admin URL for the whole run
    // (env NATS_URL/DATABASE_URL, else private nats-server/local Postgres, else testcontainers).
    globalSetup: ['test/helpers/global-setup.ts'],
    // Integration tests create their own database (createDatabase()) and their own subject
    // prefix (uniqueId()) per test file, so test files may run in parallel against shared servers.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
