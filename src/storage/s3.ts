import { PassThrough, type Readable } from 'node:stream';
import type { BackupError } from '../errors';
import type { S3Api, S3CallOptions } from './s3-api';
import { s3Failure, type SdkError } from './s3-failure';
import { md5 } from './s3-parts';
import { listUploads, notOffered, type Upload } from './s3-uploads';
import { s3BucketSettings } from './s3-bucket';
import { appendOnlyRefusal, s3Locks } from './s3-lock';
import { s3History } from './s3-versions';
import { lockHeaders, multipartWriter } from './s3-writer';
import type { BucketSettings, ObjectHistory, ObjectLocks, ObjectStat, ObjectWriter, PutOptions, Storage, StoredObject, TemporaryObject } from './types';

export interface S3StorageOptions {
  name: string;
  bucket: string;
  /** Key prefix, e.g. "backups/"; "" for the bucket root. */
  prefix: string;
  /** For humans: the endpoint, never credentials. */
  endpointLabel: string;
  partSize: number;
  /** Parts uploading at once; memory is about partSize × (queueSize + 1). */
  queueSize: number;
  /** The deadline the S3Api was made with, for messages. */
  timeoutSeconds: number;
  /** Cancels every request (the daemon stopping): they fail with an ABORTED error. */
  signal?: AbortSignal | undefined;
  /** The target writes under S3 Object Lock: `locks` is offered, and the bucket is checked before the first locked write. */
  objectLock?: boolean | undefined;
  /** `delete: false`: no delete is ever sent (see Storage.appendOnly). */
  appendOnly?: boolean | undefined;
}

/**
 * Backups in an S3-compatible bucket. A data object is written as a multipart upload that is
 * completed only on `commit()`, so nothing is visible under its name before the backup passed
 * its checks; `abort()` aborts the upload. Every part carries Content-MD5 (the server rejects a
 * part that arrives damaged), and the completed object's ETag is checked against the parts sent.
 * Small objects (manifests) are single PUTs, which S3 makes visible atomically.
 */
export class S3Storage implements Storage {
  readonly name: string;
  readonly location: string;
  readonly locks?: ObjectLocks;
  readonly history: ObjectHistory;
  readonly appendOnly: boolean;
  readonly bucket: BucketSettings;

  constructor(
    private readonly api: S3Api,
    private readonly o: S3StorageOptions,
  ) {
    this.name = o.name;
    this.location = `s3://${o.bucket}/${o.prefix} (${o.endpointLabel})`;
    this.appendOnly = o.appendOnly === true;
    const fail = (op: string, n: string, err: unknown) => this.fail(op, n, err);
    if (o.objectLock) {
      this.locks = s3Locks({ api, bucket: o.bucket, prefix: o.prefix, target: o.name, call: () => this.call, fail, appendOnly: this.appendOnly });
    }
    this.bucket = s3BucketSettings({ api, bucket: o.bucket, prefix: o.prefix, call: () => this.call, fail });
    const read = { readText: (n: string, v: string) => this.download(n, v), openRead: (n: string, v: string) => this.stream(n, v) };
    this.history = s3History({ api, bucket: o.bucket, prefix: o.prefix, target: o.name, call: () => this.call, fail, ...read });
  }

  /** A locked write goes only to a bucket with Object Lock (a CONFIG error naming the fix otherwise). */
  private async lockable(opts: PutOptions | undefined): Promise<void> {
    if (opts?.lock && this.locks) await this.locks.check();
  }

  private key(name: string): string {
    return this.o.prefix + name;
  }

  /** Options for one request: cancelled with the storage's signal. */
  private get call(): S3CallOptions {
    return { signal: this.o.signal };
  }

  /** A failed request as the BackupError that names this target and the fix (s3Failure). */
  private fail(op: string, name: string, err: unknown): BackupError {
    return s3Failure(this.o, op, name, err);
  }

  /** A multipart upload, visible under `name` only once committed (see multipartWriter). */
  async createWriter(name: string, opts?: PutOptions): Promise<ObjectWriter> {
    const { api, o } = this;
    await this.lockable(opts);
    const fail = (op: string, n: string, err: unknown) => this.fail(op, n, err);
    const context = {
      ...{ api, bucket: o.bucket, target: this.name, partSize: o.partSize, queueSize: o.queueSize, signal: o.signal, fail, lock: opts?.lock },
      appendOnly: this.appendOnly,
    };
    return multipartWriter(context, name, this.key(name));
  }

