import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Most of a test's time is spent waiting (on pg_dump, a cron tick, a stall or S3 timeout,
    // pm2): the vitest process tree used ~29 CPU-s in 100-150 s of wall time for the daemon and
    // clock-jump files. Four files at once keep two cores busy; each test has its own database,
    // directory, SMTP sink, bucket and PM2_HOME, so files do not share state.
    maxWorkers: 4,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // A test that leaves handles open fails instead of hanging the run.
    teardownTimeout: 20_000,
  },
});
