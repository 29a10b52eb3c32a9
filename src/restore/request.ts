/**
 * What a restore is asked to do, and the checks of the request made before anything changes: the
 * options' combinations, the pm2 app (`--app`), the backup and the tables asked for.
 */

import os from 'node:os';
import type { App } from '../app';
import { BackupError } from '../errors';
import { findIncludingDeleted } from '../repository/deleted';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import type { AppControl, AppInfo } from './pm2';

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
  /** Restore a backup taken on another PostgreSQL server than this one (see otherServer). */
  fromOtherServer?: boolean | undefined;
  /** pg_restore jobs (custom format); default: the cores, at most 4. */
  jobs?: number | undefined;
  /** Asks the operator; resolves false to cancel. */
  confirm: (plan: string) => Promise<boolean>;
  appControl?: AppControl | undefined;
  onProgress?: (done: number, total: number, item: string) => void;
}

/** What planning a restore needs of the request (a dry run has no confirmation and no progress). */
export type PlanRequest = Omit<RestoreRequest, 'confirm' | 'onProgress'>;

function normalizeTables(tables: string[]): string[] {
  return [...new Set(tables.map((t) => (t.includes('.') ? t : `public.${t}`)))];
}

/** The checks of the request that need no server: combinations of options. Returns the tables, normalized. */
export function checkRequest(req: PlanRequest): string[] {
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
  return tables;
}

/** The pm2 app `--app` names, asked of pm2 before anything is restored; an APP_CONTROL error when pm2 has no such app. */
export async function findApp(req: PlanRequest): Promise<AppInfo | undefined> {
  if (!req.appName) return undefined;
  if (!req.appControl) throw new BackupError('APP_CONTROL', 'no way to control pm2 here', { hint: 'Install pm2 (`npm install -g pm2`) or set PM2_BIN.' });
  const apps = await req.appControl.list();
  const app = apps.find((a) => a.name === req.appName) ?? apps.find((a) => String(a.id) === req.appName);
  if (app) return app;
  const user = os.userInfo().username;
  throw new BackupError(
    'APP_CONTROL',
    `pm2 has no app "${req.appName}" (${apps.length > 0 ? `its apps: ${apps.map((a) => a.name).join(', ')}` : `it runs no apps for the user ${user}`}); nothing was restored`,
    {
      hint:
        `Give the name \`pm2 list\` shows with --app. pm2 keeps a list per user: run this as the user that owns the app's pm2 processes ` +
        `(this ran as ${user}), or set PM2_BIN to that user's pm2.`,
    },
  );
}

/**
 * The backup asked for, on the target asked for, and the repository to read it from: when the
 * target has none of that id now but keeps versions, the one a delete hid there (`deleted`, read
 * from its versions). NOT_FOUND when a table asked for is not in it.
 */
export async function findBackup(app: App, req: PlanRequest, tables: string[]): Promise<{ manifest: Manifest; repo: Repository; deleted: boolean }> {
  const found = await findIncludingDeleted(app.target(req.from).repo, app.database.db.database, req.id);
  const { manifest } = found;
  for (const t of tables) {
    if (!manifest.tables.includes(t)) {
      throw new BackupError('NOT_FOUND', `table ${t} is not in backup ${manifest.id}`, { hint: `Tables in it: ${manifest.tables.slice(0, 20).join(', ')}.` });
    }
  }
  return found;
}