  async writeAtomic(name: string, data: string | Buffer, opts?: PutOptions): Promise<void> {
    const body = Buffer.isBuffer(data) ? data : Buffer.from(data);
    await this.lockable(opts);
    try {
      const put = { Bucket: this.o.bucket, Key: this.key(name), Body: body, ContentMD5: md5(body).toString('base64'), ...lockHeaders(opts?.lock) };
      await this.api.putObject(put, this.call);
    } catch (err) {
      throw this.fail('writing', name, err);
    }
  }

  readText(name: string): Promise<string> {
    return this.download(name);
  }

  /** One object (one version of it, by `versionId`) read whole. */
  private async download(name: string, versionId?: string): Promise<string> {
    try {
      const r = await this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name), ...(versionId ? { VersionId: versionId } : {}) }, this.call);
      const chunks: Buffer[] = [];
      for await (const c of r.Body) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      throw this.fail('reading', versionId ? `${name} (version ${versionId})` : name, err);
    }
  }

  openRead(name: string): Readable {
    return this.stream(name);
  }

  /** One object (one version of it, by `versionId`) streamed. */
  private stream(name: string, versionId?: string): Readable {
    const out = new PassThrough();
    const at = versionId ? `${name} (version ${versionId})` : name;
    this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name), ...(versionId ? { VersionId: versionId } : {}) }, this.call).then(
      (r) => {
        // a reader that stops early must release the connection
        if (out.destroyed) {
          r.Body.destroy();
          return;
        }
        out.once('close', () => r.Body.destroy());
        r.Body.once('error', (err) => out.destroy(this.fail('reading', at, err)));
        r.Body.pipe(out);
      },
      (err: unknown) => out.destroy(this.fail('reading', at, err)),
    );
    return out;
  }

  async list(prefix = ''): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.api.listObjectsV2({ Bucket: this.o.bucket, Prefix: this.o.prefix + prefix, ContinuationToken: token }, this.call);
        for (const c of r.Contents ?? []) {
          const name = (c.Key ?? '').slice(this.o.prefix.length);
          if (!name || name.includes('/') || name.startsWith('.')) continue;
          out.push({ name, size: c.Size ?? 0, modified: c.LastModified });
        }
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.fail('listing', this.o.prefix || '/', err);
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async stat(name: string): Promise<ObjectStat | undefined> {
    try {
      const r = await this.api.headObject({ Bucket: this.o.bucket, Key: this.key(name) }, this.call);
      return { size: r.ContentLength ?? 0, etag: r.ETag?.replace(/"/g, '') };
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw this.fail('reading', name, err);
    }
  }

  async delete(name: string): Promise<void> {
    if (this.appendOnly) throw appendOnlyRefusal(this.name, name);
    try {
      await this.api.deleteObject({ Bucket: this.o.bucket, Key: this.key(name) }, this.call);
    } catch (err) {
      throw this.fail('deleting', name, err);
    }
  }

  freeBytes(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  /**
   * Aborts unfinished multipart uploads of matching names (ListMultipartUploads). A server that
   * does not implement listing or aborting them, or a key that may not, ends the cleanup quietly
   * (a lifecycle rule is then the cleanup); any other failure (unreachable, not answering, wrong
   * credentials) is a STORAGE error, as the target is then unusable anyway.
   */
  async cleanupTemporary(belongs: (finalName: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    for (const u of await this.uploads(belongs)) {
      try {
        await this.api.abortMultipartUpload({ Bucket: this.o.bucket, Key: u.key, UploadId: u.uploadId }, this.call);
      } catch (err) {
        if (notOffered(err)) return removed;
        if ((err as SdkError).name !== 'NoSuchUpload') throw this.fail('aborting the unfinished upload of', u.name, err);
      }
      removed.push(u.name);
    }
    return removed;
  }

  /** The unfinished uploads of matching names; their size is not told (the upload's parts are not listed). */
  async listTemporary(belongs: (finalName: string) => boolean): Promise<TemporaryObject[]> {
    return (await this.uploads(belongs)).map((u) => ({ name: u.key, finalName: u.name, size: undefined, inUse: false }));
  }

  private async uploads(belongs: (finalName: string) => boolean): Promise<Upload[]> {
    try {
      return (await listUploads(this.api, this.o.bucket, this.o.prefix, this.call)).filter((u) => belongs(u.name));
    } catch (err) {
      if (notOffered(err)) return [];
      throw this.fail('listing the unfinished uploads under', this.o.prefix || '/', err);
    }
  }
}
