/**
 * Starts a recovered cluster and watches its log until recovery has reached its target and the
 * server promoted, or until it failed (then says why, from the log): the point reached, and how
 * long it took.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App } from '../app';
import { BackupError } from '../errors';
import type { PgBinaries } from '../pg/binaries';
import { outputOf, runProgram } from '../pg/program';
import { shellQuote } from '../restore/by-hand';
import { describeTarget, type RecoveryTarget } from './recovery-plan';

/** Where recovery stopped, from the server's log. */
export interface Reached {
  /** The time of the last transaction replayed (else of the record recovery stopped at). */
  time: string | undefined;
  /** Where redo ended. */
  lsn: string | undefined;
  /** The new timeline the promoted server writes on. */
  timeline: number | undefined;
  /** The server's own line about the stop, e.g. "recovery stopping before commit of transaction 745, time …". */
  stop: string | undefined;
}

const POLL_MS = 250;
/** A server with no postmaster.pid this long after pg_ctl started it has exited (it writes the file at once). */
const GONE_AFTER_MS = 5000;

/** What the server's log says so far of where recovery stopped. */
export function reachedFrom(logText: string): Reached {
  const stop = /LOG:\s+(recovery stopping [^\n]*)/.exec(logText)?.[1];
  const stopTime = stop ? /time (\d{4}-\d\d-\d\d [\d:.]+[+-]\d\d(?::\d\d)?)/.exec(stop)?.[1] : undefined;
  const last = /last completed transaction was at log time ([^\n]+)/.exec(logText)?.[1];
  return {
    time: last?.trim() ?? stopTime,
    lsn: /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(logText)?.[1],
    timeline: Number(/selected new timeline ID: (\d+)/.exec(logText)?.[1]) || undefined,
    stop: stop?.trim(),
  };
}

/** Why recovery failed, from the log: undefined while it has not. */
export function failureFrom(logText: string, target: RecoveryTarget): BackupError | undefined {
  const fatal = /FATAL:\s+([^\n]+)/.exec(logText)?.[1];
  if (!fatal && !/startup process \(PID \d+\) exited|database system is shut down/.test(logText)) return undefined;
  const last = /last completed transaction was at log time ([^\n]+)/.exec(logText)?.[1];
  const fetchError = logText.split('\n').find((l) => /^error: /i.test(l) || / could not be fetched| is missing from the archive/.test(l));
  if (fatal && /recovery ended before configured recovery target was reached/.test(fatal)) {
    return new BackupError(
      'RESTORE_FAILED',
      `the archive ends before ${describeTarget(target)}${last ? `: the newest restorable point is ${last.trim()}` : ''}`,
      {
        hint: 'Give an earlier --to (or --to-latest). Is WAL being archived? `basement-backup status` shows the recovery window.',
        detail: fetchError,
      },
    );
  }
  return new BackupError('RESTORE_FAILED', `recovery stopped: ${fetchError ?? fatal ?? 'the server shut down'}`, {
    hint: 'A missing or unreadable WAL file stops recovery rather than end it early: try --target with another target.',
    detail: fatal,
  });
}

export async function startRecovered(
  app: App,
  bins: PgBinaries,
  pgdata: string,
  port: number,
  target: RecoveryTarget,
  serverOptions: readonly string[] = [],
): Promise<Reached & { port: number; durationMs: number; stopCommand: string; logFile: string }> {
  const logFile = path.join(pgdata, 'pitr-restore.log');
  const pgCtl = bins.path('pg_ctl');
  const started = Date.now();
  const ctl = runProgram({
    name: 'pg_ctl',
    file: pgCtl,
    args: ['-D', pgdata, '-l', logFile, '-o', [`-p ${port}`, ...serverOptions].join(' '), '-W', 'start'],
    env: bins.env,
    timeoutMs: 60_000,
  });
  const exit = await outputOf(ctl);
  if (exit.code !== 0)
    throw new BackupError('RESTORE_FAILED', `pg_ctl could not start the recovered server: ${ctl.firstError() ?? `exit ${exit.code}`}`, {
      hint: `See ${logFile}.`,
    });
  const stopCommand = `${shellQuote(pgCtl)} -D ${shellQuote(pgdata)} stop`;
  let seen = '';
  let lastChange = Date.now();
  for (;;) {
    if (app.signal.aborted) {
      await stopServer(bins, pgdata);
      throw new BackupError('ABORTED', 'pitr-restore was stopped; the recovered server was stopped too', {
        hint: `Its data directory ${pgdata} stays; remove it, or start it again with pg_ctl.`,
      });
    }
    const text = await fsp.readFile(logFile, 'utf8').catch(() => '');
    if (text !== seen) {
      seen = text;
      lastChange = Date.now();
    }
    const failed = failureFrom(text, target);
    if (failed) {
      await stopServer(bins, pgdata);
      throw new BackupError(failed.code, failed.message, {
        hint: `${failed.hint ?? ''} The server's log: ${logFile}; the data directory stays for a look (remove it before trying again).`,
        detail: failed.detail,
      });
    }
    if (/database system is ready to accept connections/.test(text)) {
      return { ...reachedFrom(text), port, durationMs: Date.now() - started, stopCommand, logFile };
    }
    // exited before it could log (a configuration file it cannot read): no FATAL line comes
    if (Date.now() - started > GONE_AFTER_MS && !fs.existsSync(path.join(pgdata, 'postmaster.pid'))) {
      const last = text.trim().split('\n').pop();
      throw new BackupError('RESTORE_FAILED', `the recovered server is not running: ${last || 'its log is empty'}`, {
        hint: `See ${logFile}; the data directory stays for a look (remove it before trying again).`,
      });
    }
    if (Date.now() - lastChange > app.config.stallMs) {
      await stopServer(bins, pgdata);
      throw new BackupError('STALLED', `recovery showed no progress in its log for ${Math.round(app.config.stallMs / 60_000)} min`, {
        hint: `See ${logFile}; a restore_command that cannot reach a target waits on it. BACKUP_STALL_MINUTES sets the wait.`,
      });
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Stops the server of `pgdata` (fast: no checkpoint wait for clients), within a deadline. */
export async function stopServer(bins: PgBinaries, pgdata: string): Promise<void> {
  await outputOf(runProgram({ name: 'pg_ctl', file: bins.path('pg_ctl'), args: ['-D', pgdata, '-m', 'fast', '-w', 'stop'], env: bins.env, timeoutMs: 60_000 }));
}
