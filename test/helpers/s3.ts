import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3rver } from '../../scripts/lib/s3rver';
import { inject, onTestFinished } from 'vitest';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

/**
 * The S3 server of this test run (test/helpers/global-setup.ts): one Ceph radosgw for the whole
 * run when it is installed (strict, like the providers), else s3rver, started per bucket in the
 * test's own process (lenient: no signature, Content-MD5 or part-size checks).
 */
export type S3Backend = { kind: 'radosgw'; endpoint: string; accessKeyId: string; secretAccessKey: string } | { kind: 's3rver' };

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3Backend;
  }
}

export function s3Backend(): S3Backend {
  return inject('s3');
}

export interface S3Server {
  port: number;
  endpoint: string;
  bucket: string;
  dir: string;
  /** Environment for one S3 target pointing at this server (s3rver does not check signatures). */
  env(prefix?: string): Record<string, string>;
  close(): Promise<void>;
}

/** A real S3-API server (s3rver) on 127.0.0.1 with one bucket, storing under a temp directory. */
export async function startS3(opts: { port?: number; bucket?: string; dir?: string } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'backups';
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bb-s3-'));
  const server = new S3rver({ port: opts.port ?? 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  const info = await server.run();
  const endpoint = `http://127.0.0.1:${info.port}`;
  return {
    port: info.port,
    endpoint,
    bucket,
    dir,
    env: (prefix = '') => ({
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_BUCKET: bucket,
      S3_PREFIX: prefix,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    }),
    close: async () => {
      await server.close();
    },
  };
}

/** s3rver takes any secret for its key: one that shows if it ever leaks. */
const S3RVER_SECRET = 's3rver-SeCrEt-4f9d2c7a1e';

/**
 * A fresh, empty bucket of this run's S3 server, reached through a TCP proxy that the test can
 * cut, silence and restore (`proxy`) without touching the server other tests share.
 */
export interface TestBucket {
  kind: S3Backend['kind'];
  /** The proxy's endpoint: what basement-backup is given. */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  /** Never appears in any output (tests check). */
  secretAccessKey: string;
  /** S3_* variables for a target under `prefix`. */
  env(prefix?: string): Record<string, string>;
  proxy: TcpProxy;
  /** A client straight to the server, past the proxy. */
  client: S3Client;
  /** Object keys under `prefix`, sorted, read straight from the server. */
  keys(prefix?: string): Promise<string[]>;
  get(key: string): Promise<Buffer>;
  put(key: string, body: string | Buffer): Promise<void>;
  /** Unfinished multipart uploads and how many parts each holds; undefined when the server cannot tell (s3rver). */
  uploads(): Promise<{ key: string; parts: number }[] | undefined>;
  /** Parts stored so far of unfinished uploads (read from s3rver's files where it cannot list them). */
  partsStored(): Promise<number>;
  close(): Promise<void>;
}

function client(endpoint: string, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 2,
    requestHandler: { connectionTimeout: 5000, socketTimeout: 30_000 },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

async function listKeys(c: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    out.push(...(r.Contents ?? []).map((x) => x.Key!));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out.sort();
}

/** Removes every version and delete marker of a versioned bucket (unlocked), so that it can be deleted. */
async function removeVersions(c: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const r = await c.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    const all = [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])];
    if (all.length === 0) return;
    for (const v of all) await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key!, VersionId: v.VersionId! }));
  }
}

/**
 * Starts a bucket (see TestBucket); `testBucket` also closes it when the test finishes.
 * `objectLock` (radosgw only): created with Object Lock enabled (and so versions); what a
 * compliance lock holds cannot be removed, and the bucket then stays until the run's cluster goes.
 * `versioned` (radosgw only): versioning turned on (PutBucketVersioning); every version goes at the end.
 */
export async function startBucket(opts: { objectLock?: boolean; versioned?: boolean } = {}): Promise<TestBucket> {
  const backend = s3Backend();
  let direct: S3Client;
  let bucket: string;
  let accessKeyId: string;
  let secretAccessKey: string;
  let upstreamPort: number;
  let s3rver: S3Server | undefined;
  if (backend.kind === 'radosgw') {
    ({ accessKeyId, secretAccessKey } = backend);
    bucket = `bb-${crypto.randomBytes(6).toString('hex')}`;
    direct = client(backend.endpoint, accessKeyId, secretAccessKey);
    await direct.send(new CreateBucketCommand({ Bucket: bucket, ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
    if (opts.versioned) await direct.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    upstreamPort = Number(new URL(backend.endpoint).port);
  } else {
    s3rver = await startS3();
    bucket = s3rver.bucket;
    accessKeyId = 'S3RVER';
    secretAccessKey = S3RVER_SECRET;
    direct = client(s3rver.endpoint, accessKeyId, secretAccessKey);
    upstreamPort = s3rver.port;
  }
  const proxy = await startTcpProxy(upstreamPort);
  const uploads = async (): Promise<{ key: string; parts: number }[] | undefined> => {
    if (backend.kind !== 'radosgw') return undefined;
    const r = await direct.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    const out: { key: string; parts: number }[] = [];
    for (const u of r.Uploads ?? []) {
      const parts = await direct.send(new ListPartsCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
      out.push({ key: u.Key!, parts: (parts.Parts ?? []).length });
    }
    return out;
  };
  return {
    kind: backend.kind,
    endpoint: proxy.endpoint,
    bucket,
    accessKeyId,
    secretAccessKey,
    env: (prefix = '') => ({
      S3_ENDPOINT: proxy.endpoint,
      S3_REGION: 'us-east-1',
      S3_BUCKET: bucket,
      S3_PREFIX: prefix,
      S3_ACCESS_KEY_ID: accessKeyId,
      S3_SECRET_ACCESS_KEY: secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
    }),
    proxy,
    client: direct,
    keys: (prefix = '') => listKeys(direct, bucket, prefix),
    async get(key) {
      const r = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    },
    async put(key, body) {
      await direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    uploads,
    async partsStored() {
      const listed = await uploads();
      if (listed) return listed.reduce((n, u) => n + u.parts, 0);
      const dir = path.join(s3rver!.dir, bucket, '._S3rver_uploads');
      if (!fs.existsSync(dir)) return 0;
      return fs.readdirSync(dir).reduce((n, u) => n + fs.readdirSync(path.join(dir, u)).filter((f) => /^\d+\.md5$/.test(f)).length, 0);
    },
    async close() {
      await proxy.close();
      try {
        if (backend.kind === 'radosgw') {
          for (const u of (await direct.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []) {
            await direct.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
          }
          if (opts.objectLock) return; // its versions are locked: the cluster of this run goes with them
          for (const Key of await listKeys(direct, bucket, '')) await direct.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
          if (opts.versioned) await removeVersions(direct, bucket);
          await direct.send(new DeleteBucketCommand({ Bucket: bucket }));
        }
      } finally {
        direct.destroy();
        if (s3rver) {
          await s3rver.close();
          fs.rmSync(s3rver.dir, { recursive: true, force: true });
        }
      }
    },
  };
}

/** A fresh bucket for this test, emptied and removed when the test finishes. */
export async function testBucket(opts: { objectLock?: boolean; versioned?: boolean } = {}): Promise<TestBucket> {
  const b = await startBucket(opts);
  onTestFinished(() => b.close());
  return b;
}
