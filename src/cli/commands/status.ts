import type { Command } from 'commander';
import type { Leftovers } from '../../backup/leftovers';
import type { Status, TargetStatus } from '../../backup/status';
import { formatAge, formatBytes } from '../../util/format';
import { parseOptionalTarget } from '../input';
import { printJson, printTable } from '../output';
import type { ArchivingStatus } from '../../pitr/archiving';
import type { PitrWindowStatus } from '../../pitr/window-status';
import type { PitrDrillRecord } from '../../pitr/drill-record';
import { run, setupEach } from '../run';

interface StatusOpts {
  json?: boolean;
  target?: string;
}

async function status(cmd: Command, opts: StatusOpts): Promise<void> {
  parseOptionalTarget(opts.target);
  const { apps } = await setupEach(cmd, 'status');
  const { getStatus } = await import('../../backup/status.js');
  const { archivingShown } = await import('../../pitr/archived-entries.js');
  const shown = archivingShown(apps);
  const now = new Date();
  if (apps.length === 1) {
    const s = await getStatus(apps[0]!, now, opts.target, { archiving: shown.includes(apps[0]!) });
    if (opts.json) printJson(s);
    else printTable(['', ''], statusRows(s));
    return;
  }
  // several databases: one line each (`--db NAME` shows one in full)
  const all = await Promise.all(apps.map((app) => getStatus(app, now, opts.target, { archiving: shown.includes(app) })));
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
      describeDrill(s.last_drill),
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
    ['last restore drill', describeDrill(s.last_drill)],
    ['running now', s.running ? `${s.running.purpose} (pid ${s.running.pid}) since ${s.running.acquired_at}` : 'nothing'],
  ];
  if (s.targets.length > 1) {
    for (const t of s.targets) {
      const listed = t.error
        ? `UNREACHABLE: ${t.error}`
        : `${t.count} backups, ${formatBytes(t.total_bytes ?? 0)}, newest ${t.newest ?? 'none'} (${t.location})`;
      rows.push([`target ${t.name}`, [listed, `last drill: ${describeDrill(t.last_drill)}`, describeProtection(t)].join('\n')]);
    }
  } else if (s.targets[0]) rows.push(['protection', describeProtection(s.targets[0])]);
  for (const w of s.recovery_window) rows.push([`recovery window${s.targets.length > 1 ? ` (${w.target})` : ''}`, describeWindow(w)]);
  if (s.archiving) rows.push(['WAL archiving', describeArchiving(s.archiving)]);
  if (s.last_pitr_drill) rows.push(['last PITR drill', describePitrDrill(s.last_pitr_drill)]);
  for (const d of s.damaged) rows.push(['DAMAGED', `${d.id}: ${d.reason}`]);
  rows.push(...leftoverRows(s.leftovers));
  if (s.future_dated.length > 0) rows.push(['dated in the future', `${s.future_dated.join(', ')} (check the clock: timedatectl)`]);
  return rows;
}

