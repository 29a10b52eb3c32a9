import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // A test file that leaves a handle open (a server, a socket, a child process) fails.
    setupFiles: ['test/helpers/leaks.ts'],
    pool: 'forks',
    // Many tests wait (on a cron tick, a stall or S3 timeout, pm2) rather than compute, so more
    // files run at once than there are cores: on 2 cores 3 workers took 302 s, 4 took 321 s (the
    // CPU was saturated, and contention costs CPU). Each test has its own database, directory,
    // SMTP sink, bucket and PM2_HOME, so files do not share state; a worker keeps its loaded
    // modules from one file to the next (isolate: false), which saved a third of the run's CPU.
    maxWorkers: 3,
    isolate: false,
    // What loadConfig sets for the CLI, for the in-process tests that build S3 storage without it:
    // the SDK's warning that its 2027 releases need Node 22 is noise in the test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Nothing left open hangs the run either: vitest ends each worker (SIGTERM, then SIGKILL) when
    // its files are done, and gives the run's close (the global teardown included) this long
    // before it exits anyway.
    teardownTimeout: 20_000,
  },
});
