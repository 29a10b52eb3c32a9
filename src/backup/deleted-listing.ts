import type { App } from '../app';
import { deletedBackups } from '../repository/deleted';
import { isFutureDated, manifestFileName, type Manifest } from '../repository/manifest';
import type { ListedBackup } from '../repository/repository';
import type { Versioning } from '../storage/types';

/** One backup a delete hid on a target, as `list --deleted` shows it. */
export interface DeletedRow {
  backup: ListedBackup;
  /** When its manifest was deleted (its delete marker); undefined when the server does not tell. */
  deletedAt: Date | undefined;
  /** The version read of each of its objects, by name. */
  versions: Record<string, string>;
}

export interface DeletedListing {
  target: string;
  location: string;
  versioning: Versioning;
  rows: DeletedRow[];
}

/**
 * `list --deleted`: the backups of the configured database on one S3 target whose manifest was
 * deleted but whose older versions remain, newest first. A target that keeps no versions is a
 * CONFIG error naming the fix (see deletedBackups).
 */
export async function listDeleted(app: App, targetName: string | undefined): Promise<DeletedListing> {
  const target = app.target(targetName);
  const database = app.database.db.database;
  const hidden = await deletedBackups(target.repo, database);
  const rows = (await hidden.repo.list(database)).map((backup) => {
    const names = backup.manifest ? objectsOf(backup.manifest) : [...hidden.versions.keys()].filter((n) => n.startsWith(backup.id));
    const versions: Record<string, string> = {};
    for (const n of names) {
      const v = hidden.versions.get(n);
      if (v) versions[n] = v.versionId;
    }
    return { backup, deletedAt: hidden.deletedAt.get(backup.id), versions };
  });
  return { target: target.name, location: target.repo.location, versioning: hidden.versioning, rows };
}

/** The objects a manifest names that a restore reads: the manifest, the data, the roles. */
function objectsOf(m: Manifest): string[] {
  return [manifestFileName(m.id), m.file, ...(m.roles_file ? [m.roles_file] : [])];
}

/** `list --deleted --json`: each deleted backup's manifest, marked `deleted: true`, with when and the version ids a by-hand download needs. */
export function deletedJson(l: DeletedListing, now: Date = new Date()): object[] {
  return l.rows.map(({ backup: b, deletedAt, versions }) => ({
    ...(b.manifest ?? { id: b.id }),
    file: b.manifest?.file ?? null,
    state: b.damage === undefined ? 'ok' : 'DAMAGED',
    damage: b.damage ?? null,
    future_dated: b.manifest ? isFutureDated(b.manifest, now) : false,
    deleted: true,
    deleted_at: deletedAt?.toISOString() ?? null,
    target: l.target,
    versions,
  }));
}
