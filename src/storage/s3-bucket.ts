import type { BackupError } from '../errors';
import type { LifecycleRule, S3Api, S3CallOptions } from './s3-api';
import type { SdkError } from './s3-failure';
import { bucketVersioning } from './s3-versions';
import type { BucketSettings } from './types';

/** What the bucket's settings need of their storage. */
export interface BucketContext {
  api: S3Api;
  bucket: string;
  prefix: string;
  call: () => S3CallOptions;
  /** A failed request as the BackupError that names it (s3Failure). */
  fail(op: string, name: string, err: unknown): BackupError;
}

function denied(err: unknown): boolean {
  const e = err as SdkError;
  return e.name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403;
}

/** The bucket-wide settings `config check` reads, and its one deliberate delete (see BucketSettings). */
export function s3BucketSettings(c: BucketContext): BucketSettings {
  return {
    versioning: () => bucketVersioning(c),
    async lifecycle(): Promise<LifecycleRule[] | 'none' | 'unknown'> {
      try {
        return (await c.api.getBucketLifecycleConfiguration({ Bucket: c.bucket }, c.call())).Rules ?? 'none';
      } catch (err) {
        const e = err as SdkError;
        if (e.name === 'NoSuchLifecycleConfiguration' || e.$metadata?.httpStatusCode === 404) return 'none';
        if (denied(err)) return 'unknown';
        throw c.fail('reading the lifecycle configuration of bucket', c.bucket, err);
      }
    },
    async tryDelete(name) {
      try {
        await c.api.deleteObject({ Bucket: c.bucket, Key: c.prefix + name }, c.call());
        return 'deleted';
      } catch (err) {
        if (denied(err)) return 'refused';
        throw c.fail('deleting', name, err);
      }
    },
  };
}