/** The status lines of what is left, each naming what removes it. */
function leftoverRows(l: Leftovers): [string, string][] {
  const rows: [string, string][] = [];
  // each on lines of its own: what and where, what removes it, how to remove it by hand
  const add = (pid: number | null, lines: string[]) => rows.push([pid === null ? 'LEFT BEHIND' : 'in use now', lines.join('\n')]);
  const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
  for (const d of l.temp_dirs) {
    const what = `${d.path} (${formatBytes(d.bytes)})`;
    const by = d.command === 'verify' ? 'drill' : (d.command ?? 'restore or drill');
    if (d.in_use_by_pid !== null) add(d.in_use_by_pid, [what, `the temporary directory of a running ${by} (pid ${d.in_use_by_pid})`]);
    else add(null, [what, `a killed ${by}'s copy (maybe decrypted); the next restore, drill or daemon start removes it`, `by hand: rm -rf ${d.path}`]);
  }
  for (const o of l.temporary_objects) {
    const what = `${o.name} on ${o.target}${o.size_bytes === null ? '' : ` (${formatBytes(o.size_bytes)})`}`;
    if (o.in_use) rows.push(['temporary', `${what}\nbeing written now, or left (a backup, sync or reencrypt holds the lock)`]);
    else add(null, [what, 'left by a killed backup, sync or reencrypt; removed by the next one, a prune or daemon start']);
  }
  for (const u of l.unfinished_restores) {
    const what = `database ${ident(u.database)} on ${u.server}`;
    if (u.in_use_by_pid !== null) add(u.in_use_by_pid, [what, `being restored (pid ${u.in_use_by_pid}, since ${u.since})`]);
    else
      add(null, [
        what,
        `half-restored (restore killed ${u.since.slice(0, 16).replace('T', ' ')}); the next restore or daemon start drops it`,
        `by hand: DROP DATABASE ${ident(u.database)} WITH (FORCE);`,
      ]);
  }
  for (const d of l.scratch_databases) {
    const what = `database ${ident(d.database)} on ${d.server}`;
    if (d.in_use_by_pid !== null) add(d.in_use_by_pid, [what, `a running drill's scratch database (pid ${d.in_use_by_pid})`]);
    else
      add(null, [
        what,
        "a killed drill's scratch database; the next drill or daemon start drops it",
        `by hand: DROP DATABASE ${ident(d.database)} WITH (FORCE);`,
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
  const a = newest.size_anomaly;
  const unusual = a
    ? `; UNUSUAL SIZE: ${a.ratio < 0.01 ? 'under 0.01' : a.ratio.toFixed(2)} times the median (${formatBytes(a.median_bytes)}) of the backups before it (kept; ${a.kind === 'small' ? 'was a table emptied?' : 'what grew?'})`
    : '';
  return `${newest.file} (${formatBytes(newest.size_bytes)})${targets.length > 1 ? ` on ${newest.target}` : ''}, ${age}${unusual}`;
}

/** Whether a target's copies are encrypted and immutable: what README's scenario 4 needs of one. */
function describeProtection(t: TargetStatus): string {
  const encrypted = t.encrypted === null ? 'unknown (no backup)' : t.encrypted ? 'yes' : 'no';
  const immutable =
    t.immutable === 'none'
      ? 'no (no object_lock)'
      : t.immutable === 'compliance'
        ? 'yes (Object Lock, compliance)'
        : 'governance (Object Lock; a key with s3:BypassGovernanceRetention still deletes: `config check` tells)';
  const answer = t.encrypted && t.immutable === 'compliance' ? '; a stolen server can neither read nor delete them (README scenario 4)' : '';
  return `encrypted: ${encrypted}, immutable: ${immutable}${answer}`;
}

function describeDrill(d: Status['last_drill']): string {
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

/** One line: "2026-01-22T03:00:05Z → 2026-01-22T14:31:02Z (2 base backups, 412 WAL files)". */
function describePitrDrill(d: PitrDrillRecord): string {
  const what = `${d.verified_at}, base backup ${d.base_backup ?? '-'} on ${d.target}`;
  if (!d.ok) return `${what}: FAILED (${d.error_code}): ${d.error}`;
  const exact = d.exact ? 'exact' : `${d.mismatches.length} table(s) changed in between, not counted`;
  return `${what}: passed, recovered to ${d.restore_point} in ${((d.recovery_ms ?? 0) / 1000).toFixed(1)}s, ${d.tables_checked} tables / ${d.rows_checked} rows compared (${exact})`;
}

export function describeWindow(w: PitrWindowStatus): string {
  if (w.error) return `UNREACHABLE: ${w.error}`;
  const span = w.earliest && w.latest ? `${w.earliest} → ${w.latest}` : 'nothing recoverable yet (no base backup with its WAL)';
  const gaps = w.gaps.length > 0 ? `; GAPS: ${w.gaps.map((g) => (g.from === g.to ? g.from : `${g.from}..${g.to}`)).join(', ')}` : '';
  return `${span} (${w.base_backups} base backups, ${w.wal_files} WAL files)${gaps}`;
}

/** The receiver, the last file archived, the spool's queue, the slot and the lag, one per line. */
export function describeArchiving(a: ArchivingStatus): string {
  const r = a.receiver;
  const receiver = !r.running
    ? 'receiver: NOT RUNNING (the daemon with WAL_RECEIVE=on, or wal-receive)'
    : `receiver: pid ${r.pid}, ${r.streaming ? 'streaming' : 'NOT STREAMING'}${r.stream_error ? ` (${r.failures_in_a_row} failure(s) in a row: ${r.stream_error.message})` : ''}`;
  const last = a.last_archived ? `last archived: ${a.last_archived.wal}${a.last_archived.at ? ` at ${a.last_archived.at}` : ''}` : 'last archived: nothing yet';
  const queue = `spool: ${a.queue.files} file(s) waiting, ${formatBytes(a.queue.bytes)}${a.queue.files > 0 ? `, the oldest ${formatAge(a.queue.oldest_seconds * 1000)}` : ''}${r.last_push_error ? `; pushes fail: ${r.last_push_error.message}` : ''}`;
  const slot = a.server
    ? a.server.slot
      ? `slot ${a.slot}: ${formatBytes(a.server.slot.retained_bytes)} kept by the server, wal_status ${a.server.slot.wal_status ?? 'unknown'}${a.server.slot.active ? '' : ', inactive'}`
      : `slot ${a.slot}: none on the server`
    : `server: UNREACHABLE: ${a.server_error}`;
  const lag =
    a.lag_seconds === null
      ? 'behind: unknown'
      : a.lag_seconds === 0 && !a.behind_segments
        ? `behind: no (the server writes in ${a.server?.current_wal ?? '?'})`
        : `BEHIND: ${a.behind_segments ?? '?'} segment(s), the oldest waiting ${formatAge(a.lag_seconds * 1000)}`;
  return [receiver, last, queue, slot, lag].join('\n');
}
