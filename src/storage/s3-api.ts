import type * as Sdk from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';

/**
 * The slice of S3 that basement-backup uses, as its own type: the rest of the code does not
 * depend on the SDK. `createS3Api` adapts @aws-sdk/client-s3 to it.
 */
export interface S3Api {
  putObject(i: { Bucket: string; Key: string; Body: Buffer; ContentMD5: string }): Promise<{ ETag?: string }>;
  getObject(i: { Bucket: string; Key: string }): Promise<{ Body: Readable; ContentLength?: number }>;
  headObject(i: { Bucket: string; Key: string }): Promise<{ ContentLength?: number; ETag?: string }>;
  listObjectsV2(i: { Bucket: string; Prefix: string; ContinuationToken?: string }): Promise<{
    Contents?: { Key?: string; Size?: number }[];
    IsTruncated?: boolean;
    NextContinuationToken?: string;
  }>;
  deleteObject(i: { Bucket: string; Key: string }): Promise<unknown>;
  createMultipartUpload(i: { Bucket: string; Key: string }): Promise<{ UploadId?: string }>;
  uploadPart(i: { Bucket: string; Key: string; UploadId: string; PartNumber: number; Body: Buffer; ContentMD5: string }): Promise<{ ETag?: string }>;
  completeMultipartUpload(i: {
    Bucket: string;
    Key: string;
    UploadId: string;
    MultipartUpload: { Parts: { ETag: string; PartNumber: number }[] };
  }): Promise<{ ETag?: string }>;
  abortMultipartUpload(i: { Bucket: string; Key: string; UploadId: string }): Promise<unknown>;
  listMultipartUploads(i: { Bucket: string; Prefix: string }): Promise<{ Uploads?: { Key?: string; UploadId?: string }[] }>;
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
}

/**
 * The SDK is loaded on first use, so commands and configurations without an S3 target do not
 * pay for it at start-up.
 */
export function createS3Api(o: S3ClientOptions): S3Api {
  let loaded: Promise<{ sdk: typeof Sdk; client: Sdk.S3Client }> | undefined;
  const load = () =>
    (loaded ??= (async () => {
      // The SDK warns on every run that its releases after January 2027 will need Node 22; the
      // version in package-lock.json runs on Node 20, and the warning is noise in cron and pm2 logs.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      return import('@aws-sdk/client-s3');
    })().then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        endpoint: o.endpoint,
        region: o.region,
        credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
        forcePathStyle: o.forcePathStyle,
        maxAttempts: o.maxAttempts,
        // Never hang on a server that accepts connections but stops answering: connecting may take
        // 10 s, and a connection with no traffic for 5 min is dropped (and the request retried).
        requestHandler: { connectionTimeout: 10_000, socketTimeout: 300_000 },
        // S3-compatible providers (B2, R2, Spaces, MinIO) reject the SDK's default extra checksums.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      }),
    })));
  return {
    putObject: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.PutObjectCommand(i));
    },
    getObject: async (i) => {
      const { sdk, client } = await load();
      const r = await client.send(new sdk.GetObjectCommand(i));
      return { Body: r.Body as Readable, ContentLength: r.ContentLength };
    },
    headObject: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.HeadObjectCommand(i));
    },
    listObjectsV2: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.ListObjectsV2Command(i));
    },
    deleteObject: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.DeleteObjectCommand(i));
    },
    createMultipartUpload: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.CreateMultipartUploadCommand(i));
    },
    uploadPart: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.UploadPartCommand(i));
    },
    completeMultipartUpload: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.CompleteMultipartUploadCommand(i));
    },
    abortMultipartUpload: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.AbortMultipartUploadCommand(i));
    },
    listMultipartUploads: async (i) => {
      const { sdk, client } = await load();
      return client.send(new sdk.ListMultipartUploadsCommand(i));
    },
    destroy: () => {
      void loaded?.then(({ client }) => client.destroy());
    },
  };
}
