import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BackupFormat } from '../config/types';
import { BackupError } from '../errors';
import { log } from '../logger';
import { checkStored, readStoredDigest, storedTap, type StoredDigest } from '../pipeline/checksum';
import {
  belongsTo,
  dataFileName,
  idOf,
  idTime,
  manifestFileName,
  newestFirst,
  provesDamage,
  readManifest,
  isRolesFile,
  rolesFileName,
  type StoredCompression,
  verificationFileName,
  pinFileName,
  readPin,
  keepUntilOf,
  type Manifest,
  type Pin,
  type TargetState,
  type Verification,
} from './manifest';
import type { ObjectWriter, PutOptions, Storage, StoredObject, TemporaryObject } from '../storage/types';
import { extendLocks, heldUntil, purgeVersions, putOptions, type LockPolicy } from './locking';

export interface ListedBackup {
  id: string;
  /** Undefined when the manifest cannot be read: the backup is then damaged. */
  manifest: Manifest | undefined;
  /** Data object size as stored now; undefined when the data object is missing. */
  storedSize: number | undefined;
  /** Why this backup cannot be trusted (unreadable manifest, missing or changed data, a failed check); undefined when good. */
  damage: string | undefined;
}

/** A backup that can be relied on: its manifest, its data of the recorded size, and no failed check. */
export type GoodBackup = ListedBackup & { manifest: Manifest; damage: undefined };

export interface Listing {
  /** Every backup with a manifest file, newest first (by sequence number). */
  backups: ListedBackup[];
  /** Objects of the database that no manifest owns: left by a crash between the data and its manifest, or during a delete. */
  orphans: StoredObject[];
}

export function isGood(b: ListedBackup): b is GoodBackup {
  return b.manifest !== undefined && b.damage === undefined;
}

/** The stored object's sha256 and size, read through once. */
export function storedChecksum(storage: Storage, name: string): Promise<StoredDigest> {
  return readStoredDigest(storage.openRead(name));
}

/**
 * Which of two records of checks on one backup is kept. A record that proves damage is replaced
 * only by a check that proves the contrary (a passed drill; for damaged bytes, a passed checksum);
 * a check that could not run never hides damage, and a checksum-only pass never replaces a drill.
 */
export function supersedes(next: Verification, prev: Verification | undefined): boolean {
  if (prev === undefined || provesDamage(next)) return true;
  const nextIsDrill = next.kind !== 'checksum';
  const prevIsDrill = prev.kind !== 'checksum';
  if (provesDamage(prev)) return next.ok && (nextIsDrill || !prevIsDrill);
  return nextIsDrill || !prevIsDrill;
}

/** The manifest file's content: the manifest without the record of checks, which is kept beside it. */
function manifestText(m: Manifest): string {
  const copy = { ...m };
  delete copy.verification;
  delete copy.pin;
  return JSON.stringify(copy, null, 2) + '\n';
}

/**
 * One backup being written to one repository, in the only safe order: the data, then the roles
 * beside it, then (last) the manifest, from which on the backup exists. Until the manifest is
 * written, `abort()` removes everything of this backup that was written here.
 */
export class BackupWriter {
  private dataCommitted = false;
  private rolesWritten = false;
  private finished = false;

  constructor(
    private readonly storage: Storage,
    private readonly data: ObjectWriter,
    private readonly names: { file: string; roles: string | null },
    /** How its roles and manifest are written (the lock of a locked target). */
    private readonly put: PutOptions = {},
  ) {}

  /** The data object's bytes go here; end it before `commitData`. */
  get stream(): Writable {
    return this.data.stream;
  }

  /**
   * Makes the data durable and visible under its name, then writes `roles` (pg_dumpall's output)
   * beside it when given. Returns the data's ETag where the store has one, for the manifest:
   * retention confirms the copy by it later without reading it all.
   */
  async commitData(extras: { roles?: string | undefined }): Promise<{ etag?: string }> {
    this.dataCommitted = true;
    await this.data.commit();
    const etag = this.storage.localPath ? undefined : (await this.storage.stat(this.names.file))?.etag;
    if (extras.roles !== undefined) {
      if (this.names.roles === null) throw new Error('this backup has no roles file');
      this.rolesWritten = true;
      await this.storage.writeAtomic(this.names.roles, extras.roles, this.put);
    }
    return etag ? { etag } : {};
  }

