import type { S3Api, S3CallOptions } from './s3-api';

/**
 * The server does not offer this request (s3rver: ListMultipartUploads), or the key may not make
 * it (a key without s3:ListBucketMultipartUploads), as opposed to failing it.
 */
export function notOffered(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return status === 405 || status === 501 || e.name === 'NotImplemented' || e.name === 'MethodNotAllowed' || e.name === 'AccessDenied';
}

/** An unfinished multipart upload: what a crashed or killed write to a bucket leaves. */
export interface Upload {
  /** The object it would have become, without the prefix. */
  name: string;
  key: string;
  uploadId: string;
}

/**
 * Every unfinished multipart upload under `prefix`, page by page. Throws the SDK's error as it
 * is (see notOffered) for the caller to name.
 */
export async function listUploads(api: S3Api, bucket: string, prefix: string, call: S3CallOptions): Promise<Upload[]> {
  const out: Upload[] = [];
  let KeyMarker: string | undefined;
  let UploadIdMarker: string | undefined;
  do {
    const r = await api.listMultipartUploads({ Bucket: bucket, Prefix: prefix, KeyMarker, UploadIdMarker }, call);
    for (const u of r.Uploads ?? []) {
      if (u.UploadId && u.Key?.startsWith(prefix)) out.push({ name: u.Key.slice(prefix.length), key: u.Key, uploadId: u.UploadId });
    }
    KeyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
    UploadIdMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined;
  } while (KeyMarker);
  return out;
}
