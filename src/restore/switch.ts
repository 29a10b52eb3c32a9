import type pg from 'pg';
import type { App } from '../app';
import { quoteIdent } from '../digest/table-digests';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { Releasers, type Releaser } from '../util/releasers';
import { SwitchApp, type AppAfter } from './switch-app';
import type { AppControl } from './pm2';
import { dropDatabase } from './unfinished';

/** The switch of `restore --replace`: which databases, and the pm2 app stopped for it. */
export interface SwitchRequest {
  live: string;
  /** The checked copy that becomes the live database. */
  restored: string;
  /** The name the live database is kept under. */
  previous: string;
  dropOld: boolean;
  appName: string | undefined;
  control: AppControl | undefined;
}

/**
 * Switch (with `replace`): the checked copy becomes the live database, and the previous one is
 * dropped when asked. Stop signals wait from just before the app is stopped until it is started
 * again (a stop asked for before the databases are renamed cancels the switch; one asked for later
 * lets it finish). Returns the previous database's new name (null when dropped), and a note.
 */
export async function makeLive(app: App, admin: pg.Client, s: SwitchRequest): Promise<{ previous: string | null | undefined; note: string | undefined }> {
  if (app.signal.aborted) {
    throw new BackupError('ABORTED', 'the restore was stopped before the switch', {
      hint: `"${s.live}" was not changed${s.appName ? ' and the app was not stopped' : ''}; the restored copy is in "${s.restored}".`,
    });
  }
  const hold = app.holdStop({ what: 'the switch', until: s.appName ? 'the switch is done and the app is started again' : 'the switch is done' });
  let previous: string | undefined;
  try {
    previous = await switchDatabases(app, admin, s, hold.requested);
  } finally {
    hold.release();
  }
  if (hold.requested.aborted) {
    const kept = s.dropOld && previous ? ` The previous database "${previous}" was not dropped (--drop-old): drop it when you are sure.` : '';
    return { previous, note: `The stop asked for during the switch waited until it was done: "${s.live}" is the restored database.${kept}` };
  }
  if (!s.dropOld || !previous) return { previous, note: undefined };
  try {
    await dropDatabase(admin, previous);
    log.info('dropped the previous database', { database: previous });
    return { previous: null, note: undefined };
  } catch (err) {
    log.error('could not drop the previous database', { database: previous, error: (err as Error).message });
    return { previous, note: `the previous database "${previous}" could not be dropped (${(err as Error).message}); drop it by hand when you are sure.` };
  }
}

async function renameDatabase(admin: pg.Client, from: string, to: string): Promise<void> {
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [from]);
  await admin.query(`ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`);
}

/**
 * What the switch changed so far, each change with its undo, and what is true once they are
 * undone. Like the releasers: a failure unwinds them newest first, each even when an earlier one
 * failed.
 */
class SwitchUndo {
  private readonly changes = new Releasers();
  /** What is true of the live database once every change is undone, for the error. */
  liveThen: string;
  /** What is true of the app once the switch's stop is undone (SwitchApp.startAgain), for the error. */
  app: AppAfter | undefined;

  constructor(live: string) {
    this.liveThen = `"${live}" was not changed`;
  }

  /** Registers the undo of a change (`liveThen`: what the live database is once it is undone). */
  push(undo: Releaser, liveThen?: string): void {
    this.changes.add(undo);
    if (liveThen !== undefined) this.liveThen = liveThen;
  }

  /** Undoes every change, newest first: the message of the first undo that failed, else undefined. */
  unwind(): Promise<string | undefined> {
    return this.changes.releaseAll().then(
      () => undefined,
      (undoErr: unknown) => asBackupError(undoErr).message,
    );
  }
}

/**
 * Stop app → live becomes previous → restored becomes live → start app. Each step that changes
 * something pushes its undo; on any failure (or a stop asked for while the app stopped) they are
 * undone, newest first, which starts the app again last. Returns the previous live database's new
 * name, or undefined when there was none.
 */
async function switchDatabases(app: App, admin: pg.Client, s: SwitchRequest, stopRequested: AbortSignal): Promise<string | undefined> {
  const pm2 = s.appName ? new SwitchApp(s.appName, s.control) : undefined;
  const undo = new SwitchUndo(s.live);
  try {
    if (pm2) {
      // pushed before the stop: a stop that fails may still have stopped the app (startAgain asks pm2)
      undo.push(async () => {
        undo.app = await pm2.startAgain();
      });
      await pm2.stop();
    }
    if (stopRequested.aborted) throw new BackupError('ABORTED', 'the restore was stopped before the switch');
    const liveExists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [s.live])).rowCount === 1;
    if (liveExists) {
      await renameDatabase(admin, s.live, s.previous);
      undo.push(() => renameDatabase(admin, s.previous, s.live), `"${s.live}" is back as it was`);
    } else {
      undo.liveThen = `there is still no database "${s.live}"`;
    }
    await renameDatabase(admin, s.restored, s.live);
    undo.push(() => renameDatabase(admin, s.live, s.restored));
    await pm2?.start();
    log.info('switched to the restored database', { live: s.live, previous: liveExists ? s.previous : null });
    return liveExists ? s.previous : undefined;
  } catch (err) {
    throw await rollBack(app, s, asBackupError(err), undo);
  }
}

/** After a failed or cancelled switch: its changes undone (the app started again last); the error says what is true now. */
async function rollBack(app: App, s: SwitchRequest, e: BackupError, undo: SwitchUndo): Promise<BackupError> {
  if (e.code === 'ABORTED') log.warn('the restore was stopped before the switch; starting the app again', { app: s.appName });
  else log.error('the switch failed; putting the old database back', { error: e.message });
  const undone = await undo.unwind();
  const appState = undo.app;
  const err = rollBackError(s, e, { liveThen: undo.liveThen, undone, appState });
  if (appState?.down) {
    log.error(`${appState.down}: ${err.hint ?? ''}`, { app: s.appName });
    const what = `The pm2 app "${s.appName}" ${appState.mayRun ? 'may be' : 'is'} STOPPED after a restore of ${s.live}`;
    await app.alerter.send({ kind: 'problem', what, error: err });
  }
  return err;
}

function rollBackError(s: SwitchRequest, e: BackupError, o: { liveThen: string; undone: string | undefined; appState: AppAfter | undefined }): BackupError {
  const failed = e.code === 'ABORTED' ? e.message : `the switch to the restored database failed: ${e.message}`;
  const appText = o.appState?.text ?? '';
  if (o.undone !== undefined) {
    return new BackupError('RESTORE_FAILED', `${failed}, and so did putting the old database back: ${o.undone}`, {
      hint: `Rename the databases by hand: "${s.previous}" is the old live database, "${s.restored}" the restored copy${appText}.`,
      cause: e,
    });
  }
  const hint = `${o.liveThen}${appText}; the restored copy is in "${s.restored}".`;
  if (o.appState?.down) return new BackupError('APP_CONTROL', `${o.appState.down}, after ${failed}`, { hint, cause: e });
  // a pm2 failure keeps its own code (34), whatever the databases did
  const code = e.code === 'APP_CONTROL' || e.code === 'ABORTED' ? e.code : 'RESTORE_FAILED';
  return new BackupError(code, failed, { hint, cause: e });
}
