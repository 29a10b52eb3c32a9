#!/usr/bin/env -S node --max-semi-space-size=1 --
// (--max-semi-space-size: a backup streams hundreds of MB through short-lived 64 KB buffers;
// small young-generation semi-spaces return their memory promptly: peak RSS ~75-90 MB, not ~130.
// `--` stops Node from reading our own --env-file as its option.)
import { Command, Option } from 'commander';
import { createApp, type App } from '../app';
import { checkDirectories, type DirRole } from '../backup/directories';
import { performBackup } from '../backup/job';
import { describeConfig, loadConfig, parseAlertConfig, type LoadedConfig } from '../config';
import { loadEnv } from '../config/env-files';
import { asBackupError, BackupError, ERROR_CODES } from '../errors';
import { closeLogger, initLogger, log } from '../logger';
import { Alerter, composeAlert } from '../notify/alerts';
import { smtpSender } from '../notify/mailer';
import { isFutureDated } from '../storage/manifest';
import { formatAge, formatBytes, printable } from '../util/format';
import { VERSION } from '../version';
import { parseAppName, parseBackupId, parseDatabaseName, parseKeep, parseLabel, parseTableName, parseTargetName } from './input';
import { printError, printJson, table } from './output';

interface GlobalOpts {
  envFile: string[];
}

/** Commands whose failures are alerted by mail even when the configuration itself is broken. */
const UNATTENDED = new Set(['daemon', 'backup']);
/** Errors of unattended commands that cannot start, with why, to be mailed from `run`. */
const configFailures = new WeakMap<BackupError, string>();

/**
 * Loads the configuration, checks the directories the command writes (`writes`; see README
 * "Directories") and starts logging. A directory it needs that cannot be written is a
 * configuration error (exit 2). LOG_DIR is checked for every command: those that do not need it
 * log to the console only, with a warning.
 */
function setup(cmd: Command, name: string, writes: readonly DirRole[] = []): { app: App; loaded: LoadedConfig } {
  const { envFile } = cmd.optsWithGlobals<GlobalOpts>();
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(envFile);
  } catch (err) {
    // only a configuration that cannot be loaded is mailed from here; every later failure has its own alert
    if (err instanceof BackupError && UNATTENDED.has(name)) configFailures.set(err, 'bad configuration');
    throw err;
  }
  const { config } = loaded;
  const checks = checkDirectories(config, [...writes, 'log']);
  const logProblem = checks.find((c) => c.role === 'log')?.problem;
  initLogger({
    dir: logProblem ? undefined : config.logDir,
    level: config.logLevel,
    maxBytes: config.logMaxBytes,
    maxFiles: config.logMaxFiles,
    consoleStream: name === 'daemon' ? 'stdout' : 'stderr',
    consoleLevel: name === 'daemon' || name === 'backup' || config.logLevel === 'debug' ? config.logLevel : 'warn',
  });
  const unusable = checks
    .filter((c) => c.problem && writes.includes(c.role))
    .map((c) => new BackupError('CONFIG', c.problem!.message, { hint: c.problem!.hint }));
  if (unusable.length > 0) {
    const err = Object.assign(unusable[0]!, { all: unusable });
    if (UNATTENDED.has(name)) configFailures.set(err, 'a directory it writes is not usable');
    throw err;
  }
  if (logProblem) process.stderr.write(`warning: ${logProblem.message}; logging to the console only\n  fix: ${logProblem.hint}\n`);
  return { app: createApp(config), loaded };
}

/** Reports a configuration error by mail too when the alert settings still work. */
async function alertConfigError(err: BackupError, command: string, why: string, envFile: string[]): Promise<void> {
  try {
    const alert = parseAlertConfig(loadEnv(envFile).vars);
    if (!alert) return;
    await new Alerter(smtpSender(alert)).send({ kind: 'problem', what: `basement-backup ${command} cannot start: ${why}`, error: err });
  } catch {
    // the error is printed anyway
  }
}

