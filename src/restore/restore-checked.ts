/**
 * The restore proper: the backup restored into the plan's new database, then every table counted
 * (and digested) and compared with the backup's record.
 */

import type pg from 'pg';
import type { App } from '../app';
import type { Identities } from '../crypto/age';
import { compareDigests, quoteIdent, type TableDigests } from '../digest/table-digests';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import { restoreAndDigest } from './archive';
import { digestRestored } from './digest-restored';
import { chooseJobs } from './jobs';
import { liveState, type RestorePlan } from './plan';
import type { RestoreRequest } from './request';
import { createDatabaseError } from './scratch';
import { clearUnfinished, dropPartial, markUnfinished } from './unfinished';

/** A restored table: its rows, and the rows the backup recorded (null when it recorded none). */
export interface TableCount {
  table: string;
  restored: number;
  recorded: number | null;
}

/**
 * Restore: into the plan's new database, then every table counted (and digested) and compared
 * with the backup's record. A restore that fails drops the new database again; one that differs
 * keeps it for inspection. Returns the counts.
 */
export async function restoreChecked(
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

/** The jobs chosen for a restore not told how many (see chooseJobs), with why in the log. */
function jobsFor(m: Manifest): number {
  const { jobs, why } = chooseJobs(m);
  log.info(`restoring with ${why}`, { id: m.id });
  return jobs;
}
