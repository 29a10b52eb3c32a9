/**
 * The plan of a restore: the names of the databases it creates and keeps, and what will happen,
 * worked out before anything changes (and all `restore --dry-run` does).
 */

import type pg from 'pg';
import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { fitName } from '../pg/names';
import { compactTimestamp, type Manifest } from '../repository/manifest';
import { otherServerWarning } from './origin';
import type { AppInfo } from './pm2';
import { checkRequest, findApp, findBackup, type PlanRequest } from './request';
import { connectAdmin } from './scratch';

/** What a restore will do, worked out before it changes anything (and all `--dry-run` does). */
export interface RestorePlan {
  manifest: Manifest;
  live: string;
  /** Whether the live database exists now; undefined when the server could not be asked. */
  liveExists: boolean | undefined;
  /** The live database's owner, given to the new database too. */
  owner: string | undefined;
  /** The new database the backup is restored into. */
  target: string;
  /** With replace: the name the live database is kept under. */
  previous: string | undefined;
  /** Only these tables (schema.name); empty for all. */
  tables: string[];
  replace: boolean;
  dropOld: boolean;
  app: AppInfo | undefined;
  withRoles: boolean;
  /** What will happen, for the confirmation and `--dry-run`. */
  text: string;
}

/**
 * The name of a database restore creates: `<db>_<kind>_<time>` (and `_2`, `_3` … when taken),
 * with `<db>` shortened when needed so that PostgreSQL stores the name whole.
 */
export function restoreDbName(live: string, kind: 'restored' | 'before_restore' | 'tables', stamp: string, n = 1): string {
  return fitName(live, `_${kind}_${stamp}${n > 1 ? `_${n}` : ''}`);
}

async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

/**
 * Works out names and what will happen, asking the server (`admin`, when there is one) what
 * exists now. Refuses an existing --target-db; a generated name that is taken gets a suffix.
 */
export async function makePlan(
  app: App,
  req: PlanRequest,
  o: { manifest: Manifest; tables: string[]; appInfo: AppInfo | undefined; admin: pg.Client | undefined; now: Date },
): Promise<RestorePlan> {
  const live = app.database.db.database;
  const { manifest, tables, admin } = o;
  const stamp = compactTimestamp(o.now).toLowerCase();
  const kind = tables.length > 0 ? 'tables' : 'restored';
  let target = req.targetDb ?? restoreDbName(live, kind, stamp);
  let liveExists: boolean | undefined;
  let owner: string | undefined;
  if (admin) {
    const ownerRow = await admin.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [live]);
    liveExists = ownerRow.rowCount === 1;
    owner = ownerRow.rows[0]?.owner;
    // A name of our own choosing gets a suffix when taken (a retry in the same second); one the
    // operator chose is never written into.
    for (let n = 2; !req.targetDb && (await databaseExists(admin, target)); n++) target = restoreDbName(live, kind, stamp, n);
    if (await databaseExists(admin, target)) {
      throw new BackupError('CONFIG', `database "${target}" already exists`, {
        hint: 'Choose another --target-db; restore never writes into an existing database.',
      });
    }
  }
  const previous = req.replace ? restoreDbName(live, 'before_restore', stamp) : undefined;
  const what = `backup ${manifest.id} (${manifest.created_at})`;
  let text: string;
  if (req.replace) {
    const current =
      liveExists === false
        ? `There is no database "${live}" now: it will be created from the backup, and nothing is kept.`
        : `The current "${live}"${liveExists === undefined ? ', if it exists,' : ''} will be ${req.dropOld ? 'DROPPED' : `kept as "${previous}"`}.`;
    text =
      `Restore ${what} and make it the live database "${live}".\n` +
      `It is restored into "${target}" and checked first; then the switch.\n${current}` +
      (o.appInfo
        ? `\npm2 app "${o.appInfo.name}" will be stopped for the switch and started again.${o.appInfo.status === 'online' ? '' : ` (It is ${o.appInfo.status} now.)`}`
        : '');
  } else {
    text = `Restore ${what}${tables.length ? ` tables ${tables.join(', ')}` : ''} into the new database "${target}". "${live}" is not touched.`;
  }
  return {
    manifest,
    live,
    liveExists,
    owner,
    target,
    previous,
    tables,
    replace: req.replace,
    dropOld: req.dropOld,
    app: o.appInfo,
    withRoles: req.withRoles,
    text,
  };
}

/**
 * `restore --dry-run`: the plan, with the same checks as a restore (the backup, the pm2 app, the
 * names) and no change and no lock. When the database server cannot be asked, the plan says so
 * in `warnings` instead of failing: by-hand commands are most wanted when the server is in trouble.
 */
export async function planRestore(app: App, req: PlanRequest, now = new Date()): Promise<{ plan: RestorePlan; warnings: string[] }> {
  const tables = checkRequest(req);
  const appInfo = await findApp(req);
  const { manifest, deleted } = await findBackup(app, req, tables);
  const warnings: string[] = [];
  if (deleted) {
    const target = req.from ?? app.targets[0]!.name;
    warnings.push(
      `backup ${manifest.id} was deleted on ${target} and is read from its older versions: the by-hand download below reads the current object, which is gone; ` +
        `fetch each file with \`aws s3api get-object --version-id\` instead (\`basement-backup list --target ${target} --deleted --json\` gives the version ids), or first \`basement-backup sync --deleted\``,
    );
  }
  let admin: pg.Client | undefined;
  try {
    admin = await connectAdmin(app.database.db);
    warnings.push(...(await otherServerWarning(admin, manifest, app.database.db, req.fromOtherServer)));
  } catch (err) {
    warnings.push(`could not ask the database server what exists now (${asBackupError(err).message}); the names below are unchecked`);
  }
  try {
    return { plan: await makePlan(app, req, { manifest, tables, appInfo, admin, now }), warnings };
  } finally {
    await admin?.end().catch(() => undefined);
  }
}

/** "webserver_db" was not changed, or there is still none. */
export function liveState(plan: RestorePlan): string {
  const db = plan.liveExists === false ? `there is still no database "${plan.live}"` : `"${plan.live}" was not changed`;
  return plan.app ? `${db} and the app was not stopped` : db;
}
