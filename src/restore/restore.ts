import type pg from 'pg';
import type { App } from '../app';
import { decryptText, type Identities } from '../crypto/age';
import { BackupError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import { withReleasers } from '../util/releasers';
import { checkCanOpen } from './can-open';
import { keysFor } from './keys';
import { removeRestoreLeftovers } from './clean-up';
import { refuseOtherServer } from './origin';
import { makePlan } from './plan';
import { checkRequest, findApp, findBackup, type RestoreRequest } from './request';
import { restoreChecked, type TableCount } from './restore-checked';
import { createMissingRoles } from './roles';
import { connectAdmin } from './scratch';
import { makeLive } from './switch';

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
  const live = app.database.db.database;
  const started = Date.now();
  const tables = checkRequest(req);
  const appInfo = await findApp(req);
  return withReleasers(async (releasers) => {
    holdLock(releasers, app.lockFile(live), `restore of ${live}`);
    // pg_restore is looked up (its --version run) while the backup is found and the server asked
    void app.binaries().catch(() => undefined);
    // a backup deleted on the target (a bucket with versions) is read from its versions
    const { manifest, repo } = await findBackup(app, req, tables);
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
