import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { ERROR_CODES } from '../../errors';
import { printJson, printTable, tableWidth } from '../output';
import { run, setup } from '../run';

const MARK = { ok: 'ok', warn: 'WARN', fail: 'PROBLEM' } as const;

/**
 * `pitr-setup`: prints the set-up for this configuration, then (unless --print-only) checks the
 * running server, the targets, the receiver and a test switch. Exits 0 when no row is a problem,
 * else the code of the first problem.
 */
async function pitrSetup(cmd: Command, opts: { json?: boolean; printOnly?: boolean }): Promise<number> {
  const { app, loaded } = await setup(cmd, 'pitr-setup', ['log']);
  const [{ setupSteps }, { pitrSetupChecks }] = await Promise.all([import('../../pitr/setup-steps.js'), import('../../pitr/setup-check.js')]);
  const checked = opts.printOnly ? undefined : await pitrSetupChecks(app);
  const steps = setupSteps({
    app,
    envFile: path.resolve(loaded.env.files[loaded.env.files.length - 1] ?? '.env'),
    osUser: os.userInfo().username,
    facts: checked?.facts,
  });
  const rows = checked?.rows ?? [];
  const problem = rows.find((r) => r.status === 'fail');
  const code = problem ? ERROR_CODES[problem.code ?? 'INTERNAL'].exit : 0;
  if (opts.json) {
    printJson({
      setup: steps,
      checks: rows.map((r) => ({ check: r.check, status: r.status, detail: r.detail, fix: r.hint ?? null, code: r.code ?? null })),
      exit: code,
    });
    return code;
  }
  process.stdout.write(steps.join('\n') + '\n');
  if (!checked) return 0;
  process.stdout.write(`\nThe running set-up, checked:\n`);
  printTable(
    ['check', 'result', 'detail'],
    rows.map((r) => [r.check, MARK[r.status], r.hint ? `${r.detail}\nfix: ${r.hint}` : r.detail]),
    { width: tableWidth(), shrink: [{ column: 2, floor: 40 }] },
  );
  process.stdout.write(problem ? `\nFirst problem: ${problem.check} (exit ${code}).\n` : `\nPoint-in-time recovery is set up: WAL reaches every target.\n`);
  return code;
}

/** `pitr-setup`: the set-up of point-in-time recovery, then a check of it (docs/pitr.md#set-up). */
export function registerPitrSetup(program: Command): void {
  program
    .command('pitr-setup')
    .description('print the set-up of point-in-time recovery, then check it with a test WAL switch')
    .option('--json', 'print the set-up and the checks as JSON')
    .option('--print-only', 'print the set-up without connecting to the server')
    .action(run('pitr-setup', pitrSetup));
}
