import crypto from 'node:crypto';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { BackupError } from '../errors';
import { redact } from '../redact';
import type { S3Api, S3CallOptions } from './s3-api';
import { listUploads, notOffered, type Upload } from './s3-uploads';
import type { ObjectStat, ObjectWriter, Storage, StoredObject, TemporaryObject } from './types';

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
}

/** The plain hex of a multipart ETag ("<md5 of the parts' md5s>-<parts>"), else undefined. */
function multipartEtag(etag: string | undefined): string | undefined {
  const e = (etag ?? '').replace(/"/g, '');
  return /^[0-9a-f]{32}-\d+$/.test(e) ? e : undefined;
}

interface SdkError {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
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

  /** Options for one request: cancelled with the storage's signal. */
  private get call(): S3CallOptions {
    return { signal: this.o.signal };
  }

  private fail(op: string, name: string, err: unknown): BackupError {
    const e = err as SdkError;
    const target = this.name;
    if (e.name === 'AbortError' || this.o.signal?.aborted) {
      return new BackupError('ABORTED', `${target}: ${op} ${name} was cancelled`, {
        hint: 'basement-backup was stopping; nothing partial is kept.',
        cause: err,
      });
    }
    const status = e.$metadata?.httpStatusCode;
    const endpoint = this.o.endpointLabel;
    const seconds = this.o.timeoutSeconds;
    const raise = `if it is only slow, raise the target's timeout (S3_TIMEOUT_SECONDS, or timeout_seconds in BACKUP_CONFIG_FILE; now ${seconds} s)`;
    let what = `${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
    let hint = `Check the ${target} target's endpoint, bucket and credentials, and that the storage is reachable.`;
    if (e.name === 'TimeoutError') {
      if (/establish a connection/.test(e.message ?? '')) {
        what = `could not connect to ${endpoint} within ${seconds} s`;
        hint = `Check the ${target} target's endpoint (host and port) and that this machine can reach it (DNS, firewall, proxy); ${raise}.`;
      } else {
        what = /download stopped/.test(e.message ?? '')
          ? `the download stopped: no data from ${endpoint} for ${seconds} s`
          : `no answer from ${endpoint} within ${seconds} s`;
        hint = `The ${target} target's endpoint accepted the connection but stopped answering: check that ${endpoint} is the provider's S3 API (not a web page, or a firewall that swallows traffic) and the provider's status page; ${raise}.`;
      }
    } else if (e.name === 'RequestTimeTooSkewed') {
      hint = `The ${target} target refused the request because this machine's clock is off: set the time right (NTP, e.g. timedatectl set-ntp true).`;
    } else if (status === 403 || e.name === 'AccessDenied' || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch') {
      hint = `The ${target} target refused the credentials: check its access key and secret, and that the key may read, write, list and delete under ${this.o.prefix || 'the bucket'}.`;
    } else if (e.name === 'NoSuchBucket') {
      hint = `Bucket ${this.o.bucket} does not exist at this endpoint: create it or fix the bucket name.`;
    } else if (e.name === 'BadDigest' || e.name === 'InvalidDigest') {
      hint = `The ${target} target received data that did not match its Content-MD5: it was damaged on the way (network, or a proxy that rewrites requests) and was not kept. Retry, and check what sits between this machine and ${endpoint}.`;
    } else if (e.name === 'EntityTooSmall') {
      hint = `The ${target} target rejects upload parts this small: use a part size of at least 5 MB (S3_PART_SIZE_MB, or part_size_mb in BACKUP_CONFIG_FILE).`;
    } else if (e.name === 'InvalidPart' || e.name === 'InvalidPartOrder' || e.name === 'NoSuchUpload') {
      hint = `The ${target} target does not hold the parts as they were sent (or the unfinished upload was removed meanwhile, e.g. by a lifecycle rule); the upload was aborted. Retry, and check the provider.`;
    }
    return new BackupError('STORAGE', redact(`${target}: ${op} ${name} failed: ${what}`), { hint: redact(hint), cause: err });
  }

  async createWriter(name: string): Promise<ObjectWriter> {
    const { api, o } = this;
    const Key = this.key(name);
    // abort() stops the parts in flight at once; so does the storage's signal
    const cancel = new AbortController();
    const stopParts = () => cancel.abort();
    o.signal?.addEventListener('abort', stopParts, { once: true });
    const release = () => o.signal?.removeEventListener('abort', stopParts);
    let uploadId: string;
    try {
      const r = await api.createMultipartUpload({ Bucket: o.bucket, Key }, this.call);
      if (!r.UploadId) throw new Error('no UploadId in the response');
      uploadId = r.UploadId;
    } catch (err) {
      release();
      throw this.fail('starting the upload of', name, err);
    }
    const upload = { Bucket: o.bucket, Key, UploadId: uploadId };
    const queue = new PartQueue(
      async (PartNumber, body, digest) =>
        (await api.uploadPart({ ...upload, PartNumber, Body: body, ContentMD5: digest.toString('base64') }, { signal: cancel.signal })).ETag,
      (PartNumber, err) => this.fail(`uploading part ${PartNumber} of`, name, err),
      o.partSize,
      o.queueSize,
    );
    const stream = new Writable({
      highWaterMark: 1024 * 1024,
      write(chunk: Buffer, _enc, cb) {
        let waiting: Promise<void> | undefined;
        try {
          waiting = queue.take(chunk);
        } catch (err) {
          return cb(err as Error);
        }
        if (!waiting) return cb();
        waiting.then(() => cb(), cb);
      },
      final(cb) {
        queue.end().then(() => cb(), cb);
      },
    });

    let done = false;
    let aborted = false;
    const abortUpload = () =>
      api.abortMultipartUpload(upload, this.call).then(
        () => undefined,
        () => undefined,
      );
    return {
      stream,
      abort: async () => {
        if (done) return;
        done = true;
        aborted = true;
        cancel.abort();
        release();
        stream.destroy();
        await queue.settled();
        // An upload the server cannot be told to drop now is removed by the next cleanupTemporary.
        await abortUpload();
      },
      commit: async () => {
        if (aborted) throw new BackupError('INTERNAL', `${name} was aborted and cannot be committed`);
        if (done) return;
        done = true;
        release();
        await this.complete(name, upload, queue, abortUpload);
      },
    };
  }

  /**
   * Completes a multipart upload whose parts are all sent, and checks what was stored: its size,
   * and its multipart ETag against the parts' md5s. A completion that fails aborts the upload; a
   * stored object that differs is deleted.
   */
  private async complete(
    name: string,
    upload: { Bucket: string; Key: string; UploadId: string },
    queue: PartQueue,
    abortUpload: () => Promise<void>,
  ): Promise<void> {
    const { api } = this;
    const sorted = queue.sorted();
    let etags: (string | undefined)[];
    try {
      const r = await api.completeMultipartUpload(
        { ...upload, MultipartUpload: { Parts: sorted.map(({ ETag, PartNumber }) => ({ ETag, PartNumber })) } },
        this.call,
      );
      // Some servers (radosgw) answer the completion with an empty ETag: the stored object's counts.
      const head = await api.headObject({ Bucket: upload.Bucket, Key: upload.Key }, this.call);
      if (head.ContentLength !== queue.size) throw new Error(`stored size ${head.ContentLength} differs from the ${queue.size} bytes sent`);
      etags = [r.ETag, head.ETag];
    } catch (err) {
      await abortUpload();
      throw this.fail('completing the upload of', name, err);
    }
    // A multipart ETag is the md5 of the parts' md5s (a server that gives none, or a plain
    // md5 as s3rver does, leaves only the size check).
    const expected = `${md5(Buffer.concat(sorted.map((p) => p.md5))).toString('hex')}-${sorted.length}`;
    const wrong = etags.map(multipartEtag).find((e) => e !== undefined && e !== expected);
    if (wrong) {
      await api.deleteObject({ Bucket: upload.Bucket, Key: upload.Key }, this.call).catch(() => undefined);
      throw new BackupError('STORAGE', `${this.name}: ${name} was stored with ETag ${wrong}, expected ${expected} for the parts sent`, {
        hint: 'The storage did not keep what was sent; the upload was removed. Retry, and check the provider.',
      });
    }
  }

  async writeAtomic(name: string, data: string | Buffer): Promise<void> {
    const body = Buffer.isBuffer(data) ? data : Buffer.from(data);
    try {
      await this.api.putObject({ Bucket: this.o.bucket, Key: this.key(name), Body: body, ContentMD5: md5(body).toString('base64') }, this.call);
    } catch (err) {
      throw this.fail('writing', name, err);
    }
  }

  async readText(name: string): Promise<string> {
    try {
      const r = await this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name) }, this.call);
      const chunks: Buffer[] = [];
      for await (const c of r.Body) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      throw this.fail('reading', name, err);
    }
  }

  openRead(name: string): Readable {
    const out = new PassThrough();
    this.api.getObject({ Bucket: this.o.bucket, Key: this.key(name) }, this.call).then(
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
        const r = await this.api.listObjectsV2({ Bucket: this.o.bucket, Prefix: this.o.prefix, ContinuationToken: token }, this.call);
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
      const r = await this.api.headObject({ Bucket: this.o.bucket, Key: this.key(name) }, this.call);
      return { size: r.ContentLength ?? 0, etag: r.ETag?.replace(/"/g, '') };
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw this.fail('reading', name, err);
    }
  }

  async delete(name: string): Promise<void> {
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

/**
 * The parts of one multipart upload: the bytes written, cut into parts of exactly `partSize`
 * (R2 rejects parts of differing sizes; only the last is shorter), at most `queueSize` in
 * flight, each sent with its md5. The first failure is kept and stops the writing.
 */
class PartQueue {
  /** The parts the server took, in the order their answers came. */
  private readonly parts: { ETag: string; PartNumber: number; md5: Buffer }[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private partNumber = 0;
  private failure: BackupError | undefined;
  /** Bytes taken so far. */
  size = 0;

  constructor(
    private readonly send: (partNumber: number, body: Buffer, md5: Buffer) => Promise<string | undefined>,
    private readonly failed: (partNumber: number, err: unknown) => BackupError,
    private readonly partSize: number,
    private readonly queueSize: number,
  ) {}

  /**
   * Takes a chunk. Returns undefined when the next may come at once, else a promise that
   * resolves when the queue has room again; throws (or rejects) with the first failure.
   */
  take(chunk: Buffer): Promise<void> | undefined {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.size += chunk.length;
    if (this.failure) throw this.failure;
    if (this.pendingBytes < this.partSize) return undefined;
    return this.flush();
  }

  /** Sends what is left as the last part (an empty object gets one empty part) and waits for every part. */
  async end(): Promise<void> {
    if (this.pendingBytes > 0 || this.partNumber === 0) {
      const body = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      void this.upload(body);
    }
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /** Resolves when no part is in flight, however they ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /** The parts sent, by part number. */
  sorted(): { ETag: string; PartNumber: number; md5: Buffer }[] {
    return [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
  }

  private async flush(): Promise<void> {
    while (this.pendingBytes >= this.partSize) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      const rest = all.subarray(this.partSize);
      this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
      this.pendingBytes = rest.length;
      void this.upload(all.subarray(0, this.partSize));
      while (this.inFlight.size >= this.queueSize) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
    }
  }

  private upload(body: Buffer): Promise<void> {
    const PartNumber = ++this.partNumber;
    const digest = md5(body);
    const p = this.send(PartNumber, body, digest)
      .then((ETag) => {
        if (!ETag) throw new Error(`no ETag for part ${PartNumber}`);
        this.parts.push({ ETag, PartNumber, md5: digest });
      })
      .catch((err: unknown) => {
        this.failure ??= this.failed(PartNumber, err);
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }
}
