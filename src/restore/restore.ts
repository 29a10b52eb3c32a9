import os from 'node:os';
import type pg from 'pg';
import type { App } from '../app';
import { decryptText, type Identities } from '../crypto/age';
import { compareDigests, quoteIdent, type TableDigests } from '../digest/table-digests';
import { asBackupError, BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { fitName } from '../pg/names';
import type { PgBinaries } from '../pg/binaries';
import { compactTimestamp, type Manifest } from '../storage/manifest';
import type { Repository } from '../storage/repository';
import { withReleasers } from '../util/releasers';
import { keysFor, restoreAndDigest } from './archive';
import { checkCanOpen } from './can-open';
import { chooseJobs } from './jobs';
import type { AppControl, AppInfo } from './pm2';
import { digestRestored } from './digest-restored';
import { createMissingRoles } from './roles';
import { otherServerWarning, refuseOtherServer } from './origin';
import { makeLive } from './switch';
import { connectAdmin, createDatabaseError } from './scratch';
import { clearUnfinished, dropPartial, markUnfinished } from './unfinished';
import { removeRestoreLeftovers } from './clean-up';

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
  /** The pg_restore jobs it ran with (1 for psql). */
  jobs: number;
  /** Something the operator should know about the result. */
  note?: string;
}

async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
}

/** Every restored table counted (and digested, as the backup was): see digestRestored. */
async function countTables(
  app: App,
  database: string,
  m: Manifest,
  only: string[],
  connections: number,
): Promise<{ counts: TableCount[]; restored: TableDigests }> {
  const mode = m.digest_mode === 'off' ? 'counts' : m.digest_mode;
  const restored = await digestRestored(app.database.db, database, mode, { method: m.digest_method, only, connections });
  const counts = Object.entries(restored).map(([table, d]) => ({ table, restored: d.rows, recorded: m.table_digests[table]?.rows ?? null }));
  return { counts, restored };
}

function normalizeTables(tables: string[]): string[] {
  return [...new Set(tables.map((t) => (t.includes('.') ? t : `public.${t}`)))];
}

/**
 * The name of a database restore creates: `<db>_<kind>_<time>` (and `_2`, `_3` … when taken),
 * with `<db>` shortened when needed so that PostgreSQL stores the name whole.
 */
export function restoreDbName(live: string, kind: 'restored' | 'before_restore' | 'tables', stamp: string, n = 1): string {
  return fitName(live, `_${kind}_${stamp}${n > 1 ? `_${n}` : ''}`);
}

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

type PlanRequest = Omit<RestoreRequest, 'confirm' | 'onProgress'>;

