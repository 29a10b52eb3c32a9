import type { Command } from 'commander';
import { asBackupError, BackupError, ERROR_CODES } from '../../errors';
import { printError } from '../output';
import { run, setup, type GlobalOpts } from '../run';

/**
 * What `wal-fetch` exits with when the file could not be delivered for any reason but its
 * absence: above 125, which PostgreSQL takes as fatal, so recovery stops rather than ending early
 * at a point the operator did not ask for.
 */
export const WAL_FETCH_FAILED_EXIT = 126;
/** What `wal-fetch` exits with when every target answered and none holds the file: PostgreSQL's "not in the archive". */
export const WAL_FETCH_ABSENT_EXIT = 1;

async function walPush(cmd: Command, file: string): Promise<number> {
  const { app } = await setup(cmd, 'wal-push');
  const ms = app.config.pitr.pushTimeoutMs;
  // the hard deadline: a target that accepts connections and never answers stops all archiving
  // (one archiver); after it the push fails, and PostgreSQL keeps the file and tries again
  const deadline = setTimeout(() => {
    app.cancelRequests();
    printError(
      new BackupError('STALLED', `wal-push of ${file} did not finish within WAL_PUSH_TIMEOUT_SECONDS (${ms / 1000} s)`, {
        hint: 'A target does not answer: `basement-backup status` shows which. PostgreSQL keeps the file and tries again.',
      }),
    );
    process.exit(ERROR_CODES.STALLED.exit);
  }, ms);
  try {
    const { pushWal } = await import('../../pitr/push.js');
    await pushWal(app, file);
    return 0;
  } finally {
    clearTimeout(deadline);
  }
}

async function walFetch(cmd: Command, wal: string, dest: string, opts: { prefetch?: string }): Promise<number> {
  try {
    const { app } = await setup(cmd, 'wal-fetch');
    const { fetchWal } = await import('../../pitr/fetch.js');
    if (opts.prefetch !== undefined) await startPrefetch(cmd, opts.prefetch, wal, app.config.childEnv);
    const got = await fetchWal(app, wal, dest);
    return got.delivered ? 0 : WAL_FETCH_ABSENT_EXIT;
  } catch (err) {
    printError(asBackupError(err));
    return WAL_FETCH_FAILED_EXIT;
  }
}

/** Notes what PostgreSQL asked for, and starts the prefetcher for `spool` unless one runs. */
async function startPrefetch(cmd: Command, spool: string, wal: string, env: NodeJS.ProcessEnv): Promise<void> {
  const [{ noteWanted }, { prefetcherPid, startPrefetcher }] = await Promise.all([import('../../pitr/prefetch.js'), import('../../pitr/prefetcher.js')]);
  await noteWanted(spool, wal);
  if (prefetcherPid(spool) !== undefined) return;
  const g = cmd.optsWithGlobals<GlobalOpts>();
  startPrefetcher(spool, { envFiles: g.envFile, db: g.db, cwd: process.cwd(), env });
}

async function walPrefetch(cmd: Command, spool: string): Promise<void> {
  const { app } = await setup(cmd, 'wal-prefetch');
  const { runPrefetcher } = await import('../../pitr/prefetch.js');
  await runPrefetcher(app, spool);
}

/** `wal-push` and `wal-fetch`: PostgreSQL's archive_command and restore_command (docs/pitr.md). */
export function registerWal(program: Command): void {
  program
    .command('wal-push')
    .description("store one WAL file on the targets (archive_command = 'basement-backup wal-push %p'); exits 0 only when every required target holds it")
    .argument('<path>', 'the WAL file (%p)')
    .action(run('wal-push', walPush));
  program
    .command('wal-fetch')
    .description(
      `deliver one archived WAL file (restore_command = 'basement-backup wal-fetch %f %p'): exits 0 when delivered, ${WAL_FETCH_ABSENT_EXIT} when no target holds it, ${WAL_FETCH_FAILED_EXIT} on any other failure (recovery stops)`,
    )
    .argument('<name>', 'the WAL file name (%f)')
    .argument('<dest>', 'where to write it (%p)')
    .option('--prefetch <dir>', 'keep the next segments fetched ahead into this directory, in the background (pitr-restore sets it)')
    .action(run('wal-fetch', walFetch));
  program
    .command('wal-prefetch', { hidden: true })
    .description('the background prefetcher that pitr-restore --start, or else the first wal-fetch --prefetch, starts')
    .argument('<dir>', 'the spool directory')
    .action(run('wal-prefetch', walPrefetch));
}
