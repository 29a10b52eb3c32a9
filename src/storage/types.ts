import type { LifecycleRule } from './s3-api';
import type { Readable, Writable } from 'node:stream';

/**
 * Where backups are kept. Drivers take plain arguments, never the configuration; a factory maps
 * configuration to a driver.
 *
 * Guarantees every driver gives:
 * - An object written through `createWriter` is invisible under its name until `commit()`
 *   resolves, and then it is durable (fsynced, or acknowledged by the remote store). `abort()`
 *   leaves no trace. A crash leaves at most a temporary object that `cleanupTemporary` removes.
 * - `writeAtomic` replaces an object whole: readers see the old or the new content, never a mix.
 * - `list` is consistent with completed commits and deletes of this process.
 */
export interface Storage {
  /** Short name for logs and alerts, e.g. "local". */
  readonly name: string;
  /** Where it is, for humans; never contains credentials. */
  readonly location: string;
  createWriter(name: string, opts?: PutOptions): Promise<ObjectWriter>;
  writeAtomic(name: string, data: string | Buffer, opts?: PutOptions): Promise<void>;
  readText(name: string): Promise<string>;
  openRead(name: string): Readable;
  /** The objects, by name; only those whose names start with `prefix` when it is given (S3 asks the bucket for those only). */
  list(prefix?: string): Promise<StoredObject[]>;
  /** Size (and ETag, where the store has one) of one object as stored now; undefined when it is not there. */
  stat(name: string): Promise<ObjectStat | undefined>;
  /**
   * Deleting an object that is not there is not an error. In a bucket with versions (Object
   * Lock) it hides the object behind a delete marker; its versions stay (see `locks`).
   */
  delete(name: string): Promise<void>;
  /** Bytes free for new backups, when the driver can tell. */
  freeBytes(): Promise<number | undefined>;
  /**
   * Removes what crashed writes of objects matching `belongs` left behind; returns the names
   * removed. Call it only while holding the lock that guards writers of those objects; a
   * temporary object the driver knows to be in use (`TemporaryObject.inUse`) is never removed.
   */
  cleanupTemporary(belongs: (finalName: string) => boolean): Promise<string[]>;
  /** What `cleanupTemporary(belongs)` would look at: the temporary objects of matching names now, left or being written. */
  listTemporary(belongs: (finalName: string) => boolean): Promise<TemporaryObject[]>;
  /** A local path for the object, when the driver has one (for pg_restore). */
  localPath?(name: string): string;
  /** S3 Object Lock, on a driver configured for it: the versions of objects, their locks, and their removal. */
  readonly locks?: ObjectLocks;
  /** The older versions a bucket with versioning keeps (S3): what a delete only hid, read back. A local directory has none. */
  readonly history?: ObjectHistory;
  /**
   * Append-only (`delete: false`): the driver never sends a delete of an object (`delete`,
   * `locks.purge` and a damaged upload's removal refuse before any request). Aborting an
   * unfinished multipart upload is not a delete of data and still happens (`cleanupTemporary`).
   */
  readonly appendOnly?: boolean;
  /** The bucket's own settings, on a driver that has a bucket (S3): for `config check`. */
  readonly bucket?: BucketSettings;
}

/** A bucket's settings as `config check` reads them; 'unknown' when this key may not read them. */
export interface BucketSettings {
  versioning(): Promise<Versioning>;
  /** The lifecycle rules; 'none' when the bucket has no lifecycle configuration. */
  lifecycle(): Promise<LifecycleRule[] | 'none' | 'unknown'>;
  /**
   * `config check` only, on an append-only target: tries to delete (plainly, no version) the
   * object `name`; 'refused' when the bucket refused it (AccessDenied), 'deleted' when it went.
   */
  tryDelete(name: string): Promise<'refused' | 'deleted'>;
}

/** How an object is written: under S3 Object Lock (a driver without `locks` ignores it). */
export interface PutOptions {
  lock?: ObjectLock | undefined;
}

