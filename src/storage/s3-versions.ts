import type { Readable } from 'node:stream';
import type { SdkError } from './s3-failure';
import { listVersions, type LockContext } from './s3-lock';
import type { ObjectHistory, ObjectVersion, Versioning } from './types';

/** What reading a bucket's versions needs of its storage: the lock context's calls, and its reads by VersionId. */
export interface VersionsContext extends LockContext {
  readText(name: string, versionId: string): Promise<string>;
  openRead(name: string, versionId: string): Readable;
}

/** The versions a bucket with versioning keeps (see ObjectHistory), over ListObjectVersions and GetObject VersionId. */
export function s3History(c: VersionsContext): ObjectHistory {
  return {
    versioning: () => bucketVersioning(c),
    versions: (prefix) => listVersions(c, prefix),
    readText: (v: ObjectVersion) => c.readText(v.name, v.versionId),
    openRead: (v: ObjectVersion) => c.openRead(v.name, v.versionId),
  };
}

/** GetBucketVersioning: Status is absent on a bucket whose versioning was never turned on. */
export async function bucketVersioning(c: Pick<LockContext, 'api' | 'bucket' | 'call' | 'fail'>): Promise<Versioning> {
  let status: string | undefined;
  try {
    status = (await c.api.getBucketVersioning({ Bucket: c.bucket }, c.call())).Status;
  } catch (err) {
    const e = err as SdkError;
    const code = e.$metadata?.httpStatusCode;
    if (e.name === 'AccessDenied' || code === 403) return 'unknown';
    // a server without versioning at all (s3rver: NotImplemented)
    if (e.name !== 'NoSuchBucket' && (code === 501 || code === 405 || e.name === 'NotImplemented')) return 'unsupported';
    throw c.fail('reading the versioning setting of bucket', c.bucket, err);
  }
  if (status === 'Enabled') return 'enabled';
  return status === 'Suspended' ? 'suspended' : 'off';
}
