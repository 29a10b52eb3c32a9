import type { Readable } from 'node:stream';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { ObjectHistory, ObjectVersion, Storage, StoredObject, Versioning } from '../storage/types';
import { idOf, manifestFileName, safeName, type Manifest } from './manifest';
import { Repository } from './repository';

/** Where turning versioning on is written down, per provider. */
export const VERSIONING_DOCS = 'docs/offsite.md#versioned-buckets';

/**
 * The backups of one database on one target that a delete hid: their manifest's current version is
 * a delete marker (or gone) while an older version remains. Read-only, from those versions.
 */
export interface DeletedBackups {
  /** A repository over the versions: `scan`, `find`, `openData`, `readRoles` and `copyTo` read them; it writes nothing. */
  repo: Repository;
  /** The version read of each object of these backups, by name (the current one where the object was not deleted). */
  versions: Map<string, ObjectVersion>;
  /** When each backup's manifest was deleted (its delete marker), by id. */
  deletedAt: Map<string, Date | undefined>;
  versioning: Versioning;
}

/**
 * The deleted backups of `database` on `repo` (ListObjectVersions). A target that keeps no versions
 * cannot show them: a local one, a bucket whose versioning was never on, a server without it;
 * that is a CONFIG error naming the fix (turning versioning on helps only with later deletes).
 */
export async function deletedBackups(repo: Repository, database: string): Promise<DeletedBackups> {
  const history = repo.storage.history;
  if (!history) {
    throw new BackupError('CONFIG', `${repo.name} is a local directory: it keeps no versions, and what was deleted there is gone`, {
      hint: `Deleted backups can be found only on an S3 target whose bucket has versioning on: give --target an S3 target (see ${VERSIONING_DOCS}).`,
    });
  }
  const versioning = await history.versioning();
  if (versioning === 'off' || versioning === 'unsupported') {
    const why = versioning === 'off' ? `bucket versioning is not on for ${repo.location}` : `the S3 server of ${repo.location} does not offer versioning`;
    throw new BackupError('CONFIG', `${repo.name}: ${why}, so a delete there is final and no deleted backup can be listed`, {
      hint: `Turn versioning on for the bucket (or use Object Lock, which turns it on) so that later deletes can be undone: see ${VERSIONING_DOCS}. It cannot bring back what was deleted before.`,
    });
  }
  const byName = new Map<string, ObjectVersion[]>();
  for (const v of await history.versions(`${safeName(database)}_`)) byName.set(v.name, [...(byName.get(v.name) ?? []), v]);
  const ids = new Set<string>();
  const deletedAt = new Map<string, Date | undefined>();
  for (const [name, vs] of byName) {
    const id = idOf(database, name);
    if (id === undefined || name !== manifestFileName(id) || current(vs) || !newest(vs)) continue;
    ids.add(id);
    deletedAt.set(id, vs.find((v) => v.latest && v.deleteMarker)?.modified);
  }
  const versions = new Map<string, ObjectVersion>();
  for (const [name, vs] of byName) {
    const id = idOf(database, name);
    const read = current(vs) ?? newest(vs);
    if (id !== undefined && ids.has(id) && read) versions.set(name, read);
  }
  return { repo: new Repository(new HiddenVersions(repo.storage, history, versions)), versions, deletedAt, versioning };
}

/**
 * The backup `idOrLatest` names on `repo` (see Repository.find); when there is none there now but
 * the target keeps versions, the one a delete hid, read from its versions (and a log line says so).
 * `deleted`: it was found deleted; `repo` is then the read-only one over its versions.
 */
export async function findIncludingDeleted(
  repo: Repository,
  database: string,
  idOrLatest: string,
  opts: { allowDamaged?: boolean } = {},
): Promise<{ manifest: Manifest; repo: Repository; deleted: boolean }> {
  try {
    return { manifest: await repo.find(database, idOrLatest, opts), repo, deleted: false };
  } catch (err) {
    if (!(err instanceof BackupError) || err.code !== 'NOT_FOUND' || !repo.storage.history) throw err;
    let hidden: DeletedBackups;
    try {
      hidden = await deletedBackups(repo, database);
    } catch (e) {
      if (e instanceof BackupError && e.code === 'CONFIG') throw err; // no versions to look in
      throw e;
    }
    let manifest: Manifest;
    try {
      manifest = await hidden.repo.find(database, idOrLatest, opts);
    } catch (e) {
      throw e instanceof BackupError && e.code === 'NOT_FOUND' ? err : e;
    }
    log.warn(`backup ${manifest.id} was found deleted on ${repo.name}: it is read from the versions its delete left`, {
      id: manifest.id,
      target: repo.name,
      deleted_at: hidden.deletedAt.get(manifest.id)?.toISOString() ?? null,
    });
    return { manifest, repo: hidden.repo, deleted: true };
  }
}

/** The current version of a name; undefined when it was deleted (a delete marker is current) or only older versions remain. */
function current(vs: ObjectVersion[]): ObjectVersion | undefined {
  const latest = vs.find((v) => v.latest);
  return latest && !latest.deleteMarker ? latest : undefined;
}

/** The newest version that is not a delete marker (a name's versions are listed newest first). */
function newest(vs: ObjectVersion[]): ObjectVersion | undefined {
  let best: ObjectVersion | undefined;
  for (const v of vs) {
    if (v.deleteMarker) continue;
    if (!best || (v.modified && best.modified && v.modified > best.modified)) best = v;
  }
  return best;
}

/** A Storage that reads the chosen versions of objects, as they were before the delete; it writes nothing. */
class HiddenVersions implements Storage {
  readonly name: string;
  readonly location: string;

  constructor(
    of: Storage,
    private readonly source: ObjectHistory,
    private readonly versions: Map<string, ObjectVersion>,
  ) {
    this.name = of.name;
    this.location = `${of.location}, deleted backups (older versions)`;
  }

  private version(name: string): ObjectVersion {
    const v = this.versions.get(name);
    if (!v)
      throw new BackupError('NOT_FOUND', `${this.name}: no version of ${name} is left`, {
        hint: `\`basement-backup list --target ${this.name} --deleted\` shows what is.`,
      });
    return v;
  }

  readText(name: string): Promise<string> {
    return Promise.resolve().then(() => this.source.readText(this.version(name)));
  }

  openRead(name: string): Readable {
    return this.source.openRead(this.version(name));
  }

  list(prefix = ''): Promise<StoredObject[]> {
    const objects = [...this.versions.entries()].filter(([name]) => name.startsWith(prefix)).map(([name, v]) => ({ name, size: v.size ?? 0 }));
    return Promise.resolve(objects.sort((a, b) => a.name.localeCompare(b.name)));
  }

  stat(name: string): Promise<{ size: number } | undefined> {
    const v = this.versions.get(name);
    return Promise.resolve(v ? { size: v.size ?? 0 } : undefined);
  }

  freeBytes(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  cleanupTemporary(): Promise<string[]> {
    return Promise.resolve([]);
  }

  listTemporary(): Promise<[]> {
    return Promise.resolve([]);
  }

  createWriter(): Promise<never> {
    return this.readOnly();
  }

  writeAtomic(): Promise<never> {
    return this.readOnly();
  }

  delete(): Promise<never> {
    return this.readOnly();
  }

  private readOnly(): Promise<never> {
    return Promise.reject(new BackupError('INTERNAL', `the deleted backups on ${this.name} are read from their versions and are not written to`));
  }
}
