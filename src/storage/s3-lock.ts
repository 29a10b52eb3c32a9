import { BackupError } from '../errors';
import type { S3Api, S3CallOptions } from './s3-api';
import type { SdkError } from './s3-failure';
import type { ObjectLock, ObjectLocks, ObjectVersion } from './types';

/** What the Object Lock calls need of their storage. */
export interface LockContext {
  api: S3Api;
  bucket: string;
  prefix: string;
  /** The target's name, for messages. */
  target: string;
  call: () => S3CallOptions;
  /** A failed request as the BackupError that names it (s3Failure). */
  fail(op: string, name: string, err: unknown): BackupError;
  /** `delete: false`: `purge` refuses before sending anything. */
  appendOnly?: boolean;
}

/**
 * A delete asked of an append-only target (`delete: false`): refused before any request. The
 * use cases never ask one there; this is the driver's guarantee should one ever try.
 */
export function appendOnlyRefusal(target: string, name: string): BackupError {
  return new BackupError('STORAGE', `${target}: not deleting ${name}: the target is append-only (delete: false)`, {
    hint: "Nothing is deleted on this target; the bucket's lifecycle rules expire its objects (`basement-backup config check` prints the rule).",
  });
}

/** Where the per-provider steps are written down. */
export const OBJECT_LOCK_DOCS = 'docs/offsite.md#object-lock';

/** The fix for a bucket without Object Lock: it is (on most providers) chosen when the bucket is created. */
export function noLockHint(target: string): string {
  return (
    `Object Lock is switched on when a bucket is created: create a new bucket with it (AWS: aws s3api create-bucket --object-lock-enabled-for-bucket; ` +
    `Backblaze B2: "Object Lock: Enable" when creating the bucket; MinIO: mc mb --with-lock; Ceph radosgw: create-bucket with x-amz-bucket-object-lock-enabled: true) ` +
    `and point the ${target} target at it, or remove object_lock (S3_OBJECT_LOCK) from the target; see ${OBJECT_LOCK_DOCS}.`
  );
}

/** S3 Object Lock on one bucket and prefix (see ObjectLocks). */
export function s3Locks(c: LockContext): ObjectLocks {
  let checked: Promise<void> | undefined;
  return {
    check() {
      checked ??= checkBucket(c);
      checked.catch(() => {
        checked = undefined;
      });
      return checked;
    },
    versions: (prefix) => listVersions(c, prefix),
    async lockOf(v) {
      if (v.deleteMarker) return undefined;
      try {
        const r = await c.api.headObject({ Bucket: c.bucket, Key: c.prefix + v.name, VersionId: v.versionId }, c.call());
        const mode = r.ObjectLockMode?.toUpperCase();
        if ((mode !== 'COMPLIANCE' && mode !== 'GOVERNANCE') || !r.ObjectLockRetainUntilDate) return undefined;
        return { mode, until: new Date(r.ObjectLockRetainUntilDate) };
      } catch (err) {
        throw c.fail('reading the lock of', `${v.name} (version ${v.versionId})`, err);
      }
    },
    async extend(v: ObjectVersion, lock: ObjectLock) {
      try {
        await c.api.putObjectRetention(
          { Bucket: c.bucket, Key: c.prefix + v.name, VersionId: v.versionId, Retention: { Mode: lock.mode, RetainUntilDate: lock.until } },
          c.call(),
        );
      } catch (err) {
        throw c.fail(`extending the lock (to ${lock.until.toISOString()}) of`, `${v.name} (version ${v.versionId})`, err);
      }
    },
    async tryDelete(v, bypass) {
      try {
        await c.api.deleteObject(
          { Bucket: c.bucket, Key: c.prefix + v.name, VersionId: v.versionId, ...(bypass ? { BypassGovernanceRetention: true } : {}) },
          c.call(),
        );
        return 'deleted';
      } catch (err) {
        if ((err as SdkError).name === 'AccessDenied' || (err as SdkError).$metadata?.httpStatusCode === 403) return 'refused';
        throw c.fail('deleting', `${v.name} (version ${v.versionId})`, err);
      }
    },
    async purge(v) {
      if (c.appendOnly) throw appendOnlyRefusal(c.target, `${v.name} (version ${v.versionId})`);
      try {
        await c.api.deleteObject({ Bucket: c.bucket, Key: c.prefix + v.name, VersionId: v.versionId }, c.call());
      } catch (err) {
        throw c.fail('deleting', `${v.name} (version ${v.versionId})`, err);
      }
    },
  };
}

/** GetObjectLockConfiguration: the bucket must have Object Lock enabled. */
async function checkBucket(c: LockContext): Promise<void> {
  let enabled: string | undefined;
  try {
    enabled = (await c.api.getObjectLockConfiguration({ Bucket: c.bucket }, c.call())).ObjectLockConfiguration?.ObjectLockEnabled;
  } catch (err) {
    const e = err as SdkError;
    const status = e.$metadata?.httpStatusCode;
    // no configuration (AWS, Ceph: 404 ObjectLockConfigurationNotFoundError), or a server without Object Lock at all
    if (!(status === 404 || status === 400 || status === 405 || status === 501) || e.name === 'NoSuchBucket')
      throw c.fail('reading the Object Lock setting of bucket', c.bucket, err);
    enabled = undefined;
  }
  if (enabled !== 'Enabled') {
    throw new BackupError('CONFIG', `${c.target}: bucket ${c.bucket} does not have Object Lock enabled, but the target asks for object_lock`, {
      hint: noLockHint(c.target),
    });
  }
}

/** ListObjectVersions under `prefix`, page by page. */
export async function listVersions(c: LockContext, prefix: string): Promise<ObjectVersion[]> {
  const out: ObjectVersion[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  const name = (key: string | undefined) => (key ?? '').slice(c.prefix.length);
  try {
    do {
      const r = await c.api.listObjectVersions({ Bucket: c.bucket, Prefix: c.prefix + prefix, KeyMarker, VersionIdMarker }, c.call());
      for (const v of r.Versions ?? [])
        if (v.VersionId)
          out.push({ name: name(v.Key), versionId: v.VersionId, deleteMarker: false, latest: v.IsLatest, size: v.Size, modified: v.LastModified });
      for (const v of r.DeleteMarkers ?? [])
        if (v.VersionId) out.push({ name: name(v.Key), versionId: v.VersionId, deleteMarker: true, latest: v.IsLatest, modified: v.LastModified });
      KeyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
      VersionIdMarker = r.IsTruncated ? r.NextVersionIdMarker : undefined;
    } while (KeyMarker);
  } catch (err) {
    throw c.fail('listing the versions of', prefix, err);
  }
  return out;
}
