import type { Command } from 'commander';
import type { Leftovers } from '../../backup/leftovers';
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
  for (const s of all) {
    const n = leftoverCount(s.leftovers);
    if (n > 0) process.stdout.write(`${s.name}: ${n} thing(s) left behind by killed runs: \`basement-backup --db ${s.name} status\` names them.\n`);
  }
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
  rows.push(...leftoverRows(s.leftovers));
  if (s.future_dated.length > 0) rows.push(['dated in the future', `${s.future_dated.join(', ')} (check the clock: timedatectl)`]);
  return rows;
}

/** The status lines of what is left, each naming what removes it. */
function leftoverRows(l: Leftovers): [string, string][] {
  const rows: [string, string][] = [];
  const left = (pid: number | null) => (pid === null ? 'LEFT BEHIND' : 'in use now');
  for (const d of l.temp_dirs) {
    const what = `${d.path} (${formatBytes(d.bytes)}): temporary directory of ${d.command ?? 'a restore or drill'}`;
    rows.push([
      left(d.in_use_by_pid),
      d.in_use_by_pid === null
        ? `${what}, left by a killed run (it may hold a decrypted copy); the next restore, drill or daemon start removes it, or: rm -rf ${d.path}`
        : `${what} (pid ${d.in_use_by_pid})`,
    ]);
  }
  for (const o of l.temporary_objects) {
    const what = `${o.name} on ${o.target}${o.size_bytes === null ? '' : ` (${formatBytes(o.size_bytes)})`}`;
    rows.push([
      o.in_use ? 'temporary' : 'LEFT BEHIND',
      o.in_use
        ? `${what}: being written now, or left (a backup, sync or reencrypt holds the lock)`
        : `${what}: left by an interrupted backup, sync or reencrypt; the next one, a prune or the daemon's start removes it`,
    ]);
  }
  for (const u of l.unfinished_restores) {
    rows.push([
      left(u.in_use_by_pid),
      u.in_use_by_pid === null
        ? `database "${u.database}" on ${u.server}: left half-restored by a killed restore (since ${u.since}); the next restore or the daemon's start drops it, or: DROP DATABASE "${u.database}" WITH (FORCE)`
        : `database "${u.database}" on ${u.server}: being restored (pid ${u.in_use_by_pid}, since ${u.since})`,
    ]);
  }
  for (const s of l.scratch_databases) {
    rows.push([
      left(s.in_use_by_pid),
      s.in_use_by_pid === null
        ? `database "${s.database}" on ${s.server}: scratch database of a killed drill; the next drill or the daemon's start drops it, or: DROP DATABASE "${s.database}" WITH (FORCE)`
        : `database "${s.database}" on ${s.server}: a drill's scratch database (pid ${s.in_use_by_pid})`,
    ]);
  }
  for (const u of l.unchecked) rows.push(['leftovers unchecked', u]);
  return rows;
}

/** How many things interrupted runs left (not those in use). */
function leftoverCount(l: Leftovers): number {
  return (
    l.temp_dirs.filter((d) => d.in_use_by_pid === null).length +
    l.temporary_objects.filter((o) => !o.in_use).length +
    l.unfinished_restores.filter((u) => u.in_use_by_pid === null).length +
    l.scratch_databases.filter((s) => s.in_use_by_pid === null).length
  );
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
