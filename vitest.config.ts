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
    // A worker keeps the modules it imported from one test file to the next: importing src/ again
    // for every file was 50 s of the suite's work (25 s without). No test leaves state behind in a
    // module (environment changes and spies are restored where they are made).
    isolate: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    reporters: process.env.CI ? ['verbose'] : ['default'],
    // Test helpers load the AWS SDK in the test process, where the product's own silencing
    // (config/environment.ts, when a target is opened) does not run: its notice about its future
    // releases on Node 20 is noise in the test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
