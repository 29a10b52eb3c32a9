import type pg from 'pg';
import type { App } from '../app';
import { digestTables, compareDigests, quoteIdent, type TableDigests } from '../digest/table-digests';
import { asBackupError, BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { listUserTables, qualified } from '../pg/catalog';
import { connect } from '../pg/connection';
import { compactTimestamp, type Manifest } from '../storage/manifest';
import { restoreArchive } from './archive';
import type { AppControl } from './pm2';
import { createMissingRoles } from './roles';
import { connectAdmin, createDatabaseError, dropDatabase } from './scratch';

export interface RestoreRequest {
  /** A backup id, or "latest". */
  id: string;
  targetDb?: string | undefined;
  /** Make the restored copy the live database (keeping the old one under a new name). */
  replace: boolean;
  dropOld: boolean;
  /** pm2 app to stop before the switch and start after. */
  appName?: string | undefined;
  tables: string[];
  withRoles: boolean;
  /** Restore from this storage target (default: the first). */
  from?: string | undefined;
  /** Asks the operator; resolves false to cancel. */
  confirm: (plan: string) => Promise<boolean>;
  appControl?: AppControl | undefined;
  onProgress?: (done: number, total: number, item: string) => void;
}

export interface TableCount {
  table: string;
  restored: number;
  recorded: number | null;
}

export interface RestoreReport {
  manifest: Manifest;
  /** The database now holding the restored data. */
  database: string;
  counts: TableCount[];
  /** With --replace: the previous live database's new name, or null when dropped. */
  previous: string | null | undefined;
  rolesCreated: string[];
  durationMs: number;
  /** Something the operator should know about the result. */
  note?: string;
}

async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

async function countTables(app: App, database: string, m: Manifest, only: string[]): Promise<{ counts: TableCount[]; restored: TableDigests }> {
  const client = await connect(app.config.db, database);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let tables = await listUserTables(client);
    if (only.length > 0) tables = tables.filter((t) => only.includes(qualified(t)));
    const restored = await digestTables(client, tables, m.digest_mode === 'off' ? 'counts' : m.digest_mode);
    await client.query('COMMIT');
    const counts = Object.entries(restored).map(([table, d]) => ({ table, restored: d.rows, recorded: m.table_digests[table]?.rows ?? null }));
    return { counts, restored };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function normalizeTables(tables: string[]): string[] {
  return tables.map((t) => (t.includes('.') ? t : `public.${t}`));
}

/**
 * `basement-backup restore`. By default into a new database, leaving the live one untouched.
 * With `replace`, the restored copy (checked first) becomes the live database and the old one is
 * kept under <db>_before_restore_<time>; the app is stopped only for the switch, and any failure
 * puts the old database back and starts the app again.
 */
export async function restoreBackup(app: App, req: RestoreRequest): Promise<RestoreReport> {
  const { config } = app;
  const repo = app.target(req.from).repo;
  const live = config.db.database;
  const started = Date.now();
  const stamp = compactTimestamp(new Date()).toLowerCase();
  const tables = normalizeTables(req.tables);
  if (req.replace && tables.length > 0) {
    throw new BackupError('CONFIG', '--replace and --table cannot be combined', {
      hint: 'Restore the tables into a side database (without --replace) and copy the rows back.',
    });
  }
  if (req.replace && req.targetDb) {
    throw new BackupError('CONFIG', '--replace and --target-db cannot be combined', { hint: '--replace always replaces DB_NAME; drop --target-db.' });
  }
  if (req.dropOld && !req.replace) throw new BackupError('CONFIG', '--drop-old needs --replace', { hint: 'Add --replace, or leave out --drop-old.' });
  if (req.appName && !req.replace)
    throw new BackupError('CONFIG', '--app needs --replace', { hint: 'The app is only stopped to switch databases: add --replace, or leave out --app.' });

  const lock = acquireLock(app.lockFile(live), `restore of ${live}`);
  try {
    const manifest = await repo.find(live, req.id);
    for (const t of tables) {
      if (!manifest.tables.includes(t)) {
        throw new BackupError('NOT_FOUND', `table ${t} is not in backup ${manifest.id}`, { hint: `Tables in it: ${manifest.tables.slice(0, 20).join(', ')}.` });
      }
    }
    let target = req.targetDb ?? (tables.length > 0 ? `${live}_tables_${stamp}` : `${live}_restored_${stamp}`);
    const previous = `${live}_before_restore_${stamp}`;

    const plan = req.replace
      ? `Restore backup ${manifest.id} (${manifest.created_at}) and make it the live database "${live}".\n` +
        `The current "${live}" will be ${req.dropOld ? 'DROPPED' : `kept as "${previous}"`}.` +
        (req.appName ? `\npm2 app "${req.appName}" will be stopped for the switch and started again.` : '')
      : `Restore backup ${manifest.id} (${manifest.created_at})${tables.length ? ` tables ${tables.join(', ')}` : ''} into the new database "${target}". "${live}" is not touched.`;
    if (!(await req.confirm(plan))) throw new BackupError('REFUSED', 'restore cancelled', { hint: 'Nothing was changed.' });

    const bins = await app.binaries();
    const admin = await connectAdmin(config.db);
    let rolesCreated: string[] = [];
    let createdTarget = false;
    try {
      // A name of our own choosing gets a suffix when taken (a retry in the same second); one the
      // operator chose is never written into.
      for (let n = 2; !req.targetDb && (await databaseExists(admin, target)); n++) target = `${target.replace(/_\d+$/, '')}_${n}`;
      if (await databaseExists(admin, target)) {
        throw new BackupError('CONFIG', `database "${target}" already exists`, {
          hint: 'Choose another --target-db; restore never writes into an existing database.',
        });
      }
      if (req.withRoles) {
        if (!manifest.roles_file)
          throw new BackupError('NOT_FOUND', `backup ${manifest.id} has no saved roles`, {
            hint: 'Create the roles by hand, or restore without --with-roles.',
          });
        rolesCreated = await createMissingRoles(admin, await repo.storage.readText(manifest.roles_file));
        if (rolesCreated.length > 0) log.info('recreated roles', { roles: rolesCreated });
      }
      const ownerRow = await admin.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [live]);
      const owner = ownerRow.rows[0]?.owner;
      await admin.query(`CREATE DATABASE ${quoteIdent(target)} TEMPLATE template0${owner ? ` OWNER ${quoteIdent(owner)}` : ''}`).catch((err: unknown) => {
        throw createDatabaseError(err, config.db, target, 'or run the restore as a user that may: DB_USER and DB_PASSWORD set for this one command.');
      });
      createdTarget = true;
      log.info('restoring', { id: manifest.id, into: target });
      await restoreArchive({ bins, db: config.db, target, storage: repo.storage, manifest, tables, onProgress: req.onProgress, stallMs: config.stallMs });

      const { counts, restored } = await countTables(app, target, manifest, tables);
      const expected =
        tables.length > 0 ? Object.fromEntries(Object.entries(manifest.table_digests).filter(([t]) => tables.includes(t))) : manifest.table_digests;
      const mismatches = compareDigests(expected, restored);
      if (mismatches.length > 0) {
        createdTarget = false; // keep it for inspection
        throw new BackupError(
          'VERIFY_FAILED',
          `the restored copy differs from the backup's record: ${mismatches.map((m) => `${m.table} ${m.problem}`).join('; ')}`,
          {
            hint: `The restored data was kept in "${target}" for inspection; "${live}" was not changed. Try an older backup.`,
          },
        );
      }

      let previousName: string | null | undefined;
      createdTarget = false; // a checked copy: kept even when the switch fails, so it can be retried by hand
      if (req.replace) {
        previousName = await switchDatabases(admin, { live, restored: target, previous, appName: req.appName, control: req.appControl });
        if (req.dropOld && previousName) {
          await dropDatabase(admin, previousName);
          log.info('dropped the previous database', { database: previousName });
          previousName = null;
        }
      }
      const note =
        manifest.format === 'plain' && tables.length > 0
          ? `A plain (SQL) backup cannot be restored table by table: "${target}" holds the whole database; the counts above are for the tables asked for.`
          : undefined;
      return { manifest, database: req.replace ? live : target, counts, previous: previousName, rolesCreated, durationMs: Date.now() - started, note };
    } finally {
      if (createdTarget)
        await dropDatabase(admin, target).catch((err: unknown) =>
          log.error('could not drop the partial restore', { database: target, error: (err as Error).message }),
        );
      await admin.end().catch(() => undefined);
    }
  } finally {
    lock.release();
  }
}

async function renameDatabase(admin: pg.Client, from: string, to: string): Promise<void> {
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [from]);
  await admin.query(`ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`);
}

