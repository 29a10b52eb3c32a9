import type { Command } from 'commander';
import type { Status } from '../../backup/status';
import { formatAge, formatBytes } from '../../util/format';
import { parseOptionalTarget } from '../input';
import { printJson, printTable } from '../output';
import { run, setupEach } from '../run';

interface StatusOpts {
  json?: boolean;
  target?: string;
}

async function status(cmd: Command, opts: StatusOpts): Promise<void> {
  parseOptionalTarget(opts.target);
  const { apps } = setupEach(cmd, 'status');
  const { getStatus } = await import('../../backup/status.js');
  const now = new Date();
  if (apps.length === 1) {
    const s = await getStatus(apps[0]!, now, opts.target);
    if (opts.json) printJson(s);
    else printTable(['', ''], statusRows(s));
    return;
  }
  // several databases: one line each (`--db NAME` shows one in full)
  const all = await Promise.all(apps.map((app) => getStatus(app, now, opts.target)));
  if (opts.json) {
    printJson(all);
    return;
  }
  printTable(
    ['database', 'newest good backup', 'last failure', 'next run', 'last drill'],
    all.map((s) => [
      s.name,
      s.count === null ? `UNREACHABLE: ${s.error}` : describeNewest(s),
      s.last_failure && s.failure_streak > 0 ? `${s.last_failure.at} ${s.last_failure.code} (${s.failure_streak} in a row)` : 'none',
      `${s.next_scheduled_run} (${s.schedule})`,
      describeDrill(s),
    ]),
  );
}

function statusRows(s: Status): [string, string][] {
  const rows: [string, string][] = [
    ['database', s.name === s.database ? s.database : `${s.name} (${s.database})`],
    ['newest good backup', describeNewest(s)],
    ['good backups', s.count === null ? `UNREACHABLE: ${s.error}` : `${s.count}, ${formatBytes(s.total_bytes ?? 0)} in ${s.backup_dir}`],
    [
      'last failure',
      s.last_failure
        ? `${s.last_failure.at} ${s.last_failure.code}: ${s.last_failure.message}${s.failure_streak > 0 ? ` (${s.failure_streak} in a row, not yet recovered)` : ''}`
        : 'none',
    ],
    ['next scheduled run', `${s.next_scheduled_run} (${s.schedule}, ${s.timezone})`],
    ['free disk', s.free_bytes === null ? 'unknown' : formatBytes(s.free_bytes)],
    ['last restore drill', describeDrill(s)],
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
  return rows;
}

function describeNewest({ newest, targets }: Status): string {
  if (!newest) return 'NONE';
  const age =
    newest.age_seconds === null
      ? `dated ${newest.created_at}, IN THE FUTURE: the clock was ahead when it was taken, or is behind now`
      : `${formatAge(newest.age_seconds * 1000)} old`;
  return `${newest.file} (${formatBytes(newest.size_bytes)})${targets.length > 1 ? ` on ${newest.target}` : ''}, ${age}`;
}

function describeDrill({ last_drill: d }: Status): string {
  if (!d) return 'never';
  if (d.content) return `checksum ${d.ok ? 'ok' : 'BAD'} ${d.verified_at} on ${d.id}; content ${d.content}`;
  const result = d.ok ? 'PASSED' : `FAILED${d.error_code ? ` (${d.error_code})` : ''}`;
  return `${result} ${d.verified_at} on ${d.id}${d.restore_ms === null ? '' : `, restore took ${(d.restore_ms / 1000).toFixed(1)}s`}${d.error ? `: ${d.error}` : ''}`;
}

/** `status`: the newest good backup, the last failure and drill, the next run, per-target totals. */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('newest good backup and its age, last failure, next run, totals, free disk')
    .option('--json', 'print as JSON')
    .option('--target <name>', 'the storage target to report on (default: the first); every target gets a line')
    .action(run('status', status));
}