  /** Writes the manifest, last: the backup exists here now. When that fails, removes the data and roles, and throws. */
  async commit(m: Manifest): Promise<void> {
    try {
      await this.storage.writeAtomic(manifestFileName(m.id), manifestText(m), this.put);
      this.finished = true;
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Removes what was written of this backup here, unless its manifest was; safe at any point, and twice. */
  async abort(): Promise<void> {
    if (this.finished) return;
    await this.data.abort();
    // append-only (delete: false): what was committed stays, no manifest names it, the lifecycle rules expire it
    if (this.storage.appendOnly) this.dataCommitted = this.rolesWritten = false;
    if (this.dataCommitted) await this.storage.delete(this.names.file).catch(() => undefined);
    if (this.rolesWritten && this.names.roles) await this.storage.delete(this.names.roles).catch(() => undefined);
    this.dataCommitted = this.rolesWritten = false;
  }
}

/**
 * Backups as manifests plus data objects on one Storage. A backup exists when its manifest does;
 * it is good when the manifest reads, its data object has the recorded size, and no check of it
 * failed. Written data first, then the roles, the manifest last (`begin`, `copyTo`); deleted
 * manifest first (`remove`), so a half-written or half-deleted backup is never listed as good.
 * Every object of a backup is read, written and removed here.
 */
export class Repository {
  /** `lock`: the target writes every object of a backup under S3 Object Lock (see repository/locking.ts). */
  constructor(
    readonly storage: Storage,
    readonly lock?: LockPolicy,
  ) {}

  /** How an object of backup `id` (kept until `keepUntil`) is written: locked on a locked target. */
  private putOf(id: string, keepUntil: string | null): PutOptions {
    return putOptions(this.lock, this.storage.locks, id, keepUntil);
  }

  /** A locked target's bucket must have Object Lock (a CONFIG error naming the fix); else nothing to check. */
  async checkLock(): Promise<void> {
    if (this.lock) await this.storage.locks?.check();
  }

  /** The target's name, for logs, alerts and manifests. */
  get name(): string {
    return this.storage.name;
  }

  /** Where the backups are, for humans (never with credentials). */
  get location(): string {
    return this.storage.location;
  }

  /** Bytes free for new backups, when the store can tell. */
  freeBytes(): Promise<number | undefined> {
    return this.storage.freeBytes();
  }

  /** Reads a backup's data object (a restore, a drill). */
  openData(m: Manifest): Readable {
    return this.storage.openRead(m.file);
  }

  /** The local path of an object of a backup, when the store has one. */
  localPath(file: string): string | undefined {
    return this.storage.localPath?.(file);
  }

  /** Starts writing backup `id` in `format` (its data and roles encrypted, or not; kept until `keepUntil`, `--keep`): see BackupWriter. */
  async begin(id: string, format: BackupFormat, encrypted = false, stream?: StoredCompression, keepUntil: string | null = null): Promise<BackupWriter> {
    const file = dataFileName(id, format, encrypted, stream);
    const put = this.putOf(id, keepUntil);
    return new BackupWriter(this.storage, await this.storage.createWriter(file, put), { file, roles: rolesFileName(id, encrypted) }, put);
  }

  /**
   * Copies backup `m` from here to `dest`, as a backup is written there: the data (streamed
   * through sha256 and committed only when it matches the manifest), the roles, then the manifest,
   * which records the copy as synced from here. Nothing of it stays on `dest` when it fails.
   */
  async copyTo(dest: Repository, m: Manifest): Promise<void> {
    const put = dest.putOf(m.id, m.pin?.scope === 'all' ? keepUntilOf(m) : (m.keep_until ?? null));
    const writer = new BackupWriter(dest.storage, await dest.storage.createWriter(m.file, put), { file: m.file, roles: m.roles_file }, put);
    try {
      const tap = storedTap();
      await pipeline(this.storage.openRead(m.file), tap.stage, writer.stream);
      const { sha256: sha, size } = tap.result();
      if (!checkStored({ sha256: m.sha256, size: m.size_bytes }, { sha256: sha, size }).ok) {
        throw new BackupError('DAMAGED', `${m.file} on ${this.name} does not match its manifest (sha256 ${sha.slice(0, 12)}…, ${size} bytes)`, {
          hint: `Not copied to ${dest.name}. Run \`basement-backup verify --checksums-only --target ${this.name}\`.`,
        });
      }
      const { etag } = await writer.commitData({ roles: m.roles_file ? await this.storage.readText(m.roles_file) : undefined });
      const state: TargetState = { state: 'synced', at: new Date().toISOString(), from: this.name, ...(etag ? { etag } : {}) };
      await writer.commit({ ...m, targets: { ...(m.targets ?? {}), [dest.name]: state } });
      // a pin made for every target goes along; one made for this target stays here
      if (m.pin?.scope === 'all') await dest.writePin(m.id, m.pin);
    } finally {
      await writer.abort();
    }
  }

  /**
   * Rewrites backup `m`'s data and roles as new objects named `next` (re-encrypted, say): the
   * data from `data` (streamed through sha256 and committed only when `check` passes), the roles,
   * then the manifest `describe` returns, swapped in last, then the old objects are deleted.
   * Until the swap the backup is the old one, untouched; a crash before it or before the deletes
   * leaves objects no manifest names, which the next backup or prune removes as orphans.
   */
  async rewrite(
    m: Manifest,
    next: { file: string; roles: string | null },
    data: { stream: Readable; roles?: string | undefined; check(): void },
    describe: (stored: { sha256: string; size: number; etag?: string }) => Manifest,
  ): Promise<Manifest> {
    let writer: BackupWriter;
    try {
      const put = this.putOf(m.id, keepUntilOf(m));
      writer = new BackupWriter(this.storage, await this.storage.createWriter(next.file, put), next, put);
    } catch (err) {
      data.stream.destroy(); // nothing will read it: let go of what feeds it (a download, an age program)
      throw err;
    }
    try {
      const tap = storedTap();
      await pipeline(data.stream, tap.stage, writer.stream);
      data.check();
      const { etag } = await writer.commitData({ roles: data.roles });
      const written = describe({ ...tap.result(), ...(etag ? { etag } : {}) });
      await writer.commit(written);
      if (this.storage.appendOnly) return written; // the old objects are left for the lifecycle rules (delete: false)
      await this.storage.delete(m.file);
      if (m.roles_file && m.roles_file !== next.roles) await this.storage.delete(m.roles_file);
      return written;
    } finally {
      await writer.abort();
    }
  }

  /** Removes (and logs) the temporary objects interrupted writes (backup, sync, reencrypt) left of `database`'s backups. Only under its backup lock. */
  async removeLeftovers(database: string, stillWanted: () => boolean = () => true): Promise<string[]> {
    const removed = await this.storage.cleanupTemporary((n) => stillWanted() && belongsTo(database, n));
    if (removed.length > 0) log.warn('removed leftovers of an interrupted backup, sync or reencrypt', { target: this.name, files: removed });
    return removed;
  }

  /** The temporary objects of `database`'s backups now: being written, or left by an interrupted write. */
  temporaries(database: string): Promise<TemporaryObject[]> {
    return this.storage.listTemporary((n) => belongsTo(database, n));
  }

  /** The roles saved beside backup `m` (pg_dumpall --globals-only); undefined when it has none. */
  async readRoles(m: Manifest): Promise<string | undefined> {
    return m.roles_file ? await this.storage.readText(m.roles_file) : undefined;
  }

  /** The sha256 and size of `m`'s data object as stored now, read through once. */
  checksum(m: Manifest): Promise<{ sha256: string; size: number }> {
    return storedChecksum(this.storage, m.file);
  }

  /** The backups of `database` and the objects no manifest owns. */
  async scan(database: string): Promise<Listing> {
    const objects = await this.storage.list();
    const byId = new Map<string, StoredObject[]>();
    for (const o of objects) {
      const id = idOf(database, o.name);
      if (id === undefined) continue;
      byId.set(id, [...(byId.get(id) ?? []), o]);
    }
    const backups: ListedBackup[] = [];
    const orphans: StoredObject[] = [];
    for (const [id, group] of byId) {
      const manifestObject = group.find((o) => o.name === manifestFileName(id));
      if (!manifestObject) {
        orphans.push(...group);
        continue;
      }
      let text: string;
      try {
        text = await this.storage.readText(manifestObject.name);
      } catch (err) {
        if ((await this.storage.stat(manifestObject.name).catch(() => 'unknown')) === undefined) continue; // deleted while listing
        throw err;
      }
      const read = readManifest(text, id);
      if (!('manifest' in read)) {
        const data = group.find((o) => o.name !== manifestObject.name && !o.name.endsWith('.json') && !isRolesFile(o.name));
        backups.push({ id, manifest: undefined, storedSize: data?.size, damage: read.problem });
        continue;
      }
      const m = read.manifest;
      if (m.database !== database) continue;
      if (group.some((o) => o.name === verificationFileName(id))) {
        try {
          m.verification = JSON.parse(await this.storage.readText(verificationFileName(id))) as Verification;
        } catch {
          // an unreadable record of a check only means "not checked"
        }
      }
      if (group.some((o) => o.name === pinFileName(id))) m.pin = await this.readPinObject(id);
      // objects of this id the manifest does not name: left by an interrupted rewrite (reencrypt)
      const named = [manifestObject.name, m.file, m.roles_file, verificationFileName(id), pinFileName(id)];
      orphans.push(...group.filter((o) => !named.includes(o.name)));
      const storedSize = group.find((o) => o.name === m.file)?.size;
      backups.push({ id, manifest: m, storedSize, damage: damageOf(m, storedSize) });
    }
    backups.sort((a, b) => newestFirst(keyOf(a), keyOf(b)));
    return { backups, orphans };
  }

  /** Every backup of `database` with a manifest file, good or damaged, newest first. */
  async list(database: string): Promise<ListedBackup[]> {
    return (await this.scan(database)).backups;
  }

  /** Good backups, newest first (by sequence number). */
  async listGood(database: string): Promise<Manifest[]> {
    return (await this.list(database)).filter(isGood).map((b) => b.manifest);
  }

  /**
   * Until when a lock still holds on an object of backup `id` (of `only`, when given), on a
   * locked target; undefined when nothing of it is locked (or the target has no locks).
   */
  async lockedUntil(id: string, only?: string[]): Promise<Date | undefined> {
    const locks = this.storage.locks;
    return locks ? heldUntil(locks, id, new Date(), only) : undefined;
  }

  /**
   * Removes a backup: the manifest first, then the data, the roles and the record of checks. On a
   * locked target every version of its objects goes, and only once no lock holds on any: until
   * then nothing is deleted and the lock's end is returned.
   */
  async remove(m: Manifest): Promise<{ lockedUntil: Date } | undefined> {
    const locks = this.storage.locks;
    if (locks) {
      const until = await heldUntil(locks, m.id, new Date());
      if (until) return { lockedUntil: until };
      await purgeVersions(locks, m.id);
      return undefined;
    }
    await this.storage.delete(manifestFileName(m.id));
    await this.storage.delete(m.file);
    if (m.roles_file) await this.storage.delete(m.roles_file);
    await this.storage.delete(verificationFileName(m.id));
    await this.storage.delete(pinFileName(m.id));
    return undefined;
  }

  /**
   * Backup `id`'s pin. One that cannot be read keeps the backup forever (and says so): a pin is
   * there to protect a backup, and a damaged one must not let retention delete it.
   */
  private async readPinObject(id: string): Promise<Pin | undefined> {
    let text: string;
    try {
      text = await this.storage.readText(pinFileName(id));
    } catch (err) {
      if ((await this.storage.stat(pinFileName(id)).catch(() => 'unknown')) === undefined) return undefined; // removed while listing
      throw err;
    }
    return (
      readPin(text) ?? {
        keep_until: 'forever',
        note: `${pinFileName(id)} cannot be read; \`basement-backup pin\` or \`unpin\` rewrites it`,
        pinned_at: new Date(0).toISOString(),
        scope: 'target',
        host: '',
      }
    );
  }

  /**
   * Writes backup `id`'s pin (replacing any), or removes it (`undefined`). The manifest is not
   * touched. On a locked target the pin is a new version, locked as long as it keeps the backup,
   * and a pin that keeps it longer lengthens the lock of every object of the backup to match.
   */
  async writePin(id: string, pin: Pin | undefined): Promise<void> {
    if (pin === undefined) return this.storage.delete(pinFileName(id));
    const put = this.putOf(id, pin.keep_until);
    await this.storage.writeAtomic(pinFileName(id), JSON.stringify(pin, null, 2) + '\n', put);
    if (put.lock && this.storage.locks) {
      const n = await extendLocks(this.storage.locks, id, put.lock);
      if (n > 0) log.info('lengthened the Object Lock of a pinned backup', { id, target: this.name, until: put.lock.until.toISOString(), versions: n });
    }
  }

  /** Removes every object of backup `id`, its manifest first: for a damaged backup whose manifest may not read. */
  async removeBackup(database: string, id: string): Promise<{ lockedUntil: Date } | undefined> {
    const locks = this.storage.locks;
    if (locks) {
      const until = await heldUntil(locks, id, new Date());
      if (until) return { lockedUntil: until };
      await purgeVersions(locks, id);
      return undefined;
    }
    await this.storage.delete(manifestFileName(id));
    for (const o of await this.storage.list()) if (idOf(database, o.name) === id) await this.storage.delete(o.name);
    return undefined;
  }

  /**
   * Removes the objects of `listing` that no manifest owns and whose id is older than `before`
   * (left by a crash between a backup's data and its manifest, or during a delete), and logs
   * them. Call only under the database's backup lock, so no backup of this host is writing them.
   * Returns the listing without them. On an append-only target nothing is removed.
   */
  async removeOrphans(database: string, listing: Listing, before: Date): Promise<Listing> {
    if (this.storage.appendOnly) return listing; // the lifecycle rules expire them
    let old = listing.orphans.filter((o) => idTime(idOf(database, o.name) ?? '') < before.getTime());
    if (this.storage.locks) old = await this.purgeOrphans(database, old);
    if (old.length === 0) return listing;
    if (!this.storage.locks) for (const o of old) await this.storage.delete(o.name);
    log.warn('removed objects that no manifest owns (a backup or a delete was interrupted)', {
      target: this.storage.name,
      files: old.map((o) => o.name).join(','),
      bytes: old.reduce((s, o) => s + o.size, 0),
    });
    return { ...listing, orphans: listing.orphans.filter((o) => !old.includes(o)) };
  }

  /** On a locked target: removes every version of the orphans no lock holds on, and returns them; the others wait for their lock. */
  private async purgeOrphans(database: string, orphans: StoredObject[]): Promise<StoredObject[]> {
    const locks = this.storage.locks!;
    const purged: StoredObject[] = [];
    for (const id of new Set(orphans.map((o) => idOf(database, o.name)!))) {
      const names = orphans.filter((o) => idOf(database, o.name) === id).map((o) => o.name);
      const until = await heldUntil(locks, id, new Date(), names);
      if (until) {
        log.info('left objects that no manifest owns for their Object Lock to pass', {
          target: this.name,
          files: names.join(','),
          locked_until: until.toISOString(),
        });
        continue;
      }
      await purgeVersions(locks, id, names);
      purged.push(...orphans.filter((o) => names.includes(o.name)));
    }
    return purged;
  }

  /**
   * Records a check of backup `id`, unless the record already there says more (see `supersedes`).
   * Returns whether it was written.
   */
  async writeVerification(id: string, v: Verification): Promise<boolean> {
    let prev: Verification | undefined;
    try {
      prev = JSON.parse(await this.storage.readText(verificationFileName(id))) as Verification;
    } catch {
      prev = undefined;
    }
    if (!supersedes(v, prev)) return false;
    await this.storage.writeAtomic(verificationFileName(id), JSON.stringify(v, null, 2) + '\n', this.putOf(id, null));
    return true;
  }

  /**
   * Is the stored copy of `m` intact now? Size, and the ETag recorded when it was stored where the
   * store has one, else a fresh sha256 of every byte. Returns what is wrong, or undefined.
   */
  async confirmIntact(m: Manifest): Promise<string | undefined> {
    const st = await this.storage.stat(m.file);
    if (!st) return `the data file ${m.file} is missing`;
    if (st.size !== m.size_bytes) return `${m.file} is ${st.size} bytes, the manifest says ${m.size_bytes}`;
    const recorded = m.targets?.[this.storage.name]?.etag;
    if (recorded && st.etag) return st.etag === recorded ? undefined : `${m.file} has ETag ${st.etag}, recorded ${recorded} when it was stored`;
    const sum = await storedChecksum(this.storage, m.file);
    if (!checkStored({ sha256: m.sha256, size: m.size_bytes }, sum).ok) {
      return `${m.file} does not match its manifest (sha256 ${sum.sha256.slice(0, 16)}…, recorded ${m.sha256.slice(0, 16)}…)`;
    }
    return undefined;
  }

  /**
   * The good backup `idOrLatest` names ("latest": the newest by sequence number). A damaged one is
   * refused with why, unless `allowDamaged` (a drill may run again on it) and its manifest reads.
   */
  async find(database: string, idOrLatest: string, opts: { allowDamaged?: boolean } = {}): Promise<Manifest> {
    const all = await this.list(database);
    const good = all.filter(isGood);
    if (idOrLatest === 'latest' && good[0]) return good[0].manifest;
    const named = all.find((b) => b.id === idOrLatest || b.manifest?.file === idOrLatest);
    if (named && isGood(named)) return named.manifest;
    if (named?.manifest && opts.allowDamaged && named.storedSize !== undefined) return named.manifest;
    const known = good.slice(0, 5).map((b) => b.id);
    const others = known.length > 0 ? `\`basement-backup list\` shows them; the newest: ${known.join(', ')}.` : 'Take one with `basement-backup backup`.';
    if (named) {
      throw new BackupError('DAMAGED', `backup ${named.id} of ${database} in ${this.storage.location} is damaged: ${named.damage}`, {
        hint: `Use another backup: ${others}`,
      });
    }
    throw new BackupError(
      'NOT_FOUND',
      idOrLatest === 'latest'
        ? `there is no good backup of ${database} in ${this.storage.location}`
        : `no good backup "${idOrLatest}" of ${database} in ${this.storage.location}`,
      { hint: others },
    );
  }
}

function keyOf(b: ListedBackup): { seq?: number; created_at: string; id: string } {
  if (b.manifest) return b.manifest;
  const t = idTime(b.id);
  return { id: b.id, created_at: Number.isNaN(t) ? '' : new Date(t).toISOString() };
}

function damageOf(m: Manifest, storedSize: number | undefined): string | undefined {
  if (storedSize === undefined) return `the data file ${m.file} is missing`;
  if (storedSize !== m.size_bytes) return `${m.file} is ${storedSize} bytes, the manifest says ${m.size_bytes}`;
  const v = m.verification;
  if (provesDamage(v)) {
    return `${v!.kind === 'checksum' ? 'failed a checksum check' : 'failed its restore drill'} at ${v!.verified_at}: ${v!.error ?? 'see verify'}`;
  }
  return undefined;
}
