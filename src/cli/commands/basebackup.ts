import type { Command } from 'commander';
import type { BaseBackupResult } from '../../pitr/base-backup';
import { formatBytes } from '../../util/format';
import { printJson, printWarning } from '../output';
import { run, setup } from '../run';

async function basebackup(cmd: Command, opts: { json?: boolean }): Promise<void> {
  const { app } = await setup(cmd, 'basebackup', ['log', 'state', 'targets']);
  // pg_basebackup is looked up (pg_dump --version) while the base backup's modules load
  app.binaries().catch(() => undefined);
  const { performBaseBackup } = await import('../../pitr/base-job.js');
  const result = await performBaseBackup(app, { signal: app.signal });
  if (opts.json) printJson(jsonOf(result));
  else printResult(result);
  // good on at least one target: exit 0; the others are warned about here and alerted
  for (const f of result.failedTargets) printWarning(`not stored on ${f.name}: ${f.error.message}`);
}

function jsonOf(r: BaseBackupResult): object {
  const m = r.manifest;
  return {
    id: m.id,
    file: m.file,
    size_bytes: m.size_bytes,
    source_bytes: m.source_bytes,
    duration_ms: m.duration_ms,
    stream_ms: r.streamMs,
    wal_wait_ms: r.walWaitMs,
    start_lsn: m.start_lsn,
    stop_lsn: m.stop_lsn,
    timeline: m.timeline,
    wal_first: m.wal_first,
    wal_last: m.wal_last,
    compression: m.compression,
    encrypted: m.encryption !== null,
    stored: r.stored,
    failed: r.failedTargets.map((f) => ({ target: f.name, code: f.error.code, error: f.error.message })),
    manifest: m,
  };
}

function printResult(r: BaseBackupResult): void {
  const m = r.manifest;
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const out = [
    `Base backup completed: ${m.id} (${formatBytes(m.size_bytes)} stored, ${formatBytes(m.source_bytes)} of data; ${m.compression}${m.encryption ? ', encrypted' : ''}; sha256 ${m.sha256.slice(0, 12)}…)`,
    `Took ${secs(m.duration_ms)}: pg_basebackup ${secs(r.streamMs)}, then ${secs(r.walWaitMs)} until its WAL was archived.`,
    `WAL from ${m.start_lsn} to ${m.stop_lsn} on timeline ${m.timeline}: ${m.wal_first === m.wal_last ? m.wal_first : `${m.wal_first} to ${m.wal_last}`}, archived.`,
    `Stored on: ${r.stored.join(', ')}.`,
  ];
  process.stdout.write(out.join('\n') + '\n');
}

/** `basebackup`: a base backup for point-in-time recovery now; exits 0 only when it is stored and its WAL archived on a target. */
export function registerBaseBackup(program: Command): void {
  program
    .command('basebackup')
    .description(
      'take a base backup for point-in-time recovery now (pg_basebackup through the pipeline to every target); exits 0 once it is stored and the WAL from its start to its stop is archived',
    )
    .option('--json', 'print the result as JSON')
    .action(run('basebackup', basebackup));
}
