import { describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors';
import { S3Storage } from '../../src/storage/s3';
import type { S3Api } from '../../src/storage/s3-api';

/** An S3Api whose upload listing and aborting do what the test says; nothing else is called. */
function api(list: S3Api['listMultipartUploads'], abort: S3Api['abortMultipartUpload'] = () => Promise.resolve({})): S3Api {
  const never = () => Promise.reject(new Error('not used'));
  return {
    putObject: never,
    getObject: never,
    headObject: never,
    listObjectsV2: never,
    deleteObject: never,
    createMultipartUpload: never,
    uploadPart: never,
    completeMultipartUpload: never,
    abortMultipartUpload: abort,
    listMultipartUploads: list,
    listObjectVersions: never,
    putObjectRetention: never,
    getObjectLockConfiguration: never,
    getBucketVersioning: never,
    getBucketLifecycleConfiguration: never,
    destroy: () => undefined,
  };
}

function storage(a: S3Api): S3Storage {
  return new S3Storage(a, {
    name: 'offsite',
    bucket: 'b',
    prefix: 'p/',
    endpointLabel: 'https://s3.example.test',
    partSize: 5 << 20,
    queueSize: 2,
    timeoutSeconds: 30,
  });
}

function sdkError(name: string, status: number | undefined): Error {
  return Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });
}

describe('S3Storage.cleanupTemporary: not offered vs failing', () => {
  it.each([
    ['NotImplemented', 501],
    ['MethodNotAllowed', 405],
    ['AccessDenied (a key without s3:ListBucketMultipartUploads)', 403],
  ])('a server or key that does not offer listing uploads (%s) leaves nothing to clean', async (name, status) => {
    const s = storage(api(() => Promise.reject(sdkError(name.split(' ')[0]!, status))));
    expect(await s.cleanupTemporary(() => true)).toEqual([]);
  });

  it.each([
    ['an unreachable server', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }), /failed: Error: connect ECONNREFUSED/],
    [
      'not answering',
      Object.assign(new Error('no answer within 30 s'), { name: 'TimeoutError' }),
      /failed: no answer from https:\/\/s3\.example\.test within 30 s/,
    ],
    ['a refused signature', sdkError('SignatureDoesNotMatch', 403), /failed: SignatureDoesNotMatch \(HTTP 403\)/],
    ['a server error', sdkError('InternalError', 500), /failed: InternalError \(HTTP 500\)/],
  ])('%s is a STORAGE error naming the target', async (_what, err, message) => {
    const s = storage(api(() => Promise.reject(err)));
    const e = await s
      .cleanupTemporary(() => true)
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(e).toBeInstanceOf(BackupError);
    expect((e as BackupError).code).toBe('STORAGE');
    expect((e as BackupError).message).toMatch(/^offsite: listing the unfinished uploads under p\/ failed: /);
    expect((e as BackupError).message).toMatch(message);
  });

  it('aborts matching uploads page by page, and an upload already gone is not an error', async () => {
    const pages = [
      {
        Uploads: [
          { Key: 'p/db-1.dump', UploadId: 'u1' },
          { Key: 'p/other-1.dump', UploadId: 'u2' },
        ],
        IsTruncated: true,
        NextKeyMarker: 'p/other-1.dump',
        NextUploadIdMarker: 'u2',
      },
      { Uploads: [{ Key: 'p/db-2.dump', UploadId: 'u3' }], IsTruncated: false },
    ];
    const asked: unknown[] = [];
    const aborted: string[] = [];
    const s = storage(
      api(
        (i) => {
          asked.push({ KeyMarker: i.KeyMarker, UploadIdMarker: i.UploadIdMarker });
          return Promise.resolve(pages.shift()!);
        },
        (i) => {
          aborted.push(i.UploadId);
          return i.UploadId === 'u3' ? Promise.reject(sdkError('NoSuchUpload', 404)) : Promise.resolve({});
        },
      ),
    );
    expect(await s.cleanupTemporary((n) => n.startsWith('db-'))).toEqual(['db-1.dump', 'db-2.dump']);
    expect(asked).toEqual([
      { KeyMarker: undefined, UploadIdMarker: undefined },
      { KeyMarker: 'p/other-1.dump', UploadIdMarker: 'u2' },
    ]);
    expect(aborted).toEqual(['u1', 'u3']);
  });
});