function run(name: string, fn: (cmd: Command, ...args: never[]) => Promise<number | void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    let code = 0;
    try {
      code = (await fn(cmd, ...(args.slice(0, -1) as never[]))) ?? 0;
    } catch (thrown) {
      const err = asBackupError(thrown);
      printError(err);
      if (err.code === 'INTERNAL') log.error('unexpected error', { error: err.message, stack: (thrown as Error).stack });
      const why = configFailures.get(err);
      if (why) await alertConfigError(err, name, why, cmd.optsWithGlobals<GlobalOpts>().envFile);
      code = err.exitCode;
    }
    await closeLogger();
    process.exit(code);
  };
}

export function buildProgram(): Command {
  const program = new Command('basement-backup')
    .description('Scheduled, checked PostgreSQL backups with retention and email alerts.')
    .version(VERSION)
    .option(
      '--env-file <path>',
      'read variables from this env file (repeatable; later files win, the environment wins over all)',
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .showHelpAfterError();

  program
    .command('daemon')
    .description('run backups on BACKUP_SCHEDULE until stopped (what pm2 runs)')
    .action(
      run('daemon', async (cmd) => {
        const { runDaemonProcess } = await import('../daemon/process.js');
        return runDaemonProcess(setup(cmd, 'daemon', ['log', 'state', 'targets']).app);
      }),
    );

  program
    .command('backup')
    .description('take a backup now (e.g. before a risky migration); exits 0 only when it is complete and checked')
    .option('--label <text>', 'a note stored in the manifest, e.g. "before migration 42" (one line, at most 200 characters)')
    .option('--keep <duration>', 'protect it from retention: 30d, 12w, 6m, 1y, forever, or a future date (2027-01-31)')
    .action(
      run('backup', async (cmd, opts: { label?: string; keep?: string }) => {
        const keep = opts.keep === undefined ? null : parseKeep(opts.keep);
        const label = opts.label === undefined ? undefined : parseLabel(opts.label);
        const { app } = setup(cmd, 'backup', ['log', 'state', 'targets']);
        const result = await performBackup(app, { trigger: 'manual', label, keepUntil: keep });
        const m = result.manifest;
        process.stdout.write(`Backup completed: ${result.path ?? m.file} (${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 12)}…)\n`);
        if (app.targets.length > 1) process.stdout.write(`Stored on: ${result.stored.join(', ')}.\n`);
        for (const r of result.retention) {
          const deleted = r.decisions.filter((d) => d.action === 'delete').length;
          if (deleted > 0) process.stdout.write(`Retention removed ${deleted} old backup(s)${app.targets.length > 1 ? ` from ${r.target}` : ''}.\n`);
        }
        // The backup is complete and checked on at least one target: exit 0 even when retention or
        // another target failed (those are alerted separately).
        for (const f of result.failedTargets) process.stderr.write(`warning: not stored on ${f.name}: ${f.error.message}\n`);
        for (const r of result.retentionErrors) process.stderr.write(`warning: retention on ${r.target} failed: ${r.error.message}\n`);
      }),
    );

  program
    .command('list')
    .description('list backups, newest first (in the order they were taken)')
    .option('--json', 'print the manifests as a JSON array')
    .option('--all', 'also list objects that no manifest owns (left by a crash; the next backup or prune removes them)')
    .option('--target <name>', 'list the backups on this storage target (default: the first)')
    .action(
      run('list', async (cmd, opts: { json?: boolean; all?: boolean; target?: string }) => {
        if (opts.target !== undefined) parseTargetName(opts.target);
        const { app } = setup(cmd, 'list');
        const repo = app.target(opts.target).repo;
        const { backups, orphans } = await repo.scan(app.config.db.database);
        const now = new Date();
        if (opts.json) {
          printJson([
            ...backups.map((b) => ({
              ...(b.manifest ?? { id: b.id }),
              file: b.manifest ? (repo.storage.localPath?.(b.manifest.file) ?? b.manifest.file) : null,
              state: b.damage === undefined ? 'ok' : 'DAMAGED',
              damage: b.damage ?? null,
              future_dated: b.manifest ? isFutureDated(b.manifest, now) : false,
              // the last restore drill, also flat for scripts (the full record is in "verification")
              verified_at: b.manifest?.verification?.verified_at ?? null,
              verify_ok: b.manifest?.verification?.ok ?? null,
              restore_ms: b.manifest?.verification?.restore_ms ?? null,
            })),
            ...(opts.all ? orphans.map((o) => ({ file: repo.storage.localPath?.(o.name) ?? o.name, size_bytes: o.size, state: 'ORPHAN' })) : []),
          ]);
          return;
        }
        const orphanNote = `${orphans.length} object(s) belong to no manifest (\`list --all\` shows them; the next backup or prune removes them).\n`;
        if (backups.length === 0 && !(opts.all && orphans.length > 0)) {
          process.stdout.write(`No backups of ${app.config.db.database} in ${repo.storage.location} yet.\n`);
          if (orphans.length > 0) process.stdout.write(orphanNote);
          return;
        }
        const rows = backups.map(({ id, manifest: m, damage, storedSize }) =>
          m
            ? [
                id,
                m.created_at.replace('T', ' ').replace(/\.\d+Z$/, '') + (isFutureDated(m, now) ? ' (IN THE FUTURE)' : ''),
                formatAge(now.getTime() - Date.parse(m.created_at)),
                formatBytes(m.size_bytes),
                m.format,
                printable(m.label ?? '', 40),
                m.keep_until ?? '',
                damage === undefined ? 'ok' : `DAMAGED: ${damage}`,
                m.verification ? `${m.verification.ok ? 'ok' : 'FAILED'} ${m.verification.verified_at.slice(0, 16).replace('T', ' ')}` : 'never',
              ]
            : [id, '?', '', storedSize === undefined ? '' : formatBytes(storedSize), '', '', '', `DAMAGED: ${damage}`, ''],
        );
        if (opts.all) for (const o of orphans) rows.push([o.name, '', '', formatBytes(o.size), '', '', '', 'ORPHAN: no manifest', '']);
        process.stdout.write(table(['id', 'created (UTC)', 'age', 'size', 'format', 'label', 'keep until', 'state', 'verified'], rows) + '\n');
        if (!opts.all && orphans.length > 0) process.stdout.write(orphanNote);
      }),
    );

  program
    .command('status')
    .description('newest good backup and its age, last failure, next run, totals, free disk')
    .option('--json', 'print as JSON')
    .option('--target <name>', 'the storage target to report on (default: the first); every target gets a line')
    .action(
      run('status', async (cmd, opts: { json?: boolean; target?: string }) => {
        if (opts.target !== undefined) parseTargetName(opts.target);
        const { app } = setup(cmd, 'status');
        const { getStatus } = await import('../backup/status.js');
        const s = await getStatus(app, new Date(), opts.target);
        if (opts.json) {
          printJson(s);
          return;
        }
        const rows: [string, string][] = [
          ['database', s.database],
          [
            'newest good backup',
            s.newest
              ? `${s.newest.file} (${formatBytes(s.newest.size_bytes)})${s.targets.length > 1 ? ` on ${s.newest.target}` : ''}, ${
                  s.newest.age_seconds === null
                    ? `dated ${s.newest.created_at}, IN THE FUTURE: the clock was ahead when it was taken, or is behind now`
                    : `${formatAge(s.newest.age_seconds * 1000)} old`
                }`
              : 'NONE',
          ],
          ['good backups', s.count === null ? `UNREACHABLE: ${s.error}` : `${s.count}, ${formatBytes(s.total_bytes ?? 0)} in ${s.backup_dir}`],
          [
            'last failure',
            s.last_failure
              ? `${s.last_failure.at} ${s.last_failure.code}: ${s.last_failure.message}${s.failure_streak > 0 ? ` (${s.failure_streak} in a row, not yet recovered)` : ''}`
              : 'none',
          ],
          ['next scheduled run', `${s.next_scheduled_run} (${s.schedule}, ${s.timezone})`],
          ['free disk', s.free_bytes === null ? 'unknown' : formatBytes(s.free_bytes)],
          [
            'last restore drill',
            s.last_drill
              ? `${s.last_drill.ok ? 'PASSED' : `FAILED${s.last_drill.error_code ? ` (${s.last_drill.error_code})` : ''}`} ${s.last_drill.verified_at} on ${s.last_drill.id}${s.last_drill.restore_ms === null ? '' : `, restore took ${(s.last_drill.restore_ms / 1000).toFixed(1)}s`}${s.last_drill.error ? `: ${s.last_drill.error}` : ''}`
              : 'never',
          ],
          ['running now', s.running ? `${s.running.purpose} (pid ${s.running.pid}) since ${s.running.acquired_at}` : 'nothing'],
        ];
        if (s.targets.length > 1) {
          for (const t of s.targets) {
            rows.push([
              `target ${t.name}`,
              t.error ? `UNREACHABLE: ${t.error}` : `${t.count} backups, ${formatBytes(t.total_bytes ?? 0)}, newest ${t.newest ?? 'none'} (${t.location})`,
            ]);
          }
        }
        for (const d of s.damaged) rows.push(['DAMAGED', `${d.id}: ${d.reason}`]);
        if (s.future_dated.length > 0) rows.push(['dated in the future', `${s.future_dated.join(', ')} (check the clock: timedatectl)`]);
        process.stdout.write(table(['', ''], rows) + '\n');
      }),
    );

  program
    .command('prune')
    .description('apply retention now, and remove objects that no manifest owns')
    .option('--dry-run', 'only show what would be deleted and why')
    .option('--damaged', 'also remove damaged backups (retention never deletes them)')
    .option('--trust-clock', 'apply retention even though a backup is dated after the current time (the clock was ahead when it was taken)')
    .option('--target <name>', 'only this storage target (default: every target, each with its own retention)')
    .action(
      run('prune', async (cmd, opts: { dryRun?: boolean; damaged?: boolean; trustClock?: boolean; target?: string }) => {
        if (opts.target !== undefined) parseTargetName(opts.target);
        const { app } = setup(cmd, 'prune', opts.dryRun ? [] : ['state', 'targets']);
        const { prune } = await import('../backup/prune.js');
        const results = await prune(app, { dryRun: opts.dryRun === true, target: opts.target, damaged: opts.damaged, trustClock: opts.trustClock });
        const verb = opts.dryRun ? 'would delete' : 'deleted';
        for (const { target, decisions, damaged, orphans } of results) {
          if (results.length > 1) process.stdout.write(`${target}:\n`);
          const rows = decisions.map((d) => [d.manifest.id, d.manifest.created_at, d.action === 'delete' ? verb : 'keep', d.reason]);
          for (const b of damaged) {
            rows.push([
              b.id,
              b.manifest?.created_at ?? '?',
              opts.damaged ? verb : 'keep',
              `DAMAGED (${b.damage}): never counted${opts.damaged ? '' : '; `prune --damaged` removes it'}`,
            ]);
          }
          for (const o of orphans) rows.push([o.name, '', opts.dryRun ? 'would remove' : 'removed', 'no manifest owns it']);
          process.stdout.write(table(['id', 'created (UTC)', 'action', 'why'], rows) + '\n');
          const deleted = decisions.filter((d) => d.action === 'delete').length;
          const extra = [
            damaged.length > 0 ? `${damaged.length} damaged ${opts.damaged ? (opts.dryRun ? 'would be removed' : 'removed') : 'kept (never counted)'}` : '',
            orphans.length > 0 ? `${orphans.length} object(s) without a manifest ${opts.dryRun ? 'would be removed' : 'removed'}` : '',
          ].filter(Boolean);
          process.stdout.write(`${deleted} ${verb}, ${decisions.length - deleted} kept${extra.length > 0 ? `; ${extra.join('; ')}` : ''}.\n`);
        }
      }),
    );

  program
    .command('restore')
    .description('restore a backup (default: the newest) into a new database, or with --replace make it the live one')
    .argument('[id]', 'backup id from `list`, or "latest"', 'latest')
    .option('--target-db <name>', 'restore into this new database (default <db>_restored_<time>)')
    .option('--replace', 'make the restored copy the live database; the old one is kept as <db>_before_restore_<time>')
    .option('--drop-old', 'with --replace: drop the old database after a successful switch')
    .option('--app <name>', 'with --replace: stop this pm2 app for the switch and start it again')
    .option(
      '--table <schema.table>',
      'restore only this table with its data into a side database (repeatable)',
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .option('--with-roles', 'first recreate the roles the backup saved that this server lacks')
    .option('--yes', 'do not ask for confirmation')
    .option('--target <name>', 'restore from this storage target (default: the first)')
    .option('--dry-run', 'only print the plan and the exact commands to do it by hand; changes nothing')
    .action(
      run(
        'restore',
        async (
          cmd,
          id: string,
          opts: {
            targetDb?: string;
            replace?: boolean;
            dropOld?: boolean;
            app?: string;
            table: string[];
            withRoles?: boolean;
            yes?: boolean;
            target?: string;
            dryRun?: boolean;
          },
        ) => {
          const request = {
            id: parseBackupId(id),
            targetDb: opts.targetDb === undefined ? undefined : parseDatabaseName('--target-db', opts.targetDb),
            replace: opts.replace === true,
            dropOld: opts.dropOld === true,
            appName: opts.app === undefined ? undefined : parseAppName(opts.app),
            tables: opts.table.map(parseTableName),
            withRoles: opts.withRoles === true,
            from: opts.target === undefined ? undefined : parseTargetName(opts.target),
          };
          const { app, loaded } = setup(cmd, 'restore', ['state']);
          const [{ restoreBackup }, { pm2Control }, { askYesNo, progressBar }] = await Promise.all([
            import('../restore/restore.js'),
            import('../restore/pm2.js'),
            import('./interactive.js'),
          ]);
          const appControl = opts.app ? pm2Control(app.config.pm2Bin) : undefined;
          if (opts.dryRun) {
            const { printRestoreDryRun } = await import('./dry-run.js');
            await printRestoreDryRun(app, loaded, { ...request, appControl });
            return;
          }
          const bar = progressBar('restoring');
          const report = await restoreBackup(app, {
            ...request,
            appControl,
            onProgress: bar?.update,
            confirm: async (plan) => {
              process.stderr.write(plan + '\n');
              if (opts.yes) return true;
              if (process.stdin.isTTY) return askYesNo('Proceed?');
              if (opts.replace) {
                throw new BackupError('REFUSED', 'refusing to replace the live database without confirmation', {
                  hint: 'Not on a terminal: add --yes to confirm.',
                });
              }
              return true;
            },
          }).finally(() => bar?.stop());
          const m = report.manifest;
          process.stdout.write(
            table(
              ['table', 'rows restored', 'rows at backup', ''],
              report.counts.map((c) => [c.table, c.restored, c.recorded ?? '?', c.recorded === null ? '' : c.recorded === c.restored ? 'ok' : 'DIFFERENT']),
            ) + '\n',
          );
          process.stdout.write(`Restored ${m.id} (${m.created_at}) into "${report.database}" in ${(report.durationMs / 1000).toFixed(1)}s.\n`);
          if (report.note) process.stdout.write(`Note: ${report.note}\n`);
          if (report.rolesCreated.length > 0) process.stdout.write(`Recreated roles: ${report.rolesCreated.join(', ')}.\n`);
          if (report.previous) process.stdout.write(`The previous database is kept as "${report.previous}" (drop it when you are sure).\n`);
          else if (report.previous === null) process.stdout.write('The previous database was dropped.\n');
        },
      ),
    );

  program
    .command('verify')
    .description("restore drill: check the checksum, restore into a scratch database, compare every table with the backup's record")
    .argument('[id]', 'backup id from `list`, or "latest"', 'latest')
    .option('--checksums-only', "only check every stored backup's sha256, without restoring")
    .option('--json', 'print the result as JSON')
    .option('--target <name>', 'verify the copy on this storage target (default: the first)')
    .action(
      run('verify', async (cmd, id: string, opts: { checksumsOnly?: boolean; json?: boolean; target?: string }) => {
        parseBackupId(id);
        if (opts.target !== undefined) parseTargetName(opts.target);
        const { app } = setup(cmd, 'verify', opts.checksumsOnly ? [] : ['state']);
        const { verifyBackup, verifyChecksums } = await import('../restore/verify.js');
        if (opts.checksumsOnly) {
          const results = await verifyChecksums(app, opts.target);
          if (opts.json) printJson(results);
          else
            process.stdout.write(
              table(
                ['id', 'checksum', 'problem'],
                results.map((r) => [r.id, r.ok ? 'ok' : 'BAD', r.error ?? '']),
              ) + '\n',
            );
          return results.every((r) => r.ok) ? 0 : ERROR_CODES.DAMAGED.exit;
        }
        const { manifest, verification: v, failure } = await verifyBackup(app, id, { from: opts.target });
        if (opts.json) printJson({ id: manifest.id, ...v });
        else {
          process.stdout.write(
            table(
              ['', ''],
              [
                ['backup', `${manifest.id} (${manifest.created_at})`],
                ['checksum', v.checksum_ok === null ? 'not checked' : v.checksum_ok ? 'ok' : 'BAD'],
                ['restore time', v.restore_ms === null ? '-' : `${(v.restore_ms / 1000).toFixed(1)}s into an empty database on ${v.server}`],
                ['tables / rows checked', `${v.tables_checked} / ${v.rows_checked} (${manifest.digest_mode})`],
                ['result', v.ok ? 'PASSED' : `FAILED: ${v.error ?? ''}`],
                ...(failure?.hint ? [['fix', failure.hint] as [string, string]] : []),
                ...v.mismatches.map((mm): [string, string] => [`  ${mm.table}`, mm.problem]),
              ],
            ) + '\n',
          );
        }
        if (v.ok) return 0;
        return v.error_code && v.error_code in ERROR_CODES ? ERROR_CODES[v.error_code as keyof typeof ERROR_CODES].exit : ERROR_CODES.VERIFY_FAILED.exit;
      }),
    );

  program
    .command('sync')
    .description('copy good backups missing from a storage target (e.g. after an outage) from a target that has them, checking checksums')
    .option('--json', 'print the copies as JSON')
    .action(
      run('sync', async (cmd, opts: { json?: boolean }) => {
        const { app } = setup(cmd, 'sync', ['state', 'targets']);
        const { syncTargets } = await import('../backup/sync.js');
        const copies = await syncTargets(app);
        if (opts.json) printJson(copies);
        else if (copies.length === 0)
          process.stdout.write(app.targets.length < 2 ? 'Only one storage target: nothing to sync.\n' : 'Every target has every backup it should keep.\n');
        else
          process.stdout.write(
            table(
              ['backup', 'from', 'to', 'result'],
              copies.map((c) => [c.id, c.from, c.to, c.ok ? 'copied' : `FAILED: ${c.error ?? ''}`]),
            ) + '\n',
          );
        return copies.every((c) => c.ok) ? 0 : ERROR_CODES.STORAGE.exit;
      }),
    );

  const config = program.command('config').description('configuration');
  config
    .command('check')
    .description('print the effective configuration (secrets redacted) and test database, pg_dump and SMTP')
    .action(
      run('config check', async (cmd) => {
        const { app, loaded } = setup(cmd, 'config check');
        const { preflight } = await import('../backup/preflight.js');
        process.stdout.write(
          table(
            ['variable', 'value', 'source'],
            describeConfig(loaded).map((r) => [r.variable, r.value, r.source]),
          ) + '\n',
        );
        const results = await preflight(app);
        const mark = { ok: 'ok', warn: 'WARN', fail: 'FAIL' } as const;
        process.stdout.write(
          table(
            ['check', 'result', 'detail'],
            results.map((r) => [r.check, mark[r.status], r.hint ? `${r.detail}\nfix: ${r.hint}` : r.detail]),
          ) + '\n',
        );
        return results.some((r) => r.status === 'fail') ? 2 : 0;
      }),
    );

  const alert = program.command('alert').description('email alerts');
  alert
    .command('test')
    .description('send a test alert to ALERT_EMAIL_TO')
    .action(
      run('alert test', async (cmd) => {
        const { app } = setup(cmd, 'alert test');
        const sender = smtpSender(app.config.alert);
        if (!sender)
          throw new BackupError('CONFIG', 'SMTP_HOST is not set, so no alert can be sent', {
            hint: 'Set SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD and ALERT_EMAIL_TO.',
          });
        await sender.send(composeAlert({ kind: 'test' }));
        process.stdout.write(`Test alert sent to ${app.config.alert.to.join(', ')}.\n`);
      }),
    );

  program.addOption(new Option('--no-color').hideHelp());
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      printError(asBackupError(err));
      process.exit(70);
    });
}
