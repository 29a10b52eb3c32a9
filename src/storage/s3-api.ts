import type * as Sdk from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { idleGuard } from '../util/streams';

/** Per call: a signal that cancels it (and the download of a GetObject body). */
export interface S3CallOptions {
  signal?: AbortSignal | undefined;
}

export type LockMode = 'COMPLIANCE' | 'GOVERNANCE';

/** S3 Object Lock on a written object: x-amz-object-lock-mode and -retain-until-date. */
export interface LockHeaders {
  ObjectLockMode?: LockMode;
  ObjectLockRetainUntilDate?: Date;
}

/** One rule of a bucket's lifecycle configuration, as GetBucketLifecycleConfiguration tells it (the parts read). */
export interface LifecycleRule {
  ID?: string;
  Status?: string;
  /** The old form of the filter. */
  Prefix?: string;
  Filter?: { Prefix?: string; And?: { Prefix?: string } };
  Expiration?: { Days?: number; Date?: Date };
  NoncurrentVersionExpiration?: { NoncurrentDays?: number };
  AbortIncompleteMultipartUpload?: { DaysAfterInitiation?: number };
}

/**
 * The slice of S3 that basement-backup uses, as its own type: the rest of the code does not
 * depend on the SDK. `createS3Api` adapts @aws-sdk/client-s3 to it.
 *
 * Every call has a deadline (see `S3ClientOptions.timeoutMs`) and fails with an error named
 * `TimeoutError` when it is missed, or `AbortError` when its signal fired.
 */
export interface S3Api {
  putObject(i: { Bucket: string; Key: string; Body: Buffer; ContentMD5: string } & LockHeaders, o?: S3CallOptions): Promise<{ ETag?: string }>;
  getObject(i: { Bucket: string; Key: string; VersionId?: string }, o?: S3CallOptions): Promise<{ Body: Readable; ContentLength?: number }>;
  headObject(
    i: { Bucket: string; Key: string; VersionId?: string },
    o?: S3CallOptions,
  ): Promise<{ ContentLength?: number; ETag?: string; VersionId?: string; ObjectLockMode?: string; ObjectLockRetainUntilDate?: Date }>;
  listObjectsV2(
    i: { Bucket: string; Prefix: string; ContinuationToken?: string },
    o?: S3CallOptions,
  ): Promise<{
    Contents?: { Key?: string; Size?: number; LastModified?: Date }[];
    IsTruncated?: boolean;
    NextContinuationToken?: string;
  }>;
  deleteObject(i: { Bucket: string; Key: string; VersionId?: string; BypassGovernanceRetention?: boolean }, o?: S3CallOptions): Promise<unknown>;
  createMultipartUpload(i: { Bucket: string; Key: string } & LockHeaders, o?: S3CallOptions): Promise<{ UploadId?: string }>;
  listObjectVersions(
    i: { Bucket: string; Prefix: string; KeyMarker?: string; VersionIdMarker?: string },
    o?: S3CallOptions,
  ): Promise<{
    Versions?: { Key?: string; VersionId?: string; IsLatest?: boolean; Size?: number; LastModified?: Date }[];
    DeleteMarkers?: { Key?: string; VersionId?: string; IsLatest?: boolean; LastModified?: Date }[];
    IsTruncated?: boolean;
    NextKeyMarker?: string;
    NextVersionIdMarker?: string;
  }>;
  putObjectRetention(
    i: { Bucket: string; Key: string; VersionId?: string; Retention: { Mode: LockMode; RetainUntilDate: Date } },
    o?: S3CallOptions,
  ): Promise<unknown>;
  getObjectLockConfiguration(i: { Bucket: string }, o?: S3CallOptions): Promise<{ ObjectLockConfiguration?: { ObjectLockEnabled?: string } }>;
  getBucketVersioning(i: { Bucket: string }, o?: S3CallOptions): Promise<{ Status?: string }>;
  getBucketLifecycleConfiguration(i: { Bucket: string }, o?: S3CallOptions): Promise<{ Rules?: LifecycleRule[] }>;
  uploadPart(
    i: { Bucket: string; Key: string; UploadId: string; PartNumber: number; Body: Buffer; ContentMD5: string },
    o?: S3CallOptions,
  ): Promise<{ ETag?: string }>;
  completeMultipartUpload(
    i: {
      Bucket: string;
      Key: string;
      UploadId: string;
      MultipartUpload: { Parts: { ETag: string; PartNumber: number }[] };
    },
    o?: S3CallOptions,
  ): Promise<{ ETag?: string }>;
  abortMultipartUpload(i: { Bucket: string; Key: string; UploadId: string }, o?: S3CallOptions): Promise<unknown>;
  listMultipartUploads(
    i: { Bucket: string; Prefix: string; KeyMarker?: string; UploadIdMarker?: string },
    o?: S3CallOptions,
  ): Promise<{
    Uploads?: { Key?: string; UploadId?: string }[];
    IsTruncated?: boolean;
    NextKeyMarker?: string;
    NextUploadIdMarker?: string;
  }>;
  destroy(): void;
}

export interface S3ClientOptions {
  endpoint: string | undefined;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /** Attempts per request (each part of a multipart upload is retried on its own). */
  maxAttempts: number;
  /**
   * The deadline, in ms. Each attempt fails when connecting takes longer, or when no byte moves
   * for this long (an endpoint that accepts connections and never answers). A call that sends
   * or awaits little data (everything but uploading a part and completing an upload) fails when
   * all its attempts together take longer. A GetObject body fails when it delivers nothing for
   * this long while it is being read.
   */
  timeoutMs: number;
}

