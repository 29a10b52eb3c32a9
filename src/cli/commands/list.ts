import type { Command } from 'commander';
import type { DrillRecord } from '../../backup/drill-records';
import type { Manifest } from '../../repository/manifest';
import type { ListedBackup } from '../../repository/repository';
import type { SizeAnomaly } from '../../repository/size-history';
import type { StoredObject, TemporaryObject } from '../../storage/types';
import { formatAge, formatBytes, printable, wrapText } from '../../util/format';
import { parseOptionalTarget } from '../input';
import { printJson, printTable, tableWidth } from '../output';
import { run, setup } from '../run';

interface ListOpts {
  json?: boolean;
  all?: boolean;
  target?: string;
  deleted?: boolean;
  base?: boolean;
}

async function list(cmd: Command, opts: ListOpts): Promise<void> {
  parseOptionalTarget(opts.target);
  const { app } = await setup(cmd, 'list');
  if (opts.base) {
    const { printBase } = await import('./list-base.js');
    return printBase(app, opts);
  }
  if (opts.deleted) {
    const { printDeleted } = await import('./list-deleted.js');
    return printDeleted(app, opts);
  }
  const [{ listRows, retentionOf, anomaliesOf }, { isFutureDated }, { drillsByBackup }] = await Promise.all([
    import('../../backup/listing.js'),
    import('../../repository/manifest.js'),
    import('../../backup/drill-records.js'),
  ]);
  if (opts.json) {
    printJson(await listRows(app, opts));
    return;
  }
  const target = app.target(opts.target);
  const repo = target.repo;
  const { backups, orphans } = await repo.scan(app.database.db.database);
  const temporaries = opts.all ? await repo.temporaries(app.database.db.database) : [];
  const now = new Date();
  const retention = retentionOf(backups, target.retention, now, app.config.timezone);
  const orphanNote = `${orphans.length} object(s) belong to no manifest (\`list --all\` shows them; the next backup or prune removes them).\n`;
  if (backups.length === 0 && !(opts.all && orphans.length + temporaries.length > 0)) {
    process.stdout.write(`No backups of ${app.database.db.database} in ${repo.location} yet.\n`);
    if (orphans.length > 0) process.stdout.write(orphanNote);
    return;
  }
  const anomalies = anomaliesOf(backups, app.config.monitor.sizeAlertRatio);
  const drills = app.targets.length > 1 ? await drillsByBackup(app, target.name, backups) : undefined;
  const rows = backups.map((b) => tableRow(b, now, retention.get(b.id), isFutureDated, anomalies.get(b.id), drills?.get(b.id)));
  if (opts.all) for (const o of orphans) rows.push(orphanRow(o));
  for (const t of temporaries) rows.push(temporaryRow(t));
  // to fit: the retention rules wrap onto more lines, the label is cut (one line), the last drill wraps last
  const width = tableWidth();
  const shrink = [
    { column: 5, floor: 16 },
    { column: 4, floor: 10, cut: true },
    { column: 7, floor: 19 },
  ];
  printTable(['id', 'age', 'size', 'format', 'label', 'retention', 'state', 'verified'], rows, { width, shrink });
  const notes = backups.filter((b) => b.damage !== undefined).map((b) => `${b.id} DAMAGED: ${b.damage!}`);
  if (anomalies.size > 0) notes.push(sizeLegend(app.config.monitor.sizeAlertRatio));
  if (opts.all && orphans.length > 0) notes.push('ORPHAN: an object no manifest owns (left by a crash; the next backup or prune removes it)');
  for (const t of temporaries) notes.push(`${t.name} TEMPORARY: ${t.inUse ? 'being written' : 'left by a crash'}`);
  for (const note of notes) process.stdout.write(wrapText(printable(note.replace(/\s+/g, ' '), Infinity), width, '    ').join('\n') + '\n');
  if (!opts.all && orphans.length > 0) process.stdout.write(orphanNote);
  if (temporaries.some((t) => !t.inUse)) process.stdout.write('Temporary objects left by a crash: the next backup, sync, reencrypt or prune removes them.\n');
}

/** A backup's row: its id, age (IN THE FUTURE when dated ahead of now), size, … state (why a damaged one is, under the table), last drill. */
function tableRow(
  { id, manifest: m, damage, storedSize }: ListedBackup,
  now: Date,
  retention: string | undefined,
  isFutureDated: (m: Manifest, now: Date) => boolean,
  anomaly: SizeAnomaly | undefined,
  drills: DrillRecord[] | undefined,
): string[] {
  if (!m) return [id, '?', storedSize === undefined ? '' : formatBytes(storedSize), '', '', 'never counted', 'DAMAGED', ''];
  return [
    id,
    isFutureDated(m, now) ? '(IN THE FUTURE)' : formatAge(now.getTime() - Date.parse(m.created_at)),
    `${formatBytes(m.size_bytes)}${anomaly ? ` ${SIZE_MARK[anomaly.kind]}` : ''}`,
    m.format,
    printable(m.label ?? '', 40),
    retention ?? (damage === undefined ? '' : 'never counted'),
    damage === undefined ? 'ok' : 'DAMAGED',
    drills ? drilledOn(drills) : m.verification ? drillText(m.verification) : 'never',
  ];
}

function drillText(v: { content?: string | null | undefined; ok: boolean; verified_at: string }): string {
  return `${v.content ? (v.ok ? 'checksum only' : 'BAD checksum') : v.ok ? 'ok' : 'FAILED'} ${v.verified_at.slice(0, 16).replace('T', ' ')}`;
}

/** With several targets: each target's drill of the backup, named ("ok 2026-12-06 04:00 on s3"). */
function drilledOn(drills: DrillRecord[]): string {
  return drills.length === 0 ? 'never' : drills.map((d) => `${drillText(d)} on ${d.target}`).join(', ');
}

/** The size column's mark of a backup far below or above the usual size. */
const SIZE_MARK = { small: '(!small)', large: '(!large)' } as const;

function sizeLegend(ratio: number): string {
  return `(!small), (!large): below ${ratio} or above ${Math.round((1 / ratio) * 100) / 100} times the median size of the good backups before it (BACKUP_SIZE_ALERT_RATIO): kept; check that no table was emptied, or what grew.`;
}

function orphanRow(o: StoredObject): string[] {
  return [o.name, '', formatBytes(o.size), '', '', '', 'ORPHAN', ''];
}

function temporaryRow(t: TemporaryObject): string[] {
  return [t.name, '', t.size === undefined ? '' : formatBytes(t.size), '', '', '', 'TEMPORARY', ''];
}

/** `list`: the backups on one target, newest first, as a table or as JSON. */
export function registerList(program: Command): void {
  program
    .command('list')
    .description('list backups, newest first (in the order they were taken)')
    .option('--json', 'print the manifests as a JSON array')
    .option('--all', 'also list objects that no manifest owns and temporary objects (left by a crash; the next backup or prune removes them)')
    .option('--target <name>', 'list the backups on this storage target (default: the first)')
    .option(
      '--deleted',
      'list the backups deleted on this S3 target whose older versions its bucket keeps (versioning): restore, verify and sync --deleted can read them',
    )
    .option('--base', 'list the base backups for point-in-time recovery instead (on every target, or the one --target names), with their WAL range')
    .action(run('list', list));
}