/** Stop app → live becomes previous → restored becomes live → start app; undone on any failure. */
async function switchDatabases(
  admin: pg.Client,
  o: { live: string; restored: string; previous: string; appName: string | undefined; control: AppControl | undefined },
): Promise<string | undefined> {
  let stopped = false;
  let movedLive = false;
  let movedRestored = false;
  try {
    if (o.appName) {
      if (!o.control) throw new BackupError('APP_CONTROL', 'no way to control pm2 here', { hint: 'Install pm2 or set PM2_BIN.' });
      await o.control.stop(o.appName);
      stopped = true;
      log.info('stopped the app for the switch', { app: o.appName });
    }
    const liveExists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [o.live])).rowCount === 1;
    if (liveExists) {
      await renameDatabase(admin, o.live, o.previous);
      movedLive = true;
    }
    await renameDatabase(admin, o.restored, o.live);
    movedRestored = true;
    if (stopped) {
      await o.control!.start(o.appName!);
      stopped = false;
    }
    log.info('switched to the restored database', { live: o.live, previous: movedLive ? o.previous : null });
    return movedLive ? o.previous : undefined;
  } catch (err) {
    const e = asBackupError(err);
    log.error('the switch failed; putting the old database back', { error: e.message });
    try {
      if (movedRestored) await renameDatabase(admin, o.live, o.restored);
      if (movedLive) await renameDatabase(admin, o.previous, o.live);
    } catch (undoErr) {
      throw new BackupError('RESTORE_FAILED', `the switch failed (${e.message}) and so did putting the old database back: ${(undoErr as Error).message}`, {
        hint: `Rename the databases by hand: "${o.previous}" is the old live database, "${o.restored}" the restored copy.`,
      });
    } finally {
      if (stopped && o.appName && o.control) await o.control.start(o.appName).catch(() => log.error('could not start the app again', { app: o.appName }));
    }
    throw new BackupError('RESTORE_FAILED', `the switch to the restored database failed: ${e.message}`, {
      hint: `"${o.live}" is back as it was${o.appName ? ' and the app was started again' : ''}; the restored copy is in "${o.restored}".`,
    });
  }
}
