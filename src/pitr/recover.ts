/**
 * `pitr-restore`: a cluster recovered to a point in time, in a new data directory: the newest base
 * backup that ended before the point, laid out and checked, given a restore_command (wal-fetch)
 * and the recovery target; with `start`, started on its own port and watched until it has
 * reached the point and promoted, or failed saying why.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App } from '../app';
import { BackupError } from '../errors';
import { log } from '../logger';
import { shellQuote } from '../restore/by-hand';
import type { BaseManifest } from '../wal/base-manifest';
import { goodBaseBackups } from './base-list';
import { pitrDecodeContext } from './encode';
import { layOut, verifyLaidOut } from './lay-out';
import { chooseBase, describeTarget, recoverySettings, type RecoveryTarget } from './recovery-plan';
import { startRecovered, type Reached } from './start-recovered';
import { selfScript } from '../util/self';
import { completeConfigFiles } from './config-files';
import { prefetchDir, startPrefetcher, stopPrefetcher } from './prefetcher';

export interface PitrRestoreRequest {
  pgdata: string;
  target: RecoveryTarget;
  /** The storage target to recover from (the first when undefined). */
  from: string | undefined;
  start: boolean;
  port: number | undefined;
  dryRun: boolean;
  /** How this command was started, for restore_command: the env files read, and the directory they were read from. */
  envFiles: string[];
  cwd: string;
  /** More options for the started server (postgres -c …, shell-quoted): the drill's private socket and pg_hba. */
  serverOptions?: readonly string[];
}

export interface PitrRestoreResult {
  base: BaseManifest;
  from: string;
  pgdata: string;
  target: string;
  restoreCommand: string;
  settings: string;
  /** Whether pg_verifybackup checked the laid-out files against the backup's manifest. */
  verified: boolean;
  /** Configuration files the base backup lacked (kept outside the data directory, as on Debian), written minimal. */
  configWritten: string[];
  started: (Reached & { port: number; durationMs: number; stopCommand: string; logFile: string }) | undefined;
}

/**
 * The restore_command the recovered server runs: a segment the prefetcher has fetched (checked)
 * is moved into place by the shell; otherwise this program's wal-fetch runs, with this command's
 * configuration, and keeps the prefetcher going.
 */
export function walFetchCommand(app: App, req: Pick<PitrRestoreRequest, 'envFiles' | 'cwd' | 'pgdata'>): string {
  const cli = selfScript();
  const files = req.envFiles.flatMap((f) => ['--env-file', shellQuote(f)]);
  const spool = shellQuote(prefetchDir(req.pgdata));
  // %p is relative to the data directory, and the env files' relative paths to `cwd`
  const dest = `${shellQuote(path.resolve(req.pgdata))}/%p`;
  const fetch = ['cd', shellQuote(req.cwd), '&&', 'exec', shellQuote(process.execPath), shellQuote(cli), ...files, '--db', shellQuote(app.database.name)];
  return `if [ -f ${spool}/%f ]; then exec mv ${spool}/%f ${dest}; fi; ${[...fetch, 'wal-fetch', '--prefetch', spool, '%f', dest].join(' ')}`;
}

export async function pitrRestore(app: App, req: PitrRestoreRequest): Promise<PitrRestoreResult> {
  if (req.start && process.getuid?.() === 0) {
    throw new BackupError('REFUSED', 'PostgreSQL does not start as root, so pitr-restore --start does not run as root', {
      hint: `Run it as the user that owns the new data directory, e.g. \`sudo -u postgres basement-backup pitr-restore …\` (that user must be able to read this configuration), or leave out --start and start the server yourself.`,
    });
  }
  if (req.start && req.port === undefined)
    throw new BackupError('CONFIG', '--start needs --port', { hint: 'Give a free port for the recovered server, e.g. --port 5433.' });
  const t = app.target(req.from);
  const base = chooseBase(await goodBaseBackups(t), req.target);
  const restoreCommand = walFetchCommand(app, req);
  const endCommand = `rm -rf ${shellQuote(prefetchDir(req.pgdata))}`;
  const settings = recoverySettings({ restoreCommand, endCommand, target: req.target, port: req.port });
  const result: PitrRestoreResult = {
    base,
    from: t.name,
    pgdata: path.resolve(req.pgdata),
    target: describeTarget(req.target),
    restoreCommand,
    settings,
    verified: false,
    configWritten: [],
    started: undefined,
  };
  if (req.dryRun) return result;
  await emptyDataDir(result.pgdata);
  log.info('pitr-restore: laying out base backup', { base: base.id, target: t.name, pgdata: result.pgdata, to: result.target });
  const bins = await app.binaries();
  try {
    await layOut(t, base, result.pgdata, await pitrDecodeContext(app, base.file)(), app.config.childEnv, app.signal);
    result.verified = (await verifyLaidOut(bins, result.pgdata)) === 'verified';
  } catch (err) {
    // what was laid out so far is of no use: the directory is left empty, as it was found
    await emptyOut(result.pgdata);
    throw err;
  }
  // after pg_verifybackup, which would count them as files the backup does not have
  result.configWritten = await completeConfigFiles(result.pgdata);
  await fsp.appendFile(path.join(result.pgdata, 'postgresql.auto.conf'), `\n${settings}`, { mode: 0o600 });
  await fsp.writeFile(path.join(result.pgdata, 'recovery.signal'), '', { mode: 0o600 });
  await fsp.rm(path.join(result.pgdata, 'standby.signal'), { force: true });
  if (req.start) {
    // started here, not by the first restore_command, so that it is stopped (and waited for) when recovery is over
    const spool = prefetchDir(result.pgdata);
    fs.mkdirSync(spool, { mode: 0o700 });
    const prefetcher = startPrefetcher(spool, { envFiles: req.envFiles, db: app.database.name, cwd: req.cwd, env: app.config.childEnv });
    try {
      result.started = await startRecovered(app, bins, result.pgdata, req.port!, req.target, req.serverOptions);
    } finally {
      if (prefetcher !== undefined) await stopPrefetcher(prefetcher, spool);
      await fsp.rm(spool, { recursive: true, force: true });
    }
  }
  return result;
}

async function emptyOut(dir: string): Promise<void> {
  for (const e of await fsp.readdir(dir).catch(() => [])) await fsp.rm(path.join(dir, e), { recursive: true, force: true });
}

/** Creates `dir` (0700), or refuses one that has anything in it: recovery never writes over files. */
async function emptyDataDir(dir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await fsp.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new BackupError('CONFIG', `cannot read ${dir}: ${(err as Error).message}`, { hint: 'Give a new directory for --pgdata.' });
  }
  if (entries.length > 0) {
    throw new BackupError('CONFIG', `${dir} is not empty`, {
      hint: 'Give a new or empty directory for --pgdata: pitr-restore never writes over files (a running cluster may be there).',
    });
  }
  const spool = prefetchDir(dir);
  if (fs.existsSync(spool)) {
    throw new BackupError('CONFIG', `${spool} exists: a recovery into ${dir} is running, or one was stopped before it ended`, {
      hint: `If no server runs on ${dir}, remove it (\`rm -rf ${shellQuote(spool)}\`) and try again; or give another directory for --pgdata.`,
    });
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
}
