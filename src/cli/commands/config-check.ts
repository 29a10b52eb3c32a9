import type { Command } from 'commander';
import { printTable } from '../output';
import { run, setupEach } from '../run';

async function configCheck(cmd: Command): Promise<number> {
  const { apps, loaded } = await setupEach(cmd, 'config check');
  const [{ preflight }, { describeConfig }, { lifecycleAdvice }, { pitrConfigRows }] = await Promise.all([
    import('../../backup/preflight.js'),
    import('../../config/index.js'),
    import('../../backup/append-only.js'),
    import('../../pitr/server-checks.js'),
  ]);
  printTable(
    ['variable', 'value', 'source'],
    describeConfig(loaded).map((r) => [r.variable, r.value, r.source]),
  );
  const mark = { ok: 'ok', warn: 'WARN', fail: 'FAIL' } as const;
  let failed = false;
  for (const app of apps) {
    // one table per database when several are configured, headed by its name
    if (loaded.config.databases.length > 1) process.stdout.write(`\ndatabase ${app.database.name}:\n`);
    // with WAL_RECEIVE=on, what streaming WAL and base backups need of the server (pitr-setup's checks)
    const results = [...(await preflight(app)), ...(await pitrConfigRows(app))];
    printTable(
      ['check', 'result', 'detail'],
      results.map((r) => [r.check, mark[r.status], r.hint ? `${r.detail}\nfix: ${r.hint}` : r.detail]),
    );
    failed ||= results.some((r) => r.status === 'fail');
    for (const advice of lifecycleAdvice(app)) process.stdout.write(`\n${advice}\n`);
  }
  return failed ? 2 : 0;
}

/** `config check`: the effective configuration (secrets redacted), then the preflight checks; exits 2 when one fails. */
export function registerConfigCheck(config: Command): void {
  config
    .command('check')
    .description('print the effective configuration (secrets redacted) and test database, pg_dump and SMTP')
    .action(run('config check', configCheck));
}