export interface ObjectLock {
  mode: 'COMPLIANCE' | 'GOVERNANCE';
  /** Nobody deletes or overwrites the version before this (governance: but a key allowed to bypass it). */
  until: Date;
}

/** One stored version of an object (or a delete marker), in a bucket with versions. */
export interface ObjectVersion {
  name: string;
  versionId: string;
  deleteMarker: boolean;
  /** The current version of its name (IsLatest); a delete marker that is current hides the object. */
  latest?: boolean;
  /** Bytes (not of a delete marker). */
  size?: number;
  modified?: Date;
}

/** Whether a bucket keeps versions: 'off' when it never did (a delete is final), 'unsupported' when the server has no versioning. */
/** A bucket's versioning: 'unsupported' by a server without it (s3rver), 'unknown' when this key may not read it. */
export type Versioning = 'enabled' | 'suspended' | 'off' | 'unsupported' | 'unknown';

/**
 * The versions a bucket with versioning keeps of every object: a delete (by this program, or by
 * anyone with the key) only hides the object behind a delete marker, and its versions stay
 * readable here until they are removed for good (a lifecycle rule, `ObjectLocks.purge`).
 */
export interface ObjectHistory {
  versioning(): Promise<Versioning>;
  /** Every version and delete marker of the objects whose names start with `prefix`, with `latest`, `size` and `modified`. */
  versions(prefix: string): Promise<ObjectVersion[]>;
  readText(v: ObjectVersion): Promise<string>;
  /** Streams one version (GetObject VersionId); errors arrive on the stream, as BackupErrors. */
  openRead(v: ObjectVersion): Readable;
}

/**
 * The versions behind objects in a bucket with Object Lock. A locked object is never
 * overwritten: a new write is a new version, a delete a delete marker; only `purge` after its
 * lock passed frees a version.
 */
export interface ObjectLocks {
  /** Throws a CONFIG error naming the fix when the bucket does not have Object Lock enabled. */
  check(): Promise<void>;
  /** Every version and delete marker of the objects whose names start with `prefix`. */
  versions(prefix: string): Promise<ObjectVersion[]>;
  /** The lock on one version now; undefined when it has none (a delete marker, an unlocked version). */
  lockOf(v: ObjectVersion): Promise<ObjectLock | undefined>;
  /** Lengthens the lock on one version (PutObjectRetention); S3 refuses to shorten a compliance lock. */
  extend(v: ObjectVersion, lock: ObjectLock): Promise<void>;
  /** Removes one version or delete marker for good; a version still locked fails (STORAGE). */
  purge(v: ObjectVersion): Promise<void>;
  /**
   * `config check` only: tries to delete one locked version, with the governance bypass header
   * when `bypass`; 'refused' when the bucket refused it (AccessDenied), 'deleted' when it is gone.
   */
  tryDelete(v: ObjectVersion, bypass: boolean): Promise<'refused' | 'deleted'>;
}

export interface ObjectWriter {
  readonly stream: Writable;
  /** Call after `stream` has finished. Makes the object durable and visible under its name. */
  commit(): Promise<void>;
  /** Removes the temporary object; safe to call at any point, and twice. */
  abort(): Promise<void>;
}

export interface ObjectStat {
  size: number;
  etag?: string | undefined;
}

/** A temporary object beneath the interface: one being written, or what a crash left. */
export interface TemporaryObject {
  /** Its own name (a hidden file, an upload's key). */
  name: string;
  /** The object it would have become. */
  finalName: string;
  /** Bytes, when the store tells. */
  size: number | undefined;
  /** Its writer is known to be running (a process alive on this host): not a leftover. */
  inUse: boolean;
}

export interface StoredObject {
  name: string;
  size: number;
  /** When it was stored (file mtime, S3 LastModified), where the listing says. */
  modified?: Date | undefined;
}
