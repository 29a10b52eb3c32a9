import type { Command } from 'commander';
import { isFutureDated } from '../../storage/manifest';
import { listRows, retentionOf } from '../../backup/listing';
import type { ListedBackup } from '../../storage/repository';
import type { StoredObject, TemporaryObject } from '../../storage/types';
import { formatAge, formatBytes, printable } from '../../util/format';
import { parseOptionalTarget } from '../input';
import { printJson, printTable } from '../output';
import { run, setup } from '../run';

interface ListOpts {
  json?: boolean;
  all?: boolean;
  target?: string;
}

async function list(cmd: Command, opts: ListOpts): Promise<void> {
  parseOptionalTarget(opts.target);
  const { app } = setup(cmd, 'list');
  if (opts.json) {
    printJson(await listRows(app, opts));
    return;
  }
  const target = app.target(opts.target);
  const repo = target.repo;
  const { backups, orphans } = await repo.scan(app.config.db.database);
  const temporaries = opts.all ? await repo.temporaries(app.config.db.database) : [];
  const now = new Date();
  const retention = retentionOf(backups, target.retention, now, app.config.timezone);
  const orphanNote = `${orphans.length} object(s) belong to no manifest (\`list --all\` shows them; the next backup or prune removes them).\n`;
  if (backups.length === 0 && !(opts.all && orphans.length + temporaries.length > 0)) {
    process.stdout.write(`No backups of ${app.config.db.database} in ${repo.location} yet.\n`);
    if (orphans.length > 0) process.stdout.write(orphanNote);
    return;
  }
  const rows = backups.map((b) => tableRow(b, now, retention.get(b.id)));
  if (opts.all) for (const o of orphans) rows.push(orphanRow(o));
  for (const t of temporaries) rows.push(temporaryRow(t));
  printTable(['id', 'created (UTC)', 'age', 'size', 'format', 'label', 'retention', 'state', 'verified'], rows);
  if (!opts.all && orphans.length > 0) process.stdout.write(orphanNote);
  if (temporaries.some((t) => !t.inUse)) process.stdout.write('Temporary objects left by a crash: the next backup, sync, reencrypt or prune removes them.\n');
}

function tableRow({ id, manifest: m, damage, storedSize }: ListedBackup, now: Date, retention: string | undefined): string[] {
  if (!m) return [id, '?', '', storedSize === undefined ? '' : formatBytes(storedSize), '', '', '', `DAMAGED: ${damage}`, ''];
  return [
    id,
    m.created_at.replace('T', ' ').replace(/\.\d+Z$/, '') + (isFutureDated(m, now) ? ' (IN THE FUTURE)' : ''),
    formatAge(now.getTime() - Date.parse(m.created_at)),
    formatBytes(m.size_bytes),
    m.format,
    printable(m.label ?? '', 40),
    retention ?? (damage === undefined ? '' : 'never counted, never deleted'),
    damage === undefined ? 'ok' : `DAMAGED: ${damage}`,
    m.verification
      ? `${m.verification.content ? (m.verification.ok ? 'checksum only' : 'BAD checksum') : m.verification.ok ? 'ok' : 'FAILED'} ${m.verification.verified_at.slice(0, 16).replace('T', ' ')}`
      : 'never',
  ];
}

function orphanRow(o: StoredObject): string[] {
  return [o.name, '', '', formatBytes(o.size), '', '', '', 'ORPHAN: no manifest', ''];
}

function temporaryRow(t: TemporaryObject): string[] {
  return [t.name, '', '', t.size === undefined ? '' : formatBytes(t.size), '', '', '', t.inUse ? 'TEMPORARY: being written' : 'TEMPORARY: left by a crash', ''];
}

/** `list`: the backups on one target, newest first, as a table or as JSON. */
export function registerList(program: Command): void {
  program
    .command('list')
    .description('list backups, newest first (in the order they were taken)')
    .option('--json', 'print the manifests as a JSON array')
    .option('--all', 'also list objects that no manifest owns and temporary objects (left by a crash; the next backup or prune removes them)')
    .option('--target <name>', 'list the backups on this storage target (default: the first)')
    .action(run('list', list));
}
