import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Many tests wait (on a cron tick, a stall or S3 timeout, pm2) rather than compute: with two
    // workers the whole run used ~410 CPU-s of the test processes in ~400 s on two cores, so two
    // more files at once fill the gaps. Each test has its own database, directory, SMTP sink,
    // bucket and PM2_HOME, so files do not share state.
    maxWorkers: 4,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // A test that leaves handles open fails instead of hanging the run.
    teardownTimeout: 20_000,
  },
});
