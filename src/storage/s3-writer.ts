import { Writable } from 'node:stream';
import { BackupError } from '../errors';
import type { S3Api, S3CallOptions } from './s3-api';
import { md5, PartQueue } from './s3-parts';
import type { LockHeaders } from './s3-api';
import type { ObjectLock, ObjectWriter } from './types';

/** The headers that write an object under `lock` (none without one). */
export function lockHeaders(lock: ObjectLock | undefined): LockHeaders {
  return lock ? { ObjectLockMode: lock.mode, ObjectLockRetainUntilDate: lock.until } : {};
}

/** What a multipart writer needs of its storage. */
export interface UploadContext {
  api: S3Api;
  bucket: string;
  /** The target's name, for messages. */
  target: string;
  partSize: number;
  /** Parts uploading at once. */
  queueSize: number;
  /** The storage's signal: it stops the parts in flight. */
  signal: AbortSignal | undefined;
  /** A failed request as the BackupError that names it (s3Failure). */
  fail(op: string, name: string, err: unknown): BackupError;
  /** The object is written under this S3 Object Lock. */
  lock?: ObjectLock | undefined;
  /** `delete: false`: a stored object that differs is left (no manifest names it), not deleted. */
  appendOnly?: boolean | undefined;
}

interface UploadRef {
  Bucket: string;
  Key: string;
  UploadId: string;
}

/** The plain hex of a multipart ETag ("<md5 of the parts' md5s>-<parts>"), else undefined. */
function multipartEtag(etag: string | undefined): string | undefined {
  const e = (etag ?? '').replace(/"/g, '');
  return /^[0-9a-f]{32}-\d+$/.test(e) ? e : undefined;
}

/**
 * A writer of the object `name` (at `Key`) as a multipart upload that is completed only on
 * `commit()`, so nothing is visible under its name before then; `abort()` aborts the upload.
 * Every part carries Content-MD5, and the completed object is checked (see complete).
 */
export async function multipartWriter(c: UploadContext, name: string, Key: string): Promise<ObjectWriter> {
  const { api } = c;
  const call: S3CallOptions = { signal: c.signal };
  // abort() stops the parts in flight at once; so does the storage's signal
  const cancel = new AbortController();
  const stopParts = () => cancel.abort();
  c.signal?.addEventListener('abort', stopParts, { once: true });
  const release = () => c.signal?.removeEventListener('abort', stopParts);
  let uploadId: string;
  try {
    const r = await api.createMultipartUpload({ Bucket: c.bucket, Key, ...lockHeaders(c.lock) }, call);
    if (!r.UploadId) throw new Error('no UploadId in the response');
    uploadId = r.UploadId;
  } catch (err) {
    release();
    throw c.fail('starting the upload of', name, err);
  }
  const upload = { Bucket: c.bucket, Key, UploadId: uploadId };
  const queue = new PartQueue(
    async (PartNumber, body, digest) =>
      (await api.uploadPart({ ...upload, PartNumber, Body: body, ContentMD5: digest.toString('base64') }, { signal: cancel.signal })).ETag,
    (PartNumber, err) => c.fail(`uploading part ${PartNumber} of`, name, err),
    c.partSize,
    c.queueSize,
  );
  const stream = partsStream(queue);

  let done = false;
  let aborted = false;
  const abortUpload = () =>
    api.abortMultipartUpload(upload, call).then(
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
      await complete(c, name, upload, queue, abortUpload);
    },
  };
}

/** The stream the bytes are written into: each chunk goes to the queue, which waits when it is full. */
function partsStream(queue: PartQueue): Writable {
  return new Writable({
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
}

/**
 * Completes a multipart upload whose parts are all sent, and checks what was stored: its size,
 * and its multipart ETag against the parts' md5s. A completion that fails aborts the upload; a
 * stored object that differs is deleted.
 */
async function complete(c: UploadContext, name: string, upload: UploadRef, queue: PartQueue, abortUpload: () => Promise<void>): Promise<void> {
  const { api } = c;
  const call: S3CallOptions = { signal: c.signal };
  const sorted = queue.sorted();
  let etags: (string | undefined)[];
  try {
    const r = await api.completeMultipartUpload({ ...upload, MultipartUpload: { Parts: sorted.map(({ ETag, PartNumber }) => ({ ETag, PartNumber })) } }, call);
    // Some servers (radosgw) answer the completion with an empty ETag: the stored object's counts.
    const head = await api.headObject({ Bucket: upload.Bucket, Key: upload.Key }, call);
    if (head.ContentLength !== queue.size) throw new Error(`stored size ${head.ContentLength} differs from the ${queue.size} bytes sent`);
    etags = [r.ETag, head.ETag];
    // radosgw 16.2 completes an upload begun with a lock without it: the lock is put on the version then
    const held = head.ObjectLockRetainUntilDate ? new Date(head.ObjectLockRetainUntilDate).getTime() : 0;
    if (c.lock && held < c.lock.until.getTime()) {
      const Retention = { Mode: c.lock.mode, RetainUntilDate: c.lock.until };
      await api.putObjectRetention({ Bucket: upload.Bucket, Key: upload.Key, ...(head.VersionId ? { VersionId: head.VersionId } : {}), Retention }, call);
    }
  } catch (err) {
    await abortUpload();
    throw c.fail('completing the upload of', name, err);
  }
  // A multipart ETag is the md5 of the parts' md5s (a server that gives none, or a plain
  // md5 as s3rver does, leaves only the size check).
  const expected = `${md5(Buffer.concat(sorted.map((p) => p.md5))).toString('hex')}-${sorted.length}`;
  const wrong = etags.map(multipartEtag).find((e) => e !== undefined && e !== expected);
  if (wrong) {
    if (!c.appendOnly) await api.deleteObject({ Bucket: upload.Bucket, Key: upload.Key }, call).catch(() => undefined);
    throw new BackupError('STORAGE', `${c.target}: ${name} was stored with ETag ${wrong}, expected ${expected} for the parts sent`, {
      hint: `The storage did not keep what was sent; the upload was ${c.appendOnly ? 'left for the lifecycle rules (delete: false): no manifest names it' : 'removed'}. Retry, and check the provider.`,
    });
  }
}
