import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '../..');

interface FileResult {
  name: string;
  status: string;
  message: string;
}

/** Runs vitest on the files of test/fixtures/leaks, with the leak check as every test file gets it. */
async function runFixtures(): Promise<Record<string, FileResult>> {
  const vitest = path.join(REPO, 'node_modules/vitest/vitest.mjs');
  const args = [vitest, 'run', '--config', 'test/fixtures/leaks/vitest.config.mts', '--reporter=json'];
  // it exits 1 when a file fails, as two do here
  const out = await promisify(execFile)(process.execPath, args, { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 60_000 }).catch(
    (err: { stdout?: string; stderr?: string }) => {
      if (!err.stdout) throw err as Error;
      return { stdout: err.stdout };
    },
  );
  const report = JSON.parse(out.stdout) as { testResults: FileResult[] };
  return Object.fromEntries(report.testResults.map((r) => [path.basename(r.name), r]));
}

it('a test file that leaves a server or a child process open fails, naming it; one that closes what it opened, even a moment late, passes', async () => {
  const files = await runFixtures();
  expect(Object.fromEntries(Object.entries(files).map(([name, r]) => [name, r.status]))).toEqual({
    'server.leak.ts': 'failed',
    'child.leak.ts': 'failed',
    'late-close.leak.ts': 'passed',
    'clean.leak.ts': 'passed',
  });
  expect(files['server.leak.ts']!.message).toMatch(/^this file left open 1 × TCPServerWrap .* close what a test opens when it finishes/);
  expect(files['child.leak.ts']!.message).toMatch(/^this file left open 1 × ProcessWrap /);
});
