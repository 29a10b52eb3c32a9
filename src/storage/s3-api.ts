import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
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

export function createS3Api(o: S3ClientOptions): S3Api {
  const client = new S3Client({
    endpoint: o.endpoint,
    region: o.region,
    credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
    forcePathStyle: o.forcePathStyle,
    maxAttempts: o.maxAttempts,
    // S3-compatible providers (B2, R2, Spaces, MinIO) reject the SDK's default extra checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    putObject: (i) => client.send(new PutObjectCommand(i)),
    getObject: async (i) => {
      const r = await client.send(new GetObjectCommand(i));
      return { Body: r.Body as Readable, ContentLength: r.ContentLength };
    },
    headObject: (i) => client.send(new HeadObjectCommand(i)),
    listObjectsV2: (i) => client.send(new ListObjectsV2Command(i)),
    deleteObject: (i) => client.send(new DeleteObjectCommand(i)),
    createMultipartUpload: (i) => client.send(new CreateMultipartUploadCommand(i)),
    uploadPart: (i) => client.send(new UploadPartCommand(i)),
    completeMultipartUpload: (i) => client.send(new CompleteMultipartUploadCommand(i)),
    abortMultipartUpload: (i) => client.send(new AbortMultipartUploadCommand(i)),
    listMultipartUploads: (i) => client.send(new ListMultipartUploadsCommand(i)),
    destroy: () => client.destroy(),
  };
}