/** The checks of the request that need no server: combinations of options. Returns the tables, normalized. */
function checkRequest(req: PlanRequest): string[] {
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
async function findApp(req: PlanRequest): Promise<AppInfo | undefined> {
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

async function findBackup(app: App, req: PlanRequest, tables: string[]): Promise<Manifest> {
  const manifest = await app.target(req.from).repo.find(app.database.db.database, req.id);
  for (const t of tables) {
    if (!manifest.tables.includes(t)) {
      throw new BackupError('NOT_FOUND', `table ${t} is not in backup ${manifest.id}`, { hint: `Tables in it: ${manifest.tables.slice(0, 20).join(', ')}.` });
    }
  }
  return manifest;
}

/**
 * Works out names and what will happen, asking the server (`admin`, when there is one) what
 * exists now. Refuses an existing --target-db; a generated name that is taken gets a suffix.
 */
async function makePlan(
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
  const manifest = await findBackup(app, req, tables);
  const warnings: string[] = [];
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

/**
 * `basement-backup restore`. By default into a new database, leaving the live one untouched.
 * With `replace`, the restored copy (checked first) becomes the live database and the old one is
 * kept under <db>_before_restore_<time>; the app is stopped only for the switch, and any failure
 * puts the old database back and starts the app again. The pm2 app is looked up before anything
 * else, and every error says which databases exist afterwards.
 *
 * Stages: prepare (lock, backup, connection, plan, confirmation) → roles → restore into a new
 * database and check it → switch. The lock and connection are released where they are taken.
 */
export async function restoreBackup(app: App, req: RestoreRequest): Promise<RestoreReport> {
  const { config } = app;
  const repo = app.target(req.from).repo;
  const live = app.database.db.database;
  const started = Date.now();
  const tables = checkRequest(req);
  const appInfo = await findApp(req);
  return withReleasers(async (releasers) => {
    const lock = acquireLock(app.lockFile(live), `restore of ${live}`);
    releasers.add(() => lock.release());
    // pg_restore is looked up (its --version run) while the backup is found and the server asked
    void app.binaries().catch(() => undefined);
    const manifest = await findBackup(app, req, tables);
    // a backup this machine cannot open (no key for it, no zstd) is refused before anything is created
    const keys = await keysFor(config.ageIdentityFile, manifest, app.askSecret);
    await checkCanOpen(repo, manifest, keys, app.zstd());
    const admin = await connectAdmin(app.database.db);
    releasers.add(() => admin.end().catch(() => undefined));
    await refuseOtherServer(admin, manifest, app.database.db, req.fromOtherServer);
    await removeRestoreLeftovers(app, admin);
    const plan = await makePlan(app, req, { manifest, tables, appInfo, admin, now: new Date() });
    if (!(await req.confirm(plan.text))) throw new BackupError('REFUSED', 'restore cancelled', { hint: 'Nothing was changed.' });

    const bins = await app.binaries();
    const rolesCreated = req.withRoles ? await recreateRoles(repo, manifest, admin, keys) : [];
    const restored = await restoreChecked(app, { repo, bins, keys, admin, plan, rolesCreated, jobs: req.jobs, onProgress: req.onProgress });
    const { counts } = restored;
    // From here the copy is checked: it is kept even when the switch fails, so it can be retried by hand.
    const switched = req.replace
      ? await makeLive(app, admin, {
          live,
          restored: plan.target,
          previous: plan.previous!,
          dropOld: req.dropOld,
          appName: plan.app?.name,
          control: req.appControl,
        })
      : { previous: undefined, note: undefined };
    const note =
      manifest.format === 'plain' && tables.length > 0
        ? `A plain (SQL) backup cannot be restored table by table: "${plan.target}" holds the whole database; the counts above are for the tables asked for.`
        : (switched.note ?? restored.note);
    return {
      manifest,
      database: req.replace ? live : plan.target,
      counts,
      previous: switched.previous,
      rolesCreated,
      durationMs: Date.now() - started,
      jobs: restored.jobs,
      note,
    };
  });
}

/** Roles: creates the roles saved beside the backup that the server does not have; returns their names. */
async function recreateRoles(repo: Repository, manifest: Manifest, admin: pg.Client, keys: Identities | undefined): Promise<string[]> {
  const stored = await repo.readRoles(manifest);
  if (stored === undefined) {
    throw new BackupError('NOT_FOUND', `backup ${manifest.id} has no saved roles`, { hint: 'Create the roles by hand, or restore without --with-roles.' });
  }
  const roles =
    manifest.encryption && keys ? await decryptText(stored, keys, `${manifest.roles_file} on ${repo.name}`, manifest.encryption.recipients) : stored;
  const created = await createMissingRoles(admin, roles);
  if (created.length > 0) log.info('recreated roles', { roles: created });
  return created;
}

/**
 * Restore: into the plan's new database, then every table counted (and digested) and compared
 * with the backup's record. A restore that fails drops the new database again; one that differs
 * keeps it for inspection. Returns the counts.
 */
async function restoreChecked(
  app: App,
  o: {
    repo: Repository;
    bins: PgBinaries;
    keys: Identities | undefined;
    admin: pg.Client;
    plan: RestorePlan;
    rolesCreated: string[];
    jobs: number | undefined;
    onProgress: RestoreRequest['onProgress'];
  },
): Promise<{ counts: TableCount[]; jobs: number; note: string | undefined }> {
  const { config } = app;
  const { admin, plan } = o;
  const { manifest, target, tables } = plan;
  await admin.query(`CREATE DATABASE ${quoteIdent(target)} TEMPLATE template0${plan.owner ? ` OWNER ${quoteIdent(plan.owner)}` : ''}`).catch((err: unknown) => {
    throw createDatabaseError(
      err,
      app.database.db,
      target,
      `or run the restore as a user that may: DB_USER and DB_PASSWORD set for this one command. Nothing was restored; ${liveState(plan)}.`,
    );
  });
  const marked = await markUnfinished(admin, target, 'restore', plan.live);
  let result: { counts: TableCount[]; restored: TableDigests };
  let note: string | undefined;
  let jobs = 1;
  try {
    log.info('restoring', { id: manifest.id, into: target });
    // restoreArchive reads the data object from the target's storage (a local file directly, when it has a path)
    // the counts start once the data is loaded, beside the index builds, on as many connections as pg_restore has jobs
    const wantedJobs = o.jobs ?? config.restoreJobs ?? jobsFor(manifest);
    const { restored, digested } = await restoreAndDigest(
      {
        bins: o.bins,
        keys: o.keys,
        age: app.ageProgram(),
        zstd: app.zstd(),
        db: app.database.db,
        target,
        repo: o.repo,
        manifest,
        tables,
        onProgress: o.onProgress,
        stallMs: config.stallMs,
        jobs: wantedJobs,
        temp: { dir: config.tempDir, reserveBytes: config.minFreeBytes, command: 'restore' },
        signal: app.signal,
      },
      () => countTables(app, target, manifest, tables, wantedJobs),
    );
    note = restored.note;
    jobs = restored.jobs;
    result = digested()!;
    if (marked) await clearUnfinished(admin, target);
  } catch (err) {
    throw await dropPartial(admin, target, liveState(plan), err, o.rolesCreated);
  }
  const expected = tables.length > 0 ? Object.fromEntries(Object.entries(manifest.table_digests).filter(([t]) => tables.includes(t))) : manifest.table_digests;
  const mismatches = compareDigests(expected, result.restored);
  if (mismatches.length > 0) {
    throw new BackupError(
      'VERIFY_FAILED',
      `the restored copy differs from the backup's record: ${mismatches.map((m) => `${m.table} ${m.problem}`).join('; ')}`,
      {
        hint: `The restored data was kept in "${target}" for inspection; ${liveState(plan)}. Try an older backup.`,
      },
    );
  }
  return { counts: result.counts, jobs, note };
}

/** The jobs chosen for a restore not told how many (see chooseJobs), with why in the log. */
function jobsFor(m: Manifest): number {
  const { jobs, why } = chooseJobs(m);
  log.info(`restoring with ${why}`, { id: m.id });
  return jobs;
}

/** "webserver_db" was not changed, or there is still none. */
function liveState(plan: RestorePlan): string {
  const db = plan.liveExists === false ? `there is still no database "${plan.live}"` : `"${plan.live}" was not changed`;
  return plan.app ? `${db} and the app was not stopped` : db;
}
