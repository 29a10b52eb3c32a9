import crypto from 'node:crypto';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { BackupError } from '../errors';
import { redact } from '../redact';
import type { S3Api } from './s3-api';
import type { ObjectStat, ObjectWriter, Storage, StoredObject } from './types';

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
}

function md5(buf: Buffer): Buffer {
  return crypto.createHash('md5').update(buf).digest();
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

  constructor(
    private readonly api: S3Api,
    private readonly o: S3StorageOptions,
  ) {
    this.name = o.name;
    this.location = `s3://${o.bucket}/${o.prefix} (${o.endpointLabel})`;
  }

  private key(name: string): string {
    return this.o.prefix + name;
  }

  private fail(op: string, name: string, err: unknown): BackupError {
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; code?: string };
    const status = e.$metadata?.httpStatusCode;
    const what = redact(`${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`);
    let hint = `Check the ${this.name} target's endpoint, bucket and credentials, and that the storage is reachable.`;
    if (status === 403 || e.name === 'AccessDenied' || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch') {
      hint = `The ${this.name} target refused the credentials: check its access key and secret, and that the key may read, write, list and delete under ${this.o.prefix || 'the bucket'}.`;
    } else if (e.name === 'NoSuchBucket') {
      hint = `Bucket ${this.o.bucket} does not exist at this endpoint: create it or fix the bucket name.`;
    }
    return new BackupError('STORAGE', `${this.name}: ${op} ${name} failed: ${what}`, { hint, cause: err });
  }

  async createWriter(name: string): Promise<ObjectWriter> {
    const { api, o } = this;
    const Key = this.key(name);
    let uploadId: string;
    try {
      const r = await api.createMultipartUpload({ Bucket: o.bucket, Key });
      if (!r.UploadId) throw new Error('no UploadId in the response');
      uploadId = r.UploadId;
    } catch (err) {
      throw this.fail('starting the upload of', name, err);
    }
    const parts: { ETag: string; PartNumber: number; md5: Buffer }[] = [];
    const inFlight = new Set<Promise<void>>();
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let partNumber = 0;
    let failure: BackupError | undefined;
    let size = 0;

    const uploadPart = (body: Buffer): Promise<void> => {
      const PartNumber = ++partNumber;
      const digest = md5(body);
      const p = api
        .uploadPart({ Bucket: o.bucket, Key, UploadId: uploadId, PartNumber, Body: body, ContentMD5: digest.toString('base64') })
        .then((r) => {
          if (!r.ETag) throw new Error(`no ETag for part ${PartNumber}`);
          parts.push({ ETag: r.ETag, PartNumber, md5: digest });
        })
        .catch((err: unknown) => {
          failure ??= this.fail(`uploading part ${PartNumber} of`, name, err);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      return p;
    };
    // Every part but the last is exactly partSize: R2 rejects parts of differing sizes.
    const flush = async (): Promise<void> => {
      while (pendingBytes >= o.partSize) {
        const all = Buffer.concat(pending, pendingBytes);
        const rest = all.subarray(o.partSize);
        pending = rest.length > 0 ? [Buffer.from(rest)] : [];
        pendingBytes = rest.length;
        void uploadPart(all.subarray(0, o.partSize));
        while (inFlight.size >= o.queueSize) await Promise.race(inFlight);
        if (failure) throw failure;
      }
    };

    const stream = new Writable({
      highWaterMark: 1024 * 1024,
      write(chunk: Buffer, _enc, cb) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        size += chunk.length;
        if (failure) return cb(failure);
        if (pendingBytes < o.partSize) return cb();
        flush().then(() => cb(), cb);
      },
      final(cb) {
        (async () => {
          if (pendingBytes > 0 || partNumber === 0) {
            const body = Buffer.concat(pending, pendingBytes);
            pending = [];
            pendingBytes = 0;
            void uploadPart(body);
          }
          while (inFlight.size > 0) await Promise.race(inFlight);
          if (failure) throw failure;
        })().then(() => cb(), cb);
      },
    });

    let done = false;
    let aborted = false;
    const abort = async () => {
      if (done) return;
      done = true;
      aborted = true;
      stream.destroy();
      await Promise.allSettled([...inFlight]);
      await api.abortMultipartUpload({ Bucket: o.bucket, Key, UploadId: uploadId }).catch(() => undefined);
    };
    return {
      stream,
      tempPath: undefined,
      abort,
      commit: async () => {
        if (aborted) throw new BackupError('INTERNAL', `${name} was aborted and cannot be committed`);
        if (done) return;
        done = true;
        const sorted = [...parts].sort((a, b) => a.PartNumber - b.PartNumber);
        let etag: string | undefined;
        try {
          const r = await api.completeMultipartUpload({
            Bucket: o.bucket,
            Key,
            UploadId: uploadId,
            MultipartUpload: { Parts: sorted.map(({ ETag, PartNumber }) => ({ ETag, PartNumber })) },
          });
          etag = r.ETag;
          const head = await api.headObject({ Bucket: o.bucket, Key });
          if (head.ContentLength !== size) throw new Error(`stored size ${head.ContentLength} differs from the ${size} bytes sent`);
        } catch (err) {
          await api.abortMultipartUpload({ Bucket: o.bucket, Key, UploadId: uploadId }).catch(() => undefined);
          throw this.fail('completing the upload of', name, err);
        }
        const expected = `${md5(Buffer.concat(sorted.map((p) => p.md5))).toString('hex')}-${sorted.length}`;
        const got = (etag ?? '').replace(/"/g, '');
        if (/^[0-9a-f]{32}-\d+$/.test(got) && got !== expected) {
          await api.deleteObject({ Bucket: o.bucket, Key }).catch(() => undefined);
          throw new BackupError('STORAGE', `${this.name}: ${name} was stored with ETag ${got}, expected ${expected} for the parts sent`, {
            hint: 'The storage did not keep what was sent; the upload was removed. Retry, and check the provider.',
          });
        }
      },
    };
  }

  async writeAtomic(name: string, data: string | Buffer): Promise<void> {
    const body = Buffer.isBuffer(data) ? data : Buffer.from(data);
    try {
      await this.api.putObject({ Bucket: this.o.bucket, Key: this.key(name), Body: body, ContentMD5: md5(body).toString('base64') });
    } catch (err) {
      throw this.fail('writing', name, err);
    }
  }

  async readText(name: string): Promise<string> {
    try {
      const r = await this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name) });
      const chunks: Buffer[] = [];
      for await (const c of r.Body) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      throw this.fail('reading', name, err);
    }
  }

  openRead(name: string): Readable {
    const out = new PassThrough();
    this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name) }).then(
      (r) => {
        // a reader that stops early must release the connection
        if (out.destroyed) {
          r.Body.destroy();
          return;
        }
        out.once('close', () => r.Body.destroy());
        r.Body.once('error', (err) => out.destroy(this.fail('reading', name, err)));
        r.Body.pipe(out);
      },
      (err: unknown) => out.destroy(this.fail('reading', name, err)),
    );
    return out;
  }

  async list(): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.api.listObjectsV2({ Bucket: this.o.bucket, Prefix: this.o.prefix, ContinuationToken: token });
        for (const c of r.Contents ?? []) {
          const name = (c.Key ?? '').slice(this.o.prefix.length);
          if (!name || name.includes('/') || name.startsWith('.')) continue;
          out.push({ name, size: c.Size ?? 0 });
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
      const r = await this.api.headObject({ Bucket: this.o.bucket, Key: this.key(name) });
      return { size: r.ContentLength ?? 0, etag: r.ETag?.replace(/"/g, '') };
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw this.fail('reading', name, err);
    }
  }

  async delete(name: string): Promise<void> {
    try {
      await this.api.deleteObject({ Bucket: this.o.bucket, Key: this.key(name) });
    } catch (err) {
      throw this.fail('deleting', name, err);
    }
  }

  freeBytes(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  async cleanupTemporary(belongs: (finalName: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    try {
      const r = await this.api.listMultipartUploads({ Bucket: this.o.bucket, Prefix: this.o.prefix });
      for (const u of r.Uploads ?? []) {
        const name = (u.Key ?? '').slice(this.o.prefix.length);
        if (!u.UploadId || !belongs(name)) continue;
        await this.api.abortMultipartUpload({ Bucket: this.o.bucket, Key: u.Key!, UploadId: u.UploadId });
        removed.push(name);
      }
    } catch {
      // not every S3-compatible store lists uploads; a lifecycle rule should abort stale ones
    }
    return removed;
  }
}
