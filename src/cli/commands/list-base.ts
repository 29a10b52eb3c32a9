import type { App } from '../../app';
import type { ListedBase } from '../../pitr/base-listing';
import type { StoredObject } from '../../storage/types';
import { formatBytes, printable } from '../../util/format';
import { printJson, printTable } from '../output';

interface Row {
  target: string;
  id: string;
  state: 'ok' | 'DAMAGED' | 'UNFINISHED';
  damage?: string;
  /** UNFINISHED only: a base backup holds the lock now (it is being written), else a crash left it. */
  in_progress?: boolean;
  file?: string;
  start_time?: string;
  stop_time?: string;
  start_lsn?: string;
  stop_lsn?: string;
  timeline?: number;
  wal_first?: string;
  wal_last?: string;
  size_bytes?: number;
  source_bytes?: number;
  compression?: string;
  encrypted?: boolean;
}

function recordRow(b: ListedBase): Row {
  const m = b.manifest;
  const row: Row = { target: b.target, id: b.id, state: b.damage ? 'DAMAGED' : 'ok', ...(b.damage ? { damage: b.damage } : {}) };
  if (!m) return row;
  return {
    ...row,
    file: m.file,
    start_time: m.start_time,
    stop_time: m.stop_time,
    start_lsn: m.start_lsn,
    stop_lsn: m.stop_lsn,
    timeline: m.timeline,
    wal_first: m.wal_first,
    wal_last: m.wal_last,
    size_bytes: m.size_bytes,
    source_bytes: m.source_bytes,
    compression: m.compression,
    encrypted: m.encryption !== null,
  };
}

function unfinishedRow(target: string, o: StoredObject, inProgress: boolean): Row {
  return { target, id: o.name.replace(/\.tar.*$/, ''), state: 'UNFINISHED', in_progress: inProgress, file: o.name, size_bytes: o.size };
}

const when = (iso: string | undefined) => (iso ? iso.slice(0, 19).replace('T', ' ') : '');

/** `list --base`: the base backups on each target (or the one `--target` names), newest first; unfinished data after them. */
export async function printBase(app: App, opts: { json?: boolean; target?: string }): Promise<void> {
  const [{ listBaseBackups }, { baseLockFile }, { lockHolder }] = await Promise.all([
    import('../../pitr/base-listing.js'),
    import('../../pitr/base-backup.js'),
    import('../../lock/file-lock.js'),
  ]);
  const targets = opts.target === undefined ? app.targets : [app.target(opts.target)];
  const running = lockHolder(baseLockFile(app)) !== undefined;
  const rows: Row[] = [];
  for (const t of targets) {
    const { backups, unfinished } = await listBaseBackups(t);
    rows.push(...backups.map(recordRow), ...unfinished.map((o) => unfinishedRow(t.name, o, running)));
  }
  if (opts.json) return printJson(rows);
  if (rows.length === 0) {
    process.stdout.write(
      `No base backups of ${app.database.name} on ${targets.map((t) => t.name).join(', ')} yet (\`basement-backup basebackup\` takes one).\n`,
    );
    return;
  }
  printTable(
    ['id', 'target', 'started', 'ended', 'start LSN', 'stop LSN', 'timeline', 'size', 'compression', 'state'],
    rows.map((r) => [
      r.id,
      r.target,
      when(r.start_time),
      when(r.stop_time),
      r.start_lsn ?? '',
      r.stop_lsn ?? '',
      r.timeline ?? '',
      r.size_bytes === undefined ? '' : formatBytes(r.size_bytes),
      r.compression === undefined ? '' : `${r.compression}${r.encrypted ? ' + age' : ''}`,
      r.state,
    ]),
  );
  for (const r of rows) {
    if (r.damage) process.stdout.write(`${r.id} on ${r.target} DAMAGED: ${printable(r.damage, 200)}\n`);
    if (r.state === 'UNFINISHED') {
      const why = r.in_progress ? 'being written (a base backup is running)' : 'left by an interrupted base backup: the next basebackup removes it';
      process.stdout.write(`${r.file} on ${r.target} UNFINISHED: ${why}\n`);
    }
  }
}
