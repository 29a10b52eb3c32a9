import type { Command } from 'commander';
import type { BaseBackupResult } from '../../pitr/base-backup';
import { formatBytes } from '../../util/format';
import { printJson, printWarning } from '../output';
import { run, setup, stopSignal } from '../run';

async function basebackup(cmd: Command, opts: { json?: boolean; daemon: boolean }): Promise<void> {
  // the running daemon takes it when it can (its programs and connections are loaded); else this process
  const asked = opts.daemon ? await (await import('../handoff.js')).baseBackupByDaemon(cmd, stopSignal()) : { why: undefined };
  const handed = 'result' in asked ? asked : undefined;
  let result: BaseBackupResult;
  if (handed) result = handed.result;
  else {
    const { app } = await setup(cmd, 'basebackup', ['log', 'state', 'targets']);
    // pg_basebackup is looked up (pg_dump --version) while the base backup's modules load
    app.binaries().catch(() => undefined);
    const { performBaseBackup } = await import('../../pitr/base-job.js');
    try {
      result = await performBaseBackup(app, { signal: app.signal });
    } finally {
      // logged afterwards: loading the logger before pg_basebackup starts would delay it
      if ('why' in asked && asked.why) {
        const { log } = await import('../../logger.js');
        log[asked.warn ? 'warn' : 'info'](`the daemon did not take this base backup (${asked.why}): it was taken by this command`);
      }
    }
  }
  if (opts.json) printJson(jsonOf(result, handed?.daemonPid));
  else printResult(result, handed?.daemonPid);
  // good on at least one target: exit 0; the others are warned about here and alerted
  for (const f of result.failedTargets) printWarning(`not stored on ${f.name}: ${f.error.message}`);
}

function jsonOf(r: BaseBackupResult, daemonPid: number | undefined): object {
  const m = r.manifest;
  return {
    id: m.id,
    taken_by: daemonPid === undefined ? 'this command' : 'daemon',
    daemon_pid: daemonPid ?? null,
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

function printResult(r: BaseBackupResult, daemonPid: number | undefined): void {
  const m = r.manifest;
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const out = [
    `Base backup completed: ${m.id} (${formatBytes(m.size_bytes)} stored, ${formatBytes(m.source_bytes)} of data; ${m.compression}${m.encryption ? ', encrypted' : ''}; sha256 ${m.sha256.slice(0, 12)}…)`,
    `Took ${secs(m.duration_ms)}: pg_basebackup ${secs(r.streamMs)}, then ${secs(r.walWaitMs)} until its WAL was archived.`,
    `WAL from ${m.start_lsn} to ${m.stop_lsn} on timeline ${m.timeline}: ${m.wal_first === m.wal_last ? m.wal_first : `${m.wal_first} to ${m.wal_last}`}, archived.`,
    `Stored on: ${r.stored.join(', ')}.`,
  ];
  if (daemonPid !== undefined) out.push(`Taken by the daemon (pid ${daemonPid}); its log has its lines (pm2 logs).`);
  process.stdout.write(out.join('\n') + '\n');
}

/** `basebackup`: a base backup for point-in-time recovery now; exits 0 only when it is stored and its WAL archived on a target. */
export function registerBaseBackup(program: Command): void {
  program
    .command('basebackup')
    .description(
      'take a base backup for point-in-time recovery now (pg_basebackup through the pipeline to every target; the running daemon takes it when it has the same configuration); exits 0 once it is stored and the WAL from its start to its stop is archived',
    )
    .option('--json', 'print the result as JSON')
    .option('--no-daemon', 'take it in this process even when the daemon runs (by default the running daemon takes it)')
    .action(run('basebackup', basebackup));
}