/** The error a missed deadline rejects with. */
function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

function abortError(): Error {
  return Object.assign(new Error('cancelled'), { name: 'AbortError' });
}

/**
 * Runs `fn` with a signal that fires when `o.signal` does, or after `deadlineMs` (when given);
 * rejects with a TimeoutError or AbortError then, whatever the SDK made of it.
 */
async function withDeadline<T>(o: S3CallOptions | undefined, deadlineMs: number | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const parent = o?.signal;
  if (parent?.aborted) throw abortError();
  const ac = new AbortController();
  const cancel = () => ac.abort(abortError());
  parent?.addEventListener('abort', cancel, { once: true });
  const timer =
    deadlineMs === undefined ? undefined : setTimeout(() => ac.abort(timeoutError(`no answer within ${Math.round(deadlineMs / 1000)} s`)), deadlineMs);
  try {
    return await fn(ac.signal);
  } catch (err) {
    if (ac.signal.aborted) throw ac.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener('abort', cancel);
  }
}

/**
 * The SDK is loaded on first use, so commands and configurations without an S3 target do not
 * pay for it at start-up.
 */
export function createS3Api(o: S3ClientOptions): S3Api {
  type Loaded = { sdk: typeof Sdk; client: Sdk.S3Client };
  const seconds = Math.round(o.timeoutMs / 1000);
  // socketTimeout: an attempt with no traffic for timeoutMs fails (and is retried). Downloads use
  // a second client without it: a body paused by a slow reader is not a silent server, and
  // `idleGuard` watches it instead.
  const make = (sdk: typeof Sdk, socketTimeout: number): Sdk.S3Client =>
    new sdk.S3Client({
      endpoint: o.endpoint,
      region: o.region,
      credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
      forcePathStyle: o.forcePathStyle,
      maxAttempts: o.maxAttempts,
      requestHandler: { connectionTimeout: o.timeoutMs, socketTimeout },
      // S3-compatible providers (B2, R2, Spaces, MinIO) reject the SDK's default extra checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  let sdkP: Promise<typeof Sdk> | undefined;
  // (loadConfig switches off the SDK's Node-version warning)
  const loadSdk = () => (sdkP ??= import('@aws-sdk/client-s3'));
  let loaded: Promise<Loaded> | undefined;
  let reader: Promise<Loaded> | undefined;
  const load = () => (loaded ??= loadSdk().then((sdk) => ({ sdk, client: make(sdk, o.timeoutMs) })));
  const loadReader = () => (reader ??= loadSdk().then((sdk) => ({ sdk, client: make(sdk, 0) })));

  /** A call whose attempts together must finish within the deadline. */
  const quick = <T>(co: S3CallOptions | undefined, fn: (l: Loaded, abortSignal: AbortSignal) => Promise<T>): Promise<T> =>
    withDeadline(co, o.timeoutMs, async (abortSignal) => fn(await load(), abortSignal));
  /** A call that may take long while data moves: each attempt still fails without progress. */
  const long = <T>(co: S3CallOptions | undefined, fn: (l: Loaded, abortSignal: AbortSignal) => Promise<T>): Promise<T> =>
    withDeadline(co, undefined, async (abortSignal) => fn(await load(), abortSignal));

  return {
    putObject: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.PutObjectCommand(i), { abortSignal })),
    headObject: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.HeadObjectCommand(i), { abortSignal })),
    listObjectsV2: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.ListObjectsV2Command(i), { abortSignal })),
    deleteObject: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.DeleteObjectCommand(i), { abortSignal })),
    createMultipartUpload: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.CreateMultipartUploadCommand(i), { abortSignal })),
    abortMultipartUpload: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.AbortMultipartUploadCommand(i), { abortSignal })),
    listObjectVersions: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.ListObjectVersionsCommand(i), { abortSignal })),
    putObjectRetention: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.PutObjectRetentionCommand(i), { abortSignal })),
    getObjectLockConfiguration: (i, co) =>
      quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.GetObjectLockConfigurationCommand(i), { abortSignal })),
    getBucketVersioning: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.GetBucketVersioningCommand(i), { abortSignal })),
    getBucketLifecycleConfiguration: (i, co) =>
      quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.GetBucketLifecycleConfigurationCommand(i), { abortSignal })),
    listMultipartUploads: (i, co) => quick(co, ({ sdk, client }, abortSignal) => client.send(new sdk.ListMultipartUploadsCommand(i), { abortSignal })),
    uploadPart: (i, co) => long(co, ({ sdk, client }, abortSignal) => client.send(new sdk.UploadPartCommand(i), { abortSignal })),
    completeMultipartUpload: (i, co) => long(co, ({ sdk, client }, abortSignal) => client.send(new sdk.CompleteMultipartUploadCommand(i), { abortSignal })),
    getObject: async (i, co) => {
      const r = await withDeadline(co, o.timeoutMs, async (abortSignal) => {
        const { sdk, client } = await loadReader();
        return client.send(new sdk.GetObjectCommand(i), { abortSignal });
      });
      const body = idleGuard(r.Body as Readable, o.timeoutMs, () => timeoutError(`the download stopped: no data for ${seconds} s`));
      const parent = co?.signal;
      if (parent) {
        const cancel = () => body.destroy(abortError());
        parent.addEventListener('abort', cancel, { once: true });
        body.once('close', () => parent.removeEventListener('abort', cancel));
      }
      return { Body: body, ContentLength: r.ContentLength };
    },
    destroy: () => {
      void loaded?.then(({ client }) => client.destroy());
      void reader?.then(({ client }) => client.destroy());
    },
  };
}
