import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // More workers than the 2 cores: most tests wait on child processes (the CLI, pg_dump,
    // PostgreSQL, a service). test/service, test/pg and policy-pitr: 7m50s with 2, 5m06s with 4
    // (same CPU time). Override with --maxWorkers.
    maxWorkers: 4,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    reporters: process.env.CI ? ['verbose'] : ['default'],
  },
});
